import IPC
import NIOCore
import NIOEmbedded
import Testing

@Suite struct LineFrameHandlerTests {
    private func channel(maximumLineLength: Int = 16, readTimeout: TimeAmount? = nil) throws -> EmbeddedChannel {
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(LineFrameHandler(maximumLineLength: maximumLineLength, readTimeout: readTimeout))
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        return channel
    }

    private func frames(_ channel: EmbeddedChannel) throws -> [Frame] {
        var frames: [Frame] = []
        while let frame = try channel.readInbound(as: Frame.self) { frames.append(frame) }
        return frames
    }

    @Test func splitsLinesAcrossReads() throws {
        let channel = try channel()
        try channel.writeInbound(ByteBuffer(string: "{\"a\":1}\n{\"b\""))
        try channel.writeInbound(ByteBuffer(string: ":2}\r\n"))
        #expect(try frames(channel) == [.line("{\"a\":1}"), .line("{\"b\":2}")])
    }

    @Test func overLongLineFailsOnceAndDropsTheRest() throws {
        let channel = try channel(maximumLineLength: 8)
        try channel.writeInbound(ByteBuffer(string: "123456789"))
        try channel.writeInbound(ByteBuffer(string: "more\nok\n"))
        #expect(try frames(channel) == [.failure(.lineTooLong(limit: 8))])
    }

    @Test func overLongLineWithNewlineFails() throws {
        let channel = try channel(maximumLineLength: 4)
        try channel.writeInbound(ByteBuffer(string: "12345\n"))
        #expect(try frames(channel) == [.failure(.lineTooLong(limit: 4))])
    }

    @Test func invalidUTF8Fails() throws {
        let channel = try channel()
        try channel.writeInbound(ByteBuffer(bytes: [0x7b, 0xff, 0xfe, 0x7d, 0x0a]))
        #expect(try frames(channel) == [.failure(.invalidUTF8)])
    }

    @Test func stalledHalfLineTimesOut() throws {
        let channel = try channel(readTimeout: .seconds(5))
        try channel.writeInbound(ByteBuffer(string: "{\"cmd\":"))
        channel.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(try frames(channel).isEmpty)
        channel.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(try frames(channel) == [.failure(.readTimeout(seconds: 5))])
    }

    @Test func eachCompleteLineRestartsTheTimeout() throws {
        let channel = try channel(readTimeout: .seconds(5))
        for _ in 0..<3 {
            channel.embeddedEventLoop.advanceTime(by: .seconds(4))
            try channel.writeInbound(ByteBuffer(string: "{}\n"))
        }
        #expect(try frames(channel) == [.line("{}"), .line("{}"), .line("{}")])
    }
}
