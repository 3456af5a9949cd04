import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// A listening Unix socket that serves each connection in a task of its own, until cancelled.
/// One connection's failure never reaches the others or the listener.
public enum UnixLineServer {
    /// Binds `path`, sets its mode, and serves every connection with `serve` until the calling
    /// task is cancelled (then it returns normally).
    public static func run(
        path: String,
        mode: mode_t,
        group: any EventLoopGroup,
        readTimeout: TimeAmount?,
        serve: @escaping @Sendable (LineConnection) async -> Void
    ) async throws {
        let server = try await UnixLineSocket.bind(path: path, group: group, readTimeout: readTimeout)
        guard chmod(path, mode) == 0 else {
            throw SocketModeError(path: path, errno: errno)
        }
        do {
            try await withThrowingDiscardingTaskGroup { connections in
                try await server.executeThenClose { inbound in
                    for try await connection in inbound {
                        connections.addTask { await serve(connection) }
                    }
                }
            }
        } catch is CancellationError {
            // Shutdown: the listening socket is closed.
        }
    }

    public struct SocketModeError: Error, CustomStringConvertible {
        public var path: String
        public var errno: Int32
        public var description: String { "cannot set the mode of \(path): \(String(cString: strerror(errno)))" }
    }
}
