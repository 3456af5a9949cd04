import CSupport
import IPC
import NIOCore
import NIOPosix
import Synchronization

/// The one place the supervisor's blocking file work runs: catalog scans, copies, SQLite checks
/// of a large file, statvfs. A fixed pool of threads, so that Swift concurrency's few cooperative
/// threads (one per core) stay free for the supervision loop, the status store and the sockets.
///
/// Every job has a deadline. A job still running when it passes (a read on a hung network mount
/// sits in the kernel and cannot be cancelled) is given up on: the caller gets `DeadlineExceeded`
/// at once and carries on, and the job's late result is dropped. The thread stays with the job
/// until the kernel lets it go, so callers keep at most one job at a time on a place that may
/// hang (see `DataSafetyMachine`'s probes).
final class BlockingPool: Sendable {
    struct DeadlineExceeded: Error, CustomStringConvertible {
        var name: String
        var deadline: Duration
        var description: String { "\(name) did not finish within \(WorkerStateMachine.seconds(deadline))" }
    }

    /// The supervisor's pool: four threads (two cores; a hung job leaves three for the rest).
    static let shared = BlockingPool(threads: 4)

    private let pool: NIOThreadPool
    private let timers: any EventLoop
    /// Jobs submitted and not yet finished.
    private let running = Atomic<Int>(0)

    init(threads: Int) {
        pool = NIOThreadPool(numberOfThreads: threads)
        pool.start()
        timers = MultiThreadedEventLoopGroup.singleton.next()
    }

    /// Runs `work` on a pool thread; throws `DeadlineExceeded` if it has not finished within `deadline`.
    func run<T: Sendable>(_ name: String, deadline: Duration, _ work: @escaping @Sendable () throws -> T) async throws -> T {
        let answer = Mutex<CheckedContinuation<T, any Error>?>(nil)
        return try await withCheckedThrowingContinuation { continuation in
            answer.withLock { $0 = continuation }
            let timer = timers.scheduleTask(in: .nanoseconds(Int64(deadline.components.seconds) * 1_000_000_000 + Int64(deadline.components.attoseconds / 1_000_000_000))) {
                answer.withLock { $0.take() }?.resume(throwing: DeadlineExceeded(name: name, deadline: deadline))
            }
            running.add(1, ordering: .relaxed)
            pool.submit { state in
                let result: Result<T, any Error> = state == .active ? Result { try work() } : .failure(DeadlineExceeded(name: name, deadline: .zero))
                timer.cancel()
                // The last job out hands what the jobs freed back to the kernel: a backup's
                // buffers and the page caches of the SQLite checks it made (tens of MB) would
                // otherwise stay in malloc's arenas, counted in the supervisor's RSS for as long
                // as it runs. Before the reply, so that the caller sees the memory back.
                if self.running.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 {
                    csupport_release_free_memory()
                }
                answer.withLock { $0.take() }?.resume(with: result)
            }
        }
    }
}
