/// Random byte streams (lines of printable text, NULs, CRs, multi-byte and invalid UTF-8, lines
/// past the limit) in random chunks, with the clock moved between them, against a model of what
/// the handler promises: every line within the limit delivered once, in order, byte for byte
/// (less one trailing CR); the first bad line or stall delivered as its failure, and nothing after.
///
/// To run longer, with a seed of your own:
///
///     FUZZ_ITERATIONS=1000000 FUZZ_SEED=$RANDOM swift test --filter Fuzz

import IPC
import NIOCore
import NIOEmbedded
import TestSupport
import Testing

@Suite struct LineFrameHandlerFuzzTests {
    /// What a frame carries, byte for byte (`String ==` would call "é" and "e\u{301}" equal).
    enum Delivered: Equatable, CustomStringConvertible {
        case line([UInt8])
        case failure(FrameError)

        init(_ frame: Frame) {
            switch frame {
            case .line(let line): self = .line(Array(line.utf8))
            case .failure(let error): self = .failure(error)
            }
        }

        var description: String {
            switch self {
            case .line(let bytes): "line \"\(Fuzzer.escaped(bytes, limit: 60))\""
            case .failure(let error): "failure \(error.code)"
            }
        }
    }

    @Test func randomStreamsInRandomChunks() throws {
        let fuzzer = Fuzzer("LineFrameHandler", iterations: 1500)
        try fuzzer.run { random in
            let limit = random.pick([1, 4, 16, 64, 300])
            let timeout: Int64? = random.chance(30) ? 5000 : nil
            let stream = Self.stream(&random, limit: limit)
            fuzzer.feed(stream)

            let channel = EmbeddedChannel()
            defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
            try channel.pipeline.syncOperations.addHandler(
                LineFrameHandler(maximumLineLength: limit, readTimeout: timeout.map { .milliseconds($0) })
            )
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
            var model = Model(limit: limit, timeoutMs: timeout)
            var delivered: [Delivered] = []
            var offset = 0
            var chunks = 0
            while offset < stream.count {
                let size = random.chance(5) ? 0 : 1 + random.below(random.chance(50) ? 8 : 400)
                let chunk = Array(stream[offset..<min(stream.count, offset + size)])
                offset += chunk.count
                chunks += 1
                try channel.writeInbound(ByteBuffer(bytes: chunk))
                model.receive(chunk)
                if timeout != nil, random.chance(30) {
                    let elapsed = Int64(random.below(6000))
                    channel.embeddedEventLoop.advanceTime(by: .milliseconds(elapsed))
                    model.advance(by: elapsed)
                }
                while let frame = try channel.readInbound(as: Frame.self) { delivered.append(Delivered(frame)) }
            }
            fuzzer.check(
                delivered == model.delivered,
                "limit \(limit), timeout \(timeout.map(String.init) ?? "none"), \(chunks) chunks: delivered \(delivered), expected \(model.delivered)"
            )
        }
    }

    /// The limit is on the bytes before the newline: a line of exactly the default limit passes,
    /// whether its newline comes with it or later; one byte more fails as soon as it arrives.
    @Test func theDefaultLimitIsExact() throws {
        for (length, expected) in [(LineFrameHandler.defaultMaximumLineLength, true), (LineFrameHandler.defaultMaximumLineLength + 1, false)] {
            let channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandler(LineFrameHandler(readTimeout: nil))
            try channel.writeInbound(ByteBuffer(repeating: UInt8(ascii: "x"), count: length))
            try channel.writeInbound(ByteBuffer(string: "\nok\n"))
            var frames: [Frame] = []
            while let frame = try channel.readInbound(as: Frame.self) { frames.append(frame) }
            if expected {
                #expect(frames.count == 2)
                #expect(frames.first.map { if case .line(let line) = $0 { line.utf8.count == length } else { false } } == true)
                #expect(frames.last == .line("ok"))
            } else {
                #expect(frames == [.failure(.lineTooLong(limit: LineFrameHandler.defaultMaximumLineLength))])
            }
            _ = try channel.finish(acceptAlreadyClosed: true)
        }
    }

    /// Lines as a peer might send them: mostly fine, some with a CR, NULs, multi-byte text, some
    /// past the limit or not UTF-8; the last one perhaps unfinished.
    static func stream(_ random: inout FuzzRandom, limit: Int) -> [UInt8] {
        let pieces: [[UInt8]] = [
            Array("{\"cmd\":\"status\"}".utf8), Array("a".utf8), Array(" ".utf8), [0], [UInt8(ascii: "\r")],
            Array("é".utf8), Array("👍🏽".utf8), Array("e\u{301}".utf8), Array("\u{FEFF}".utf8),
        ]
        var stream: [UInt8] = []
        for _ in 0..<random.below(25) {
            var line: [UInt8] = []
            let length = random.chance(6) ? limit + 1 + random.below(2 * limit + 2) : random.below(limit + 2)
            while line.count < length {
                line += random.chance(3) ? random.pick(ByteMutator.invalidUTF8) : random.pick(pieces)
            }
            stream += line
            if random.chance(95) { stream += random.chance(20) ? [13, 10] : [10] }
        }
        return stream
    }

    /// The handler's promise, written plainly.
    struct Model {
        let limit: Int
        let timeoutMs: Int64?
        private(set) var delivered: [Delivered] = []
        private var buffer: [UInt8] = []
        private var now: Int64 = 0
        private var armedAt: Int64 = 0
        private var failed = false

        init(limit: Int, timeoutMs: Int64?) {
            self.limit = limit
            self.timeoutMs = timeoutMs
        }

        mutating func receive(_ chunk: [UInt8]) {
            guard !failed else { return }
            buffer += chunk
            while let newline = buffer.firstIndex(of: 10) {
                guard newline <= limit else { return fail(.lineTooLong(limit: limit)) }
                var line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                if line.last == 13 { line.removeLast() }
                guard String(validating: line, as: UTF8.self) != nil else { return fail(.invalidUTF8) }
                armedAt = now
                delivered.append(.line(line))
            }
            if buffer.count > limit { fail(.lineTooLong(limit: limit)) }
        }

        mutating func advance(by milliseconds: Int64) {
            now += milliseconds
            if let timeoutMs, !failed, now - armedAt >= timeoutMs {
                fail(.readTimeout(seconds: Double(timeoutMs) / 1000))
            }
        }

        private mutating func fail(_ error: FrameError) {
            failed = true
            delivered.append(.failure(error))
        }
    }
}
