import CSupport
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#endif

/// Who is on the other end of a Unix socket, as the kernel saw it at connect time (SO_PEERCRED).
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "pid \(pid) uid \(uid)" }
}

/// A framed connection: complete lines (or a framing failure) in, lines out.
public struct LineConnection: Sendable {
    public let peer: PeerCredentials
    public let channel: NIOAsyncChannel<Frame, ByteBuffer>
}

/// Newline-delimited JSON over Unix stream sockets, on NIO.
public enum UnixLineSocket {
    /// Binds a listening socket at `path`. The caller decides what to do with an existing file
    /// before calling this (see `RuntimeDirectory` in the supervisor): it is never removed here.
    public static func bind(
        path: String,
        group: any EventLoopGroup,
        readTimeout: TimeAmount?,
        maximumLineLength: Int = LineFrameHandler.defaultMaximumLineLength
    ) async throws -> NIOAsyncChannel<LineConnection, Never> {
        try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 256)
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: false) { channel in
                Self.configure(channel, readTimeout: readTimeout, maximumLineLength: maximumLineLength)
            }
    }

    /// Connects to a listening socket at `path`.
    public static func connect(
        path: String,
        group: any EventLoopGroup,
        readTimeout: TimeAmount?,
        maximumLineLength: Int = LineFrameHandler.defaultMaximumLineLength
    ) async throws -> LineConnection {
        try await ClientBootstrap(group: group)
            .connect(unixDomainSocketPath: path) { channel in
                Self.configure(channel, readTimeout: readTimeout, maximumLineLength: maximumLineLength)
            }
    }

    private static func configure(
        _ channel: any Channel,
        readTimeout: TimeAmount?,
        maximumLineLength: Int
    ) -> EventLoopFuture<LineConnection> {
        guard let options = channel as? any SocketOptionProvider else {
            return channel.eventLoop.makeFailedFuture(ChannelError.operationUnsupported)
        }
        let credentials: EventLoopFuture<csupport_peer_credentials> = options.unsafeGetSocketOption(
            level: SocketOptionLevel(SOL_SOCKET),
            name: SocketOptionName(SO_PEERCRED)
        )
        return credentials.flatMapThrowing { raw in
            try channel.pipeline.syncOperations.addHandler(
                LineFrameHandler(maximumLineLength: maximumLineLength, readTimeout: readTimeout)
            )
            let asyncChannel = try NIOAsyncChannel<Frame, ByteBuffer>(wrappingChannelSynchronously: channel)
            return LineConnection(peer: PeerCredentials(pid: raw.pid, uid: raw.uid, gid: raw.gid), channel: asyncChannel)
        }
    }
}

extension NIOAsyncChannelOutboundWriter<ByteBuffer> {
    /// Writes one value as one JSON line.
    public func writeLine(_ value: some Encodable) async throws {
        try await self.write(ByteBuffer(string: try JSONLine.encode(value)))
    }
}
