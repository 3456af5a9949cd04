import Crypto
import FoundationEssentials
import Glibc

/// The key that encrypts everything sent to the replicas: 32 random bytes in `replicas.keyFile`,
/// mode 0600, never sent anywhere.
///
/// The file is two lines of text:
///
///     bot-supervisor replica key v1
///     q2Vb0p0yq6d6pZ3gQ5m0iXg7sXbV6JbB8m9l3z6cY1w=
///
/// **Keep a copy of it off the server.** Without it the replicas are unreadable, by anyone,
/// including the operator rebuilding a lost server.
struct ReplicaKey: Sendable {
    static let header = "bot-supervisor replica key v1"
    static let byteCount = 32

    /// The 32 bytes (SymmetricKey is not Sendable; one is made where it is used).
    private let bytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: bytes) }
    /// Where it was read from, for the error messages.
    let file: String

    /// Reads and checks `file`: a missing file, a wrong size or a mode open to others is a
    /// `ConfigError` naming the file and the command that makes one.
    static func load(_ file: String) throws -> ReplicaKey {
        let remedy = "run `bot-supervisor replica-key generate` to write one (or put back your copy of the key)"
        var info = stat()
        guard stat(file, &info) == 0 else {
            throw ConfigError(description: "replicas.keyFile \(file) does not exist: the replicas need their encryption key; \(remedy)")
        }
        guard info.st_mode & 0o077 == 0 else {
            throw ConfigError(description: "replicas.keyFile \(file) has mode \(String(info.st_mode & 0o777, radix: 8)): it must be readable by its owner only (chmod 600 \(file))")
        }
        guard let data = FileManager.default.contents(atPath: file) else {
            throw ConfigError(description: "replicas.keyFile \(file) cannot be read: \(String(cString: strerror(errno)))")
        }
        let lines = String(decoding: data, as: UTF8.self).split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard lines.count == 2, lines[0] == header, let bytes = Data(base64Encoded: lines[1]) else {
            throw ConfigError(description: "replicas.keyFile \(file) is not a replica key (expected the line \"\(header)\" and a base64 line); \(remedy)")
        }
        guard bytes.count == byteCount else {
            throw ConfigError(description: "replicas.keyFile \(file) holds a key of \(bytes.count) bytes, not \(byteCount); \(remedy)")
        }
        return ReplicaKey(bytes: Array(bytes), file: file)
    }

    /// The file's text for a new random key.
    static func generateText() -> String {
        let key = SymmetricKey(size: .bits256)
        let base64 = key.withUnsafeBytes { Data($0).base64EncodedString() }
        return header + "\n" + base64 + "\n"
    }

    /// Writes a new key to `file` with mode 0600; an existing file is never replaced (it may be
    /// the only key that opens the replicas).
    static func generate(to file: String) throws {
        try? FileManager.default.createDirectory(atPath: DurableFile.directory(of: file), withIntermediateDirectories: true)
        let fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = errno == EEXIST
                ? "it already exists and is never overwritten (it may be the only key that opens your replicas); move it away first if you really mean to replace it"
                : String(cString: strerror(errno))
            throw ConfigError(description: "cannot write the replica key \(file): \(reason)")
        }
        defer { close(fd) }
        let bytes = Array(generateText().utf8)
        guard fchmod(fd, 0o600) == 0, write(fd, bytes, bytes.count) == bytes.count, fsync(fd) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(file)
            throw ConfigError(description: "cannot write the replica key \(file): \(reason)")
        }
    }
}
