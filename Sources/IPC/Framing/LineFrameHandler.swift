import NIOCore

/// One unit read from a newline-delimited JSON connection.
///
/// Framing problems are delivered as values, not thrown, so that the code serving the connection
/// can answer with an error reply before it closes the connection.
public enum Frame: Sendable, Equatable {
    /// A complete line, without its terminating newline, valid UTF-8.
    case line(String)
    /// The peer sent something that cannot be framed; nothing more is read from it.
    case failure(FrameError)
}

public enum FrameError: Error, Sendable, Equatable, CustomStringConvertible {
    case lineTooLong(limit: Int)
    case invalidUTF8
    case readTimeout(seconds: Double)

    /// The `code` of the error reply sent to the peer.
    public var code: String {
        switch self {
        case .lineTooLong: "line-too-long"
        case .invalidUTF8: "invalid-utf8"
        case .readTimeout: "read-timeout"
        }
    }

    public var description: String {
        switch self {
        case .lineTooLong(let limit):
            "line longer than \(limit) bytes; send one JSON object per line"
        case .invalidUTF8:
            "line is not valid UTF-8"
        case .readTimeout(let seconds):
            "no complete line within \(Self.format(seconds)) s; send one JSON object per line, ended by a newline"
        }
    }

    private static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }
}

/// Splits a byte stream into lines of at most `maximumLineLength` bytes.
///
/// The read timeout runs from the connection's start and from each complete line: a peer that
/// sends half a line and stalls, or nothing at all, gets `.failure(.readTimeout)`. After a
/// failure the handler drops all further input, so one bad peer costs a bounded amount of memory.
public final class LineFrameHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = Frame

    public static let defaultMaximumLineLength = 1 << 20

    private let maximumLineLength: Int
    private let readTimeout: TimeAmount?
    private var buffer: ByteBuffer
    private var failed = false
    private var timeoutTask: Scheduled<Void>?

    public init(maximumLineLength: Int = LineFrameHandler.defaultMaximumLineLength, readTimeout: TimeAmount?) {
        self.maximumLineLength = maximumLineLength
        self.readTimeout = readTimeout
        self.buffer = ByteBuffer()
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.armTimeout(context: context)
        context.fireChannelActive()
    }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            self.armTimeout(context: context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        context.fireChannelInactive()
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !self.failed else { return }
        var incoming = self.unwrapInboundIn(data)
        self.buffer.writeBuffer(&incoming)

        while !self.failed, let newline = self.buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
            let length = newline - self.buffer.readerIndex
            guard length <= self.maximumLineLength else {
                self.fail(.lineTooLong(limit: self.maximumLineLength), context: context)
                return
            }
            var lineBytes = self.buffer.readSlice(length: length)!
            self.buffer.moveReaderIndex(forwardBy: 1)
            if lineBytes.readableBytesView.last == UInt8(ascii: "\r") {
                lineBytes = lineBytes.getSlice(at: lineBytes.readerIndex, length: lineBytes.readableBytes - 1)!
            }
            guard let line = lineBytes.getString(at: lineBytes.readerIndex, length: lineBytes.readableBytes),
                  line.utf8.elementsEqual(lineBytes.readableBytesView)
            else {
                self.fail(.invalidUTF8, context: context)
                return
            }
            self.armTimeout(context: context)
            context.fireChannelRead(self.wrapInboundOut(.line(line)))
        }
        if !self.failed, self.buffer.readableBytes > self.maximumLineLength {
            self.fail(.lineTooLong(limit: self.maximumLineLength), context: context)
            return
        }
        self.buffer.discardReadBytes()
    }

    private func fail(_ error: FrameError, context: ChannelHandlerContext) {
        self.failed = true
        self.timeoutTask?.cancel()
        self.timeoutTask = nil
        self.buffer = ByteBuffer()
        context.fireChannelRead(self.wrapInboundOut(.failure(error)))
    }

    private func armTimeout(context: ChannelHandlerContext) {
        guard let readTimeout, !self.failed else { return }
        self.timeoutTask?.cancel()
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        self.timeoutTask = context.eventLoop.scheduleTask(in: readTimeout) {
            let (handler, context) = loopBound.value
            handler.timeoutTask = nil
            let seconds = Double(readTimeout.nanoseconds) / 1e9
            handler.fail(.readTimeout(seconds: seconds), context: context)
            // Consumers such as NIOAsyncChannel deliver what they buffered on read-complete.
            context.fireChannelReadComplete()
        }
    }
}
