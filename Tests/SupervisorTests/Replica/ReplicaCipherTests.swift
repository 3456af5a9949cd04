import Foundation
import Testing

@testable import Supervisor

@Suite struct ReplicaCipherTests {
    static func keyFile() throws -> String {
        let path = NSTemporaryDirectory() + "replica-key-\(UUID().uuidString)"
        try ReplicaKey.generate(to: path)
        return path
    }

    static func cipher() throws -> ReplicaCipher {
        ReplicaCipher(key: try ReplicaKey.load(try keyFile()))
    }

    static func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
    }

    @Test(arguments: [0, 1, 1000, ReplicaCipher.chunkSize, ReplicaCipher.chunkSize + 1, 3 * ReplicaCipher.chunkSize + 5])
    func roundTrip(size: Int) throws {
        let cipher = try Self.cipher()
        let plaintext = Self.bytes(size)
        let sealed = try cipher.seal(plaintext, name: "snapshots/a.sqlite.enc")
        #expect(sealed.count == ReplicaCipher.sealedSize(of: size))
        #expect(try cipher.open(sealed, name: "snapshots/a.sqlite.enc") == plaintext)
    }

    @Test func filesStreamARangeAndComeBackWhole() throws {
        let cipher = try Self.cipher()
        let directory = NSTemporaryDirectory() + "cipher-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let plaintext = Self.bytes(2 * ReplicaCipher.chunkSize + 100)
        try Data(plaintext).write(to: URL(fileURLWithPath: directory + "/plain"))
        try cipher.encryptFile(directory + "/plain", offset: 50, length: plaintext.count - 60, name: "journal/t/s/50.enc", to: directory + "/sealed")
        try cipher.decryptFile(directory + "/sealed", name: "journal/t/s/50.enc", to: directory + "/back")
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/back"))) == Array(plaintext[50..<(plaintext.count - 10)]))
    }

    @Test func plaintextDoesNotShowThrough() throws {
        let sealed = try Self.cipher().seal(Array("SQLite format 3\u{0}member 123456789".utf8), name: "x")
        #expect(!String(decoding: sealed, as: UTF8.self).contains("SQLite"))
        #expect(!String(decoding: sealed, as: UTF8.self).contains("123456789"))
    }

    @Test func aWrongKeyNamesTheObjectAndTheKeyFile() throws {
        let sealed = try Self.cipher().seal(Self.bytes(100), name: "snapshots/a.json.enc")
        let otherFile = try Self.keyFile()
        let other = ReplicaCipher(key: try ReplicaKey.load(otherFile))
        #expect(throws: ReplicaError.wrongKey(object: "snapshots/a.json.enc", keyFile: otherFile)) {
            try other.open(sealed, name: "snapshots/a.json.enc")
        }
    }

    @Test func aTamperedByteIsDetected() throws {
        let cipher = try Self.cipher()
        var sealed = try cipher.seal(Self.bytes(5000), name: "o")
        sealed[ReplicaCipher.headerSize + 4 + 12 + 100] ^= 0x01
        expectCorrupt("o") { try cipher.open(sealed, name: "o") }
    }

    @Test func aTruncatedObjectIsDetected() throws {
        let cipher = try Self.cipher()
        let sealed = try cipher.seal(Self.bytes(2 * ReplicaCipher.chunkSize + 10), name: "o")
        // Cut at a chunk boundary: every chunk left is intact, but the final one is missing.
        let firstChunkEnd = ReplicaCipher.headerSize + ReplicaCipher.chunkOverhead + ReplicaCipher.chunkSize
        expectCorrupt("o") { try cipher.open(Array(sealed[0..<firstChunkEnd]), name: "o") }
        expectCorrupt("o") { try cipher.open(Array(sealed.dropLast(7)), name: "o") }
        expectCorrupt("o") { try cipher.open(Array(sealed[0..<10]), name: "o") }
    }

    @Test func anObjectUnderAnotherNameDoesNotOpen() throws {
        let cipher = try Self.cipher()
        let sealed = try cipher.seal(Self.bytes(100), name: "snapshots/20261201T040000000Z-daily.sqlite.enc")
        expectCorrupt("snapshots/20261202T040000000Z-daily.sqlite.enc") {
            try cipher.open(sealed, name: "snapshots/20261202T040000000Z-daily.sqlite.enc")
        }
    }

    @Test func theKeyFileIsCheckedAndNeverOverwritten() throws {
        let path = try Self.keyFile()
        #expect(throws: ConfigError.self) { try ReplicaKey.generate(to: path) }
        var info = stat()
        stat(path, &info)
        #expect(info.st_mode & 0o777 == 0o600)
        chmod(path, 0o644)
        #expect(error(loading: path)?.contains("chmod 600 \(path)") == true)
        chmod(path, 0o600)
        try (ReplicaKey.header + "\nAAAA\n").write(toFile: path, atomically: false, encoding: .utf8)
        #expect(error(loading: path)?.contains("3 bytes, not 32") == true)
        #expect(error(loading: path + ".missing")?.contains("replica-key generate") == true)
    }

    private func error(loading path: String) -> String? {
        do {
            _ = try ReplicaKey.load(path)
            return nil
        } catch {
            return "\(error)"
        }
    }

    private func expectCorrupt(_ name: String, _ body: () throws -> Void) {
        do {
            try body()
            Issue.record("the object opened")
        } catch let error as ReplicaError {
            guard case .corrupt(let object, _) = error else {
                Issue.record("not reported as corrupt: \(error)")
                return
            }
            #expect(object == name)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}
