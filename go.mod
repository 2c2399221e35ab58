module github.com/mirrorkit/mirror

go 1.26.0

require github.com/gibson042/canonicaljson-go v1.0.3
