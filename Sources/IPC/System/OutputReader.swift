import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Reads a child's output pipe on a thread of its own (read(2) blocks until the child writes or
/// ends) until end of file, then closes the descriptor. End of file comes when every process
/// holding the write end has closed it or died: stopping the child's group ends the read.
public enum OutputReader {
    /// Copies `fd` to `onLine` line by line (a line over 64 KiB is cut in pieces), then calls
    /// `onEnd`. Returns false (and closes `fd`) when no thread can be started.
    @discardableResult
    public static func lines(from fd: Int32, onLine: @escaping @Sendable (String) -> Void, onEnd: @escaping @Sendable () -> Void = {}) -> Bool {
        let started = OSThread.detach(.outputReader) {
            var pending = [UInt8]()
            readToEnd(fd) { chunk in
                pending.append(contentsOf: chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    onLine(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
                if pending.count > 64 * 1024 {
                    onLine(String(decoding: pending, as: UTF8.self))
                    pending.removeAll()
                }
                return true
            }
            if !pending.isEmpty { onLine(String(decoding: pending, as: UTF8.self)) }
            onEnd()
        }
        if !started { close(fd) }
        return started
    }

    /// The first line of `fd` (without its newline), what came before end of file when no line
    /// ends, nil when nothing came; `fd` is closed after it, so what the child writes later fails
    /// with EPIPE.
    public static func firstLine(from fd: Int32) async -> String? {
        await withCheckedContinuation { continuation in
            let started = OSThread.detach(.outputReader) {
                var bytes: [UInt8] = []
                readToEnd(fd) { chunk in
                    bytes += chunk
                    return !chunk.contains(UInt8(ascii: "\n"))
                }
                let line = bytes.prefix { $0 != UInt8(ascii: "\n") }
                continuation.resume(returning: bytes.isEmpty ? nil : String(decoding: line, as: UTF8.self))
            }
            if !started {
                close(fd)
                continuation.resume(returning: nil)
            }
        }
    }

    /// Everything `fd` gives up to end of file, the first `limit` bytes kept (the rest is read
    /// and dropped, so that the child never blocks on a full pipe), collected in the background.
    public final class Capture: Sendable {
        private let bytes = OneShot<[UInt8]>()

        public init(_ fd: Int32, limit: Int = 1 << 20) {
            let bytes = self.bytes
            let started = OSThread.detach(.outputReader) {
                var kept: [UInt8] = []
                readToEnd(fd) { chunk in
                    if kept.count < limit { kept += chunk.prefix(limit - kept.count) }
                    return true
                }
                bytes.set(kept)
            }
            if !started {
                close(fd)
                bytes.set(Array("(output lost: no thread to read it)".utf8))
            }
        }

        /// The output, once the pipe has ended.
        public func output() async -> [UInt8] {
            await bytes.waitIgnoringCancellation()
        }

        /// The output when the pipe has ended, else nil.
        public var outputIfEnded: [UInt8]? { bytes.value }
    }

    /// Reads `fd` in chunks, retrying EINTR, while `chunk` returns true and until end of file or
    /// an error; then closes `fd`.
    private static func readToEnd(_ fd: Int32, _ chunk: (ArraySlice<UInt8>) -> Bool) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            if count <= 0 || !chunk(buffer[..<count]) { break }
        }
        close(fd)
    }
}
