import NIOCore
import NIOWebSocket

/// One Gateway WebSocket as the rest of the sandbox sees it: something to send pre-encoded
/// payloads to and to close, from any thread.
///
/// Every send is queued with `eventLoop.execute`, never written inline: dispatches are queued while
/// the world's lock is held, so frames leave in sequence order, and a failing write can never call
/// back into the lock.
final class GatewayConnection: @unchecked Sendable {  // mutable fields are touched on `eventLoop` only
    let id: Int
    let channel: any Channel
    var eventLoop: any EventLoop { channel.eventLoop }

    /// The close code the sandbox sent, once it started closing (0: dropped without a close frame).
    private(set) var closingCode: UInt16?
    /// The close code the client sent, if it closed first.
    var clientCloseCode: UInt16?
    private var writabilityWaiters: [EventLoopPromise<Void>] = []

    init(id: Int, channel: any Channel) {
        self.id = id
        self.channel = channel
    }

    /// Queues one text frame.
    func send(_ text: ByteBuffer) {
        let channel = channel
        eventLoop.execute {
            channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .text, data: text), promise: nil)
        }
    }

    /// Queues several text frames with one flush; the future completes when the last is written.
    func send(batch: [ByteBuffer]) -> EventLoopFuture<Void> {
        let channel = channel
        let promise = eventLoop.makePromise(of: Void.self)
        eventLoop.execute {
            for (index, text) in batch.enumerated() {
                let frame = WebSocketFrame(fin: true, opcode: .text, data: text)
                channel.write(frame, promise: index == batch.count - 1 ? promise : nil)
            }
            if batch.isEmpty { promise.succeed() }
            channel.flush()
        }
        return promise.futureResult
    }

    /// Closes with a Gateway close code, or drops the TCP connection without a close frame (nil).
    func close(code: UInt16?) {
        eventLoop.execute { self.closeOnLoop(code: code) }
    }

    func closeOnLoop(code: UInt16?) {
        guard closingCode == nil else { return }
        closingCode = code ?? 0
        guard let code else {
            channel.close(promise: nil)
            return
        }
        var data = channel.allocator.buffer(capacity: 2)
        data.writeInteger(code)
        let channel = channel
        channel.writeAndFlush(WebSocketFrame(fin: true, opcode: .connectionClose, data: data)).whenComplete { _ in
            channel.close(promise: nil)
        }
    }

    var isClosing: Bool { closingCode != nil }

    /// Completes once the socket takes more data (or is gone): the flood's back-pressure.
    func writable() -> EventLoopFuture<Void> {
        eventLoop.flatSubmit {
            if self.channel.isWritable || !self.channel.isActive { return self.eventLoop.makeSucceededVoidFuture() }
            let promise = self.eventLoop.makePromise(of: Void.self)
            self.writabilityWaiters.append(promise)
            return promise.futureResult
        }
    }

    /// Called on the loop when writability changes or the channel goes away.
    func wakeWriters() {
        guard channel.isWritable || !channel.isActive else { return }
        let waiters = writabilityWaiters
        writabilityWaiters = []
        for waiter in waiters { waiter.succeed() }
    }
}
