#if canImport(Glibc)
import Glibc
#endif

extension ChildProcess {
    /// Threads that have reaped their child and wait a while to spawn, and wait for, the next
    /// one: a restart's spawn then goes to the thread the death just woke instead of a thread
    /// that has yet to be created and scheduled (issue 21, kill -9 → exec'd).
    ///
    /// Owned by whoever spawns the same kind of child again and again (the worker supervisor),
    /// and passed to `ChildProcess.spawn(…, reusing:)`. A thread takes a new child only after it
    /// has reaped its last one, and then waits for the new one exactly as a new thread would: the
    /// worker's PR_SET_PDEATHSIG still names a thread that lives as long as the worker. Past
    /// `linger` without a child to spawn, the thread ends; at most `capacity` threads wait.
    ///
    ///     let threads = ChildProcess.WaiterThreads()
    ///     let worker = try await ChildProcess.spawn(path, environment: env, reusing: threads)
    public final class WaiterThreads: @unchecked Sendable {
        // @unchecked: `jobs` and `idle` are only touched with `mutex` held.
        private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
        private var jobs: [@Sendable () -> Void] = []
        private var idle = 0
        /// Counts `dismissIdle` calls: a thread that saw it change leaves.
        private var dismissals = 0
        public let linger: Duration
        public let capacity: Int

        public init(linger: Duration = .seconds(1), capacity: Int = 1) {
            self.linger = linger
            self.capacity = capacity
            pthread_mutex_init(mutex, nil)
            var attributes = pthread_condattr_t()
            pthread_condattr_init(&attributes)
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
            pthread_cond_init(condition, &attributes)
            pthread_condattr_destroy(&attributes)
        }

        deinit {
            // Never while a thread waits: each holds a strong reference while it does.
            pthread_cond_destroy(condition)
            pthread_mutex_destroy(mutex)
            condition.deallocate()
            mutex.deallocate()
        }

        /// How many threads wait for a child now.
        public var waiting: Int {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            return idle
        }

        /// Ends the wait of every thread that waits now (before its `linger`): for a caller that
        /// will spawn no more.
        public func dismissIdle() {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            dismissals += 1
            pthread_cond_broadcast(condition)
        }

        /// Runs `job` on a waiting thread, else on a new one; false when there is none and no
        /// thread can be started.
        func run(_ job: @escaping @Sendable () -> Void) -> Bool {
            if handOver(job) { return true }
            return OSThread.detach(.childWaiter) { [self] in
                var next: (@Sendable () -> Void)? = job
                while let job = next {
                    job()
                    next = self.nextJob()
                }
            }
        }

        /// Gives `job` to a waiting thread that has not been promised one; false when none.
        private func handOver(_ job: @escaping @Sendable () -> Void) -> Bool {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            guard idle > jobs.count else { return false }
            jobs.append(job)
            pthread_cond_signal(condition)
            return true
        }

        /// On a thread whose child has ended: the next job, or nil once `linger` has passed
        /// (or `capacity` threads already wait). A thread leaves only when no job is pending, so
        /// every job `handOver` accepted is taken.
        private func nextJob() -> (@Sendable () -> Void)? {
            pthread_mutex_lock(mutex)
            defer { pthread_mutex_unlock(mutex) }
            guard idle < capacity else { return nil }
            idle += 1
            defer { idle -= 1 }
            var deadline = timespec()
            clock_gettime(CLOCK_MONOTONIC, &deadline)
            let (seconds, attoseconds) = linger.components
            deadline.tv_sec += Int(seconds)
            deadline.tv_nsec += Int(attoseconds / 1_000_000_000)
            if deadline.tv_nsec >= 1_000_000_000 {
                deadline.tv_sec += 1
                deadline.tv_nsec -= 1_000_000_000
            }
            let dismissed = dismissals
            while jobs.isEmpty, dismissals == dismissed {
                if pthread_cond_timedwait(condition, mutex, &deadline) == ETIMEDOUT { break }
            }
            return jobs.isEmpty ? nil : jobs.removeFirst()
        }
    }
}
