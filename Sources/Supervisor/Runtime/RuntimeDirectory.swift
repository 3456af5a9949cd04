import FoundationEssentials
import IPC

#if canImport(Glibc)
import Glibc
#endif

/// The directory of the supervisor's sockets and lock, and the rule that one supervisor runs per
/// data directory.
///
/// The directory is mode 0750 (docs/contract.md). `supervisor.lock` is held with flock(2) for the
/// supervisor's lifetime, so a second supervisor on the same directory stops at once. A socket
/// file left by a killed supervisor is removed only after a connect to it fails.
final class RuntimeDirectory {
    struct Refusal: Error, CustomStringConvertible {
        var description: String
    }

    let path: String
    private let lockDescriptor: Int32

    init(path: String, lockFile: String, sockets: [String]) throws {
        self.path = path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try Self.setMode(0o750, of: path)

        let fd = open(lockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw Refusal(description: "cannot open \(lockFile): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: lockFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            throw Refusal(description: "another bot-supervisor (pid \(holder ?? "unknown")) is already running on \(path); stop it first (`systemctl stop bot-supervisor`) or use another dataDir")
        }
        ftruncate(fd, 0)
        let pidText = "\(getpid())\n"
        _ = pidText.withCString { write(fd, $0, strlen($0)) }
        lockDescriptor = fd

        for socket in sockets where FileManager.default.fileExists(atPath: socket) {
            if Self.isAnswering(socket) {
                throw Refusal(description: "something is already listening on \(socket); stop it first or use another runtimeDir")
            }
            unlink(socket)
        }
    }

    deinit {
        close(lockDescriptor)
    }

    /// Removes the sockets at shutdown; the lock file stays (it is reused, never trusted by content).
    func removeSockets(_ sockets: [String]) {
        for socket in sockets { unlink(socket) }
    }

    static func setMode(_ mode: mode_t, of path: String) throws {
        guard chmod(path, mode) == 0 else {
            throw Refusal(description: "cannot set the mode of \(path): \(String(cString: strerror(errno)))")
        }
    }

    private static func isAnswering(_ socketPath: String) -> Bool {
        do {
            close(try ControlClient(socketPath: socketPath, timeoutSeconds: 1).connectOnly())
            return true
        } catch {
            return false
        }
    }
}
