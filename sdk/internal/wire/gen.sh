#!/bin/sh
# gen.sh regenerates the Go code for mirror.proto; run it from this directory
# (go generate does) with protoc, protoc-gen-go and protoc-gen-go-grpc on PATH.
set -eu
PATH="$PATH:$(go env GOPATH)/bin"
protoc --proto_path=. \
	--go_out=. --go_opt=paths=source_relative \
	--go-grpc_out=. --go-grpc_opt=paths=source_relative,require_unimplemented_servers=false \
	mirror.proto
