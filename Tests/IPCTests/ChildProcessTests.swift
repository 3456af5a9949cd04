import FoundationEssentials
import IPC
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `ChildProcess` with /bin/sh children: the process group, the reset signal state, the staged
/// stop, the EINTR-safe wait. Serialized: some tests change the process's signal dispositions.
@Suite(.serialized) struct ChildProcessTests {
    @Test func childLeadsItsOwnProcessGroup() async throws {
        let child = try await spawn("read line; exit 0", stdin: .pipe)
        #expect(getpgid(child.pid) == child.pid)
        #expect(getpgid(child.pid) != getpgrp())
        close(child.stdin!)
        #expect(await exitStatus(of: child) == .exited(code: 0))
    }

    @Test func exitCodesAndSignalsAreDecoded() async throws {
        let exited = try await spawn("exit 7")
        let status = await exitStatus(of: exited)
        #expect(status == .exited(code: 7))
        #expect(status?.code == 7)
        #expect(status?.description == "exited with code 7")

        let killed = try await spawn("kill -USR2 $$")
        let signaled = await exitStatus(of: killed)
        #expect(signaled == .signaled(signal: SIGUSR2))
        #expect(signaled?.signal == SIGUSR2)
        #expect(signaled?.description == "killed by signal \(SIGUSR2) (SIGUSR2)")
        #expect(ExitStatus(waitStatus: ExitStatus.exited(code: 78).waitStatus) == .exited(code: 78))
    }

    @Test func outputIsPipedMergedOrFirstLineOnly() async throws {
        let merged = try await ChildProcess.spawn("/bin/sh", arguments: ["-c", "echo out; echo err >&2"], environment: [:], stdout: .pipe, stderr: .merged)
        #expect(merged.stderr == nil)
        let output = OutputReader.Capture(merged.stdout!)
        #expect(await exitStatus(of: merged) == .exited(code: 0))
        #expect(String(decoding: await output.output(), as: UTF8.self) == "out\nerr\n")

        let first = try await spawn("echo one; echo two")
        let line = await withDeadline(.seconds(10), onExpiry: { first.signal(SIGKILL) }) {
            await OutputReader.firstLine(from: first.stdout!)
        }
        #expect(line == "one")
        close(first.stderr!)
        _ = await exitStatus(of: first)
    }

    /// swift-service-lifecycle ignores SIGTERM and SIGINT in our processes; ignored signals and
    /// the signal mask survive exec, and the child must get neither.
    @Test func signalDispositionsAndMaskAreReset() async throws {
        let ignoredTerm = signal(SIGTERM, SIG_IGN)
        let ignoredInt = signal(SIGINT, SIG_IGN)
        defer {
            signal(SIGTERM, ignoredTerm)
            signal(SIGINT, ignoredInt)
        }
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGUSR2)
        var previous = sigset_t()
        pthread_sigmask(SIG_BLOCK, &blocked, &previous)
        // The spawning thread is created from this one, with its mask.
        let spawned = try await ChildProcess.spawn("/bin/grep", arguments: ["-E", "^Sig(Blk|Ign):", "/proc/self/status"], environment: [:], stderr: .merged)
        pthread_sigmask(SIG_SETMASK, &previous, nil)
        let capture = OutputReader.Capture(spawned.stdout!)
        #expect(await exitStatus(of: spawned) == .exited(code: 0))
        // Masks in hex, bit n-1 for signal n; only the standard signals (1-31) count: glibc keeps
        // 32 and 33 for itself and posix_spawn leaves them alone.
        let masks = Dictionary(uniqueKeysWithValues: String(decoding: await capture.output(), as: UTF8.self).split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":").map { $0.trimmingCharacters(in: .whitespaces) }
            return fields.count == 2 ? UInt64(fields[1], radix: 16).map { (fields[0], $0 & 0x7fff_ffff) } : nil
        })
        #expect(masks == ["SigBlk": 0, "SigIgn": 0])

        // And so SIGTERM still kills it, though we ignore it.
        let child = try await spawn("read line", stdin: .pipe)
        let status = await child.terminate(grace: .seconds(10))
        #expect(status == .signaled(signal: SIGTERM))
        close(child.stdin!)
    }

    @Test func terminateKillsAGrandchildThatIgnoresTerm() async throws {
        // The grandchild ignores SIGTERM (which survives its exec of sleep) and says its pid.
        let child = try await spawn(#"sh -c 'trap "" TERM; echo $$; exec sleep 1000' & wait"#)
        let line = await withDeadline(.seconds(10), onExpiry: { child.signal(SIGKILL) }) {
            await OutputReader.firstLine(from: child.stdout!)
        }
        close(child.stderr!)
        let grandchild = try #require(line.flatMap { pid_t($0) })
        #expect(getpgid(grandchild) == child.pid)

        let status = await child.terminate(grace: .milliseconds(200))
        #expect(status == .signaled(signal: SIGTERM))
        #expect(await ended(grandchild), "the grandchild outlived the stop of its group")
    }

    @Test func terminateKillsAChildThatTrapsTermAfterTheGrace() async throws {
        let child = try await spawn(#"trap "" TERM; echo trapped; read line"#, stdin: .pipe)
        let line = await withDeadline(.seconds(10), onExpiry: { child.signal(SIGKILL) }) {
            await OutputReader.firstLine(from: child.stdout!)
        }
        #expect(line == "trapped")
        close(child.stderr!)
        let started = ContinuousClock.now
        let status = await child.terminate(grace: .milliseconds(300))
        #expect(status == .signaled(signal: SIGKILL))
        #expect(ContinuousClock.now - started >= .milliseconds(300))
        #expect(child.exitStatus == status)
        close(child.stdin!)
    }

    /// A signal handler installed without SA_RESTART interrupts waitpid with EINTR; the waiting
    /// thread must wait on and report the real status.
    ///
    /// The waiting thread inherits the signal mask of the thread that spawns, and the test
    /// runner's threads block SIGUSR1: the spawn runs on a thread that blocks nothing.
    @Test func waitSurvivesSignalsThatInterruptIt() async throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in interruptions.add(1, ordering: .relaxed) }
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0  // no SA_RESTART
        var previous = sigaction()
        sigaction(SIGUSR1, &action, &previous)
        defer { sigaction(SIGUSR1, &previous, nil) }

        let child = try await withTaskExecutorPreference(UnmaskedThreads()) {
            try await spawn("read line; exit 3", stdin: .pipe)
        }
        for round in 1...5 {
            try #require(child.exitStatus == nil, "the wait ended while the child ran")
            let waiters = try await waitersInWaitpid()
            for thread in waiters { _ = thread_kill(getpid(), thread, SIGUSR1) }
            let deadline = ContinuousClock.now + .seconds(10)
            while interruptions.load(ordering: .relaxed) < round, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(5))
            }
            if interruptions.load(ordering: .relaxed) < round { break }
        }
        #expect(interruptions.load(ordering: .relaxed) >= 5)
        #expect(child.exitStatus == nil)
        close(child.stdin!)
        #expect(await exitStatus(of: child) == .exited(code: 3))
    }

    @Test func whenExitedCallsBackOnceEvenWhenAlreadyExited() async throws {
        let child = try await spawn("exit 4")
        let (statuses, continuation) = AsyncStream.makeStream(of: ExitStatus.self)
        child.whenExited { continuation.yield($0) }
        var iterator = statuses.makeAsyncIterator()
        #expect(await iterator.next() == .exited(code: 4))
        child.whenExited { continuation.yield($0); continuation.finish() }
        #expect(await iterator.next() == .exited(code: 4))
        #expect(await iterator.next() == nil)
    }

    /// The thread that reaped a child spawns the next one and waits for it like a new thread;
    /// past its linger (or dismissed) it ends.
    @Test func aWaiterThreadThatReapedItsChildSpawnsTheNext() async throws {
        let threads = ChildProcess.WaiterThreads(linger: .seconds(30))
        defer { threads.dismissIdle() }
        let first = try await spawn("exit 0", reusing: threads)
        #expect(await exitStatus(of: first) == .exited(code: 0))
        #expect(await waiting(threads, count: 1), "the thread that reaped the child does not wait for another")

        // Handed over: the thread leaves its wait before it spawns, so none waits once we have the child.
        let second = try await spawn("read line; exit 5", stdin: .pipe, reusing: threads)
        #expect(threads.waiting == 0)
        #expect(getpgid(second.pid) == second.pid)
        try #require(second.exitStatus == nil)
        close(second.stdin!)
        #expect(await exitStatus(of: second) == .exited(code: 5))
        #expect(await waiting(threads, count: 1))

        threads.dismissIdle()
        #expect(await waiting(threads, count: 0), "a dismissed thread still waits")
        // With no thread waiting, a spawn starts one of its own.
        let third = try await spawn("exit 6", reusing: threads)
        #expect(await exitStatus(of: third) == .exited(code: 6))
        // Its thread waits in turn; dismissed, no thread of the test outlives it.
        #expect(await waiting(threads, count: 1))
        threads.dismissIdle()
        #expect(await waiting(threads, count: 0))
    }

    @Test func spawnFailuresSayWhy() async {
        await #expect(throws: ChildProcess.SpawnError.self) {
            try await ChildProcess.spawn("/nonexistent/program", environment: [:])
        }
    }

    @Test func threadNamesFitLinux() {
        for purpose in OSThread.Purpose.allCases { #expect(purpose.rawValue.utf8.count <= 15) }
    }

    /// A backup's threads yield the CPU to the rest (nice +10, as /proc shows it for the thread
    /// itself); other purposes run at the process's priority.
    @Test(arguments: [(OSThread.Purpose.backupWork, 10), (.blockingWork, 0)])
    func threadPriority(purpose: OSThread.Purpose, increment: Int) throws {
        let seen = Mutex<Int?>(nil)
        let done = TimedSemaphore()
        #expect(OSThread.detach(purpose) {
            seen.withLock { $0 = Self.niceValue(of: "thread-self") }
            done.signal()
        })
        #expect(done.wait(seconds: 10), "the thread did not run within 10 s")
        let process = try #require(Self.niceValue(of: "self"))
        #expect(seen.withLock { $0 } == min(process + increment, 19))
    }

    /// Field 19 of /proc/<which>/stat, the nice value (after the parenthesised command name).
    private static func niceValue(of which: String) -> Int? {
        guard let stat = try? String(contentsOfFile: "/proc/\(which)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 16 ? Int(fields[16]) : nil  // fields from 3 (state) on: 19 is the 17th
    }

    // MARK: helpers

    private func spawn(_ script: String, stdin: ChildProcess.Input = .null, reusing threads: ChildProcess.WaiterThreads? = nil) async throws -> ChildProcess {
        try await ChildProcess.spawn("/bin/sh", arguments: ["-c", script], environment: ["PATH": "/usr/bin:/bin"], stdin: stdin, reusing: threads)
    }

    /// Whether `count` threads of `threads` wait for a child within ten seconds.
    private func waiting(_ threads: ChildProcess.WaiterThreads, count: Int) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while threads.waiting != count, ContinuousClock.now < deadline {
            _ = try? await Task.sleep(for: .milliseconds(5))
        }
        return threads.waiting == count
    }

    /// The child's status within `limit`, else nil (and the child is killed).
    private func exitStatus(of child: ChildProcess, within limit: Duration = .seconds(10)) async -> ExitStatus? {
        let status = await withTaskGroup(of: ExitStatus?.self) { group in
            group.addTask { try? await child.wait() }
            group.addTask {
                try? await Task.sleep(for: limit)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if status == nil {
            Issue.record("the child did not end within \(limit)")
            child.signal(SIGKILL)
        }
        return status
    }

    /// Whether `pid` is gone or a zombie (reparented, not reaped yet) within ten seconds.
    private func ended(_ pid: pid_t) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let end = stat.lastIndex(of: ")")
            else { return true }
            if stat[end...].dropFirst(2).first == "Z" { return true }
            _ = try? await Task.sleep(for: .milliseconds(5))
        }
        return false
    }

    /// The threads of ours named `child-waiter` once each is blocked in wait4(2) (its number in
    /// /proc/…/syscall is 61 on x86_64, 260 on arm64).
    private func waitersInWaitpid() async throws -> [pid_t] {
        let wait4: Int = {
            #if arch(arm64)
            260
            #else
            61
            #endif
        }()
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            let waiters = tasks.compactMap { tid -> (pid_t, Bool)? in
                guard let name = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8),
                      name.hasPrefix(OSThread.Purpose.childWaiter.rawValue), let id = pid_t(tid)
                else { return nil }
                let call = (try? String(contentsOfFile: "/proc/self/task/\(tid)/syscall", encoding: .utf8)) ?? ""
                return (id, call.split(separator: " ").first.flatMap { Int($0) } == wait4)
            }
            if !waiters.isEmpty, waiters.allSatisfy(\.1) { return waiters.map(\.0) }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw WaiterNotFound()
    }

    private struct WaiterNotFound: Error, CustomStringConvertible {
        var description: String { "no child-waiter thread blocked in wait4 within 10 s: did the wait end while its child ran?" }
    }
}

/// Runs each job on a new thread that blocks no signal, so that a thread it starts blocks none.
private final class UnmaskedThreads: TaskExecutor {
    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        let started = OSThread.detach(.blockingWork) {
            var none = sigset_t()
            sigemptyset(&none)
            pthread_sigmask(SIG_SETMASK, &none, nil)
            job.runSynchronously(on: executor)
        }
        precondition(started, "no thread for the test's executor")
    }
}

/// Ours, not swift-testing's exit-test status.
private typealias ExitStatus = IPC.ExitStatus

private let interruptions = Atomic<Int>(0)

/// tgkill(2), which Glibc declares only under _GNU_SOURCE: a signal to one thread of ours.
@_silgen_name("tgkill")
private func thread_kill(_ process: pid_t, _ thread: pid_t, _ signal: Int32) -> Int32

/// A counting semaphore whose wait has a deadline (sem_timedwait on CLOCK_REALTIME).
private final class TimedSemaphore: @unchecked Sendable {  // sem_t is thread-safe
    private let semaphore = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
    init() { sem_init(semaphore, 0, 0) }
    deinit {
        sem_destroy(semaphore)
        semaphore.deallocate()
    }
    func signal() { sem_post(semaphore) }
    func wait(seconds: Int) -> Bool {
        var deadline = timespec()
        clock_gettime(CLOCK_REALTIME, &deadline)
        deadline.tv_sec += seconds
        while sem_timedwait(semaphore, &deadline) != 0 {
            if errno != EINTR { return false }
        }
        return true
    }
}
