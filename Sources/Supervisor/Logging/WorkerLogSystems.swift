import IPC
import Synchronization

/// The log systems each worker announced in its `hello`: `WorkerOutput` files a line of one of
/// them (or of a core system) into `<system>.log`, and a line of any other system into
/// `bot.log` as raw output.
///
/// Kept per worker pid: during a restart or a deploy the old worker's last lines and the new
/// worker's first ones interleave, and each is filed by what its own worker announced.
final class WorkerLogSystems: Sendable {
    private struct State {
        var announced: [Int32: Set<String>] = [:]
        /// Pids in the order they announced, to forget the oldest.
        var order: [Int32] = []
    }

    private let state = Mutex(State())
    /// Workers remembered; a supervisor runs one at a time, so a few cover every overlap.
    static let remembered = 8

    /// Takes the systems a hello announces, or says why not (a name that cannot be a file of its
    /// own, or is reserved): the worker is then refused with that error.
    func admit(_ hello: WorkerMessage.Hello) -> ErrorBody? {
        let bad = LogLine.validate(announced: hello.logSystems)
        guard bad.isEmpty else {
            return ErrorBody(code: "bad-log-system", message: bad.map(\.description).joined(separator: "; ") + "; rename the feature's log system")
        }
        announce(hello.logSystems, pid: hello.pid)
        return nil
    }

    /// Worker `pid`'s systems, already checked with `LogLine.validate(announced:)`.
    func announce(_ systems: [String], pid: Int32) {
        state.withLock { state in
            if state.announced.updateValue(Set(systems), forKey: pid) == nil { state.order.append(pid) }
            while state.order.count > Self.remembered {
                state.announced[state.order.removeFirst()] = nil
            }
        }
    }

    /// The systems a line of worker `pid` may name: the core ones and what it announced.
    func systems(of pid: Int32) -> Set<String> {
        LogLine.coreWorkerSystems.union(state.withLock { $0.announced[pid] ?? [] })
    }
}
