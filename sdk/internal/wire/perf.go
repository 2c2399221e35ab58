package wire

import "google.golang.org/grpc"

// Flow control and buffering of the plugin connection. gRPC's defaults suit
// many small calls over a network: a 64 KiB stream window that the
// bandwidth estimator grows slowly, and 32 KiB socket buffers. A plugin
// streams megabytes over a local socket, where those defaults stall the
// sender on window updates and cut every chunk into many small writes.
const (
	// streamWindow lets a whole burst of chunks be in flight per stream.
	streamWindow = 8 * ChunkSize
	// connWindow is shared by the streams of one connection (a clone
	// streams several tarballs at once).
	connWindow = 4 * streamWindow
	// socketBuffer is the read and write buffer in front of the socket.
	socketBuffer = ChunkSize / 4
)

// DialOptions are the host side's part of the connection tuning.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
		grpc.WithReadBufferSize(socketBuffer),
		grpc.WithWriteBufferSize(socketBuffer),
	}
}

// ServerOptions are the plugin side's part of the connection tuning.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		grpc.ReadBufferSize(socketBuffer),
		grpc.WriteBufferSize(socketBuffer),
	}
}
