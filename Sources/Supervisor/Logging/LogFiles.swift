import FoundationEssentials
import IPC
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The per-system JSON log files under `logs.dir`: `supervisor.log`, `bot.log`, `audit.log`,
/// `errors.log`, …
///
/// Each line is written with a single `write(2)` to a descriptor opened with `O_APPEND`, so lines
/// from several writers (threads or processes) never interleave or tear.
final class LogFiles: Sendable {
    let directory: String
    private let descriptors = Mutex<[String: Int32]>([:])
    private let failureReported = Atomic<Bool>(false)

    init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit {
        descriptors.withLock { for fd in $0.values { close(fd) } }
    }

    /// Appends `line` (which must end with a newline) to `<system>.log`.
    func append(_ line: String, to system: String) {
        let fd = descriptors.withLock { open -> Int32 in
            if let fd = open[system] { return fd }
            let fd = Glibc.open(directory + "/" + system + ".log", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            if fd >= 0 { open[system] = fd }
            return fd
        }
        var ok = fd >= 0
        if ok {
            ok = line.utf8.withContiguousStorageIfAvailable { write(fd, $0.baseAddress, $0.count) == $0.count }
                ?? Array(line.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) == $0.count }
        }
        if !ok, !failureReported.exchange(true, ordering: .relaxed) {
            // Logging degrades instead of taking the supervisor down; say so once.
            let message = "bot-supervisor: cannot write to \(directory)/\(system).log (\(String(cString: strerror(errno)))); logging to files is degraded until the supervisor restarts\n"
            StandardError.write(message)
        }
    }
}
