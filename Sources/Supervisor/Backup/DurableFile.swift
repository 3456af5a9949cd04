import Crypto
import FoundationEssentials
import Glibc

/// File helpers whose every step is durable: write, fsync, rename, fsync the directory.
enum DurableFile {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func fsync(path: String) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "open \(path): \(errorText())") }
        defer { close(fd) }
        guard Glibc.fsync(fd) == 0 else { throw Failure(description: "fsync \(path): \(errorText())") }
    }

    static func fsyncDirectory(of path: String) throws {
        try fsync(path: directory(of: path))
    }

    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    /// Renames `from` to `to` (same directory) and makes the rename durable.
    static func rename(_ from: String, to: String) throws {
        guard Glibc.rename(from, to) == 0 else { throw Failure(description: "rename \(from) → \(to): \(errorText())") }
        try fsyncDirectory(of: to)
    }

    static func write(_ data: Data, to path: String) throws {
        try create(path) { append in try data.withUnsafeBytes { try append($0) } }
    }

    /// Copies `source` to `destination`, fsyncs it, and returns its SHA-256.
    static func copy(_ source: String, to destination: String, progress: (Int) -> Void = { _ in }) throws -> String {
        var digest = ""
        try create(destination) { append in
            digest = try sha256(of: source, progress: progress, each: append)
        }
        return digest
    }

    /// Creates (or truncates) `path`, lets `fill` append to it, and fsyncs it.
    private static func create(_ path: String, _ fill: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw Failure(description: "create \(path): \(errorText())") }
        defer { close(fd) }
        try fill { chunk in
            var offset = 0
            while offset < chunk.count {
                let written = Glibc.write(fd, chunk.baseAddress! + offset, chunk.count - offset)
                guard written > 0 else { throw Failure(description: "write \(path): \(errorText())") }
                offset += written
            }
        }
        guard Glibc.fsync(fd) == 0 else { throw Failure(description: "fsync \(path): \(errorText())") }
    }

    /// The SHA-256 of a file, read in 4 MiB chunks, each also handed to `each`.
    static func sha256(
        of path: String,
        progress: (Int) -> Void = { _ in },
        each: (UnsafeRawBufferPointer) throws -> Void = { _ in }
    ) throws -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure(description: "open \(path): \(errorText())") }
        defer { close(fd) }
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 4 << 20)
        var total = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count >= 0 else { throw Failure(description: "read \(path): \(errorText())") }
            if count == 0 { break }
            try buffer.withUnsafeBytes { bytes in
                let chunk = UnsafeRawBufferPointer(rebasing: bytes[..<count])
                hasher.update(bufferPointer: chunk)
                try each(chunk)
            }
            total += count
            progress(total)
        }
        return hex(hasher.finalize())
    }

    /// Lower-case hexadecimal.
    static func hex<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0xf)]] })
    }

    static func size(of path: String) -> Int? {
        var info = stat()
        return stat(path, &info) == 0 ? Int(info.st_size) : nil
    }

    static func errorText() -> String { String(cString: strerror(errno)) }
}
