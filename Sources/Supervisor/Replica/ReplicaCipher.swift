import Crypto
import FoundationEssentials
import Glibc

/// The encrypted form of every object sent to a replica (AES-256-GCM), streamed in chunks so that
/// a large snapshot is never held in memory.
///
///     "BOTRPL01"                      8 bytes: format and version
///     salt                           16 random bytes, new for every object
///     key check                      16 bytes: HMAC-SHA256(key, "key-check" ‖ salt), truncated
///     chunk*                         [plaintext length: u32 LE][nonce: 12][ciphertext][tag: 16]
///
/// Each chunk (at most `chunkSize` bytes of plaintext) is sealed with a random nonce and
/// authenticates `magic ‖ salt ‖ chunk index (u64 LE) ‖ final flag (u8) ‖ object name`: a chunk
/// moved, dropped or cut off, the last chunk missing (a truncated object), or an object stored
/// under another object's name all fail to open. Without the key, an object reveals its size and
/// nothing else.
struct ReplicaCipher: Sendable {
    static let magic: [UInt8] = Array("BOTRPL01".utf8)
    static let chunkSize = 1 << 20
    static let headerSize = 8 + 16 + 16
    static let chunkOverhead = 4 + 12 + 16

    let key: ReplicaKey

    /// What the encrypted size of `length` plaintext bytes is.
    static func sealedSize(of length: Int) -> Int {
        let chunks = max(1, (length + chunkSize - 1) / chunkSize)
        return headerSize + chunks * chunkOverhead + length
    }

    /// The plaintext length of an object of `size` encrypted bytes, as `sealedSize` makes them;
    /// nil when no length gives that size (the object is not one of ours, or is cut short).
    static func plaintextLength(ofSealed size: Int) -> Int? {
        let body = size - headerSize
        guard body >= chunkOverhead else { return nil }
        let chunks = (body + chunkSize + chunkOverhead - 1) / (chunkSize + chunkOverhead)
        let length = body - chunks * chunkOverhead
        return length >= 0 && sealedSize(of: length) == size ? length : nil
    }

    // MARK: - Whole objects in memory (small ones: manifests, the index)

    func seal(_ plaintext: [UInt8], name: String) throws -> [UInt8] {
        var output: [UInt8] = []
        var offset = 0
        try encrypt(name: name, length: plaintext.count, read: { count in
            defer { offset += count }
            return Array(plaintext[offset..<(offset + count)])
        }, write: { output += $0 })
        return output
    }

    func open(_ sealed: [UInt8], name: String) throws -> [UInt8] {
        var output: [UInt8] = []
        var offset = 0
        try decrypt(name: name, read: { count in
            let end = min(sealed.count, offset + count)
            defer { offset = end }
            return Array(sealed[offset..<end])
        }, write: { output += $0 })
        return output
    }

    // MARK: - Files, streamed

    /// Encrypts `length` bytes of `source` from `offset` into a new file `destination`.
    func encryptFile(_ source: String, offset: Int = 0, length: Int, name: String, to destination: String) throws {
        let input = try ReplicaFile(reading: source)
        let output = try ReplicaFile(creating: destination)
        var position = offset
        try encrypt(name: name, length: length, read: { count in
            let bytes = try input.read(count, at: position)
            guard bytes.count == count else { throw ReplicaError.io("\(source) ended at byte \(position + bytes.count), before the \(length) bytes from \(offset)") }
            position += count
            return bytes
        }, write: { try output.append($0) })
        try output.sync()
    }

    /// Decrypts the object file `source`, stored as `name`, into a new file `destination`.
    func decryptFile(_ source: String, name: String, to destination: String) throws {
        let input = try ReplicaFile(reading: source)
        let output = try ReplicaFile(creating: destination)
        var position = 0
        try decrypt(name: name, read: { count in
            let bytes = try input.read(count, at: position)
            position += bytes.count
            return bytes
        }, write: { try output.append($0) })
        try output.sync()
    }

    // MARK: - The format

    private func encrypt(name: String, length: Int, read: (Int) throws -> [UInt8], write: ([UInt8]) throws -> Void) throws {
        let symmetric = key.key
        var salt = [UInt8](repeating: 0, count: 16)
        for index in salt.indices { salt[index] = UInt8.random(in: .min ... .max) }
        try write(Self.magic + salt + keyCheck(salt))
        var remaining = length
        var index: UInt64 = 0
        repeat {
            let count = min(Self.chunkSize, remaining)
            remaining -= count
            let plaintext = try read(count)
            let box = try AES.GCM.seal(plaintext, using: symmetric, nonce: AES.GCM.Nonce(), authenticating: Self.associatedData(salt: salt, index: index, final: remaining == 0, name: name))
            var frame: [UInt8] = []
            frame.reserveCapacity(Self.chunkOverhead + count)
            for shift in stride(from: 0, to: 32, by: 8) { frame.append(UInt8(truncatingIfNeeded: UInt32(count) >> UInt32(shift))) }
            frame += box.nonce.withUnsafeBytes { Array($0) }
            frame += Array(box.ciphertext)
            frame += Array(box.tag)
            try write(frame)
            index += 1
        } while remaining > 0
    }

    private func decrypt(name: String, read: (Int) throws -> [UInt8], write: ([UInt8]) throws -> Void) throws {
        // One byte is read ahead after each chunk: whether there is more tells if it was the last.
        var ahead: [UInt8] = []
        func take(_ count: Int) throws -> [UInt8] {
            var bytes = ahead
            ahead = []
            if bytes.count < count { bytes += try read(count - bytes.count) }
            return bytes
        }
        let header = try take(Self.headerSize)
        guard header.count == Self.headerSize, Array(header[0..<8]) == Self.magic else {
            throw ReplicaError.corrupt(object: name, detail: "it is not an encrypted replica object (bad header)")
        }
        let salt = Array(header[8..<24])
        let symmetric = key.key
        guard Array(header[24..<40]) == keyCheck(salt) else { throw ReplicaError.wrongKey(object: name, keyFile: key.file) }
        var index: UInt64 = 0
        while true {
            let lengthBytes = try take(4)
            if lengthBytes.isEmpty { throw ReplicaError.corrupt(object: name, detail: "it is truncated: it ends after chunk \(index) without its final chunk") }
            guard lengthBytes.count == 4 else { throw ReplicaError.corrupt(object: name, detail: "it is truncated inside chunk \(index)") }
            let count = lengthBytes.enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            guard count <= Self.chunkSize else { throw ReplicaError.corrupt(object: name, detail: "chunk \(index) claims \(count) bytes") }
            let body = try take(12 + count + 16)
            guard body.count == 12 + count + 16 else { throw ReplicaError.corrupt(object: name, detail: "it is truncated inside chunk \(index)") }
            ahead = try read(1)
            let final = ahead.isEmpty
            let plaintext: [UInt8]
            do {
                let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: body[0..<12]), ciphertext: body[12..<(12 + count)], tag: body[(12 + count)...])
                plaintext = Array(try AES.GCM.open(box, using: symmetric, authenticating: Self.associatedData(salt: salt, index: index, final: final, name: name)))
            } catch {
                let why = final ? "it was cut short, altered, or is another object stored under this name" : "it was altered, or is another object stored under this name"
                throw ReplicaError.corrupt(object: name, detail: "chunk \(index) fails authentication: \(why)")
            }
            try write(plaintext)
            if final { return }
            index += 1
        }
    }

    private func keyCheck(_ salt: [UInt8]) -> [UInt8] {
        HMAC<SHA256>.authenticationCode(for: Array("key-check".utf8) + salt, using: key.key).withUnsafeBytes { Array($0.prefix(16)) }
    }

    private static func associatedData(salt: [UInt8], index: UInt64, final: Bool, name: String) -> [UInt8] {
        var data = magic + salt
        for shift in stride(from: 0, to: 64, by: 8) { data.append(UInt8(truncatingIfNeeded: index >> UInt64(shift))) }
        data.append(final ? 1 : 0)
        return data + Array(name.utf8)
    }
}

/// A file read at offsets or appended to, closed when released.
final class ReplicaFile {
    private let fd: Int32
    private let path: String

    init(reading path: String) throws {
        fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        self.path = path
        guard fd >= 0 else { throw ReplicaError.io("open \(path): \(String(cString: strerror(errno)))") }
    }

    init(creating path: String) throws {
        fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        self.path = path
        guard fd >= 0 else { throw ReplicaError.io("create \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(fd) }

    /// Up to `count` bytes at `offset`; fewer only at the end of the file.
    func read(_ count: Int, at offset: Int) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else { throw ReplicaError.io("read \(path): \(String(cString: strerror(errno)))") }
            if n == 0 { break }
            done += n
        }
        return Array(bytes[0..<done])
    }

    func append(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, bytes.count - done) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw ReplicaError.io("write \(path): \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw ReplicaError.io("fsync \(path): \(String(cString: strerror(errno)))") }
    }
}
