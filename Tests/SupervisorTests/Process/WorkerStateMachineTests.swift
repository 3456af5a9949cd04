import Glibc
import IPC
import Testing

@testable import Supervisor

@Suite struct WorkerStateMachineTests {
    let t0 = ContinuousClock.now
    let settings = WorkerStateMachine.Settings(heartbeatTimeout: .seconds(15), stopGrace: .seconds(10))

    func machine() -> WorkerStateMachine {
        WorkerStateMachine(settings: settings, policy: RestartPolicy(initialDelay: .seconds(1), maximumDelay: .seconds(60)))
    }

    /// Starts a worker with `pid` and makes it ready at `at`.
    func running(_ m: inout WorkerStateMachine, pid: Int32, at: ContinuousClock.Instant) {
        #expect(m.handle(.start, at: at) == [.spawn] || m.handle(.restartRequested(by: "test"), at: at) == [.spawn])
        _ = m.handle(.spawned(pid: pid), at: at)
        _ = m.handle(.ready(pid: pid), at: at)
    }

    @Test func startSpawnsAndReadyIsAnnouncedOnce() {
        var m = machine()
        #expect(m.handle(.start, at: t0) == [.spawn])
        #expect(m.handle(.spawned(pid: 10), at: t0) == [.startTimer(.heartbeatCheck, generation: 1, after: .seconds(15))])
        #expect(m.state == .starting)
        #expect(m.handle(.ready(pid: 10), at: t0 + .milliseconds(20)) == [.firstReady])
        #expect(m.state == .ready)
        #expect(m.lastStartup == .milliseconds(20))
        #expect(m.restarts == 0)
    }

    @Test func crashRestartsAtOnceAndCountsARestart() {
        var m = machine()
        running(&m, pid: 10, at: t0)
        #expect(m.handle(.exited(pid: 10, status: .signaled(signal: SIGKILL)), at: t0 + .seconds(1)) == [.spawn])
        #expect(m.restarts == 1)
        #expect(m.lastExit?.reason == "killed by signal 9 (SIGKILL)")
        _ = m.handle(.spawned(pid: 11), at: t0 + .seconds(1))
        // A second READY=1 is never sent.
        #expect(m.handle(.ready(pid: 11), at: t0 + .seconds(1)) == [])
        #expect(m.state == .ready)
        #expect(m.pid == 11)
    }

    @Test func eventsFromAnOldWorkerAreIgnored() {
        var m = machine()
        running(&m, pid: 10, at: t0)
        #expect(m.handle(.exited(pid: 99, status: .exited(code: 1)), at: t0) == [])
        #expect(m.handle(.heartbeat(pid: 99, healthy: false, detail: "x"), at: t0) == [])
        #expect(m.state == .ready)
    }

    @Test func silenceBeyondTheTimeoutStopsTheHungWorkerThenKillsIt() {
        var m = machine()
        running(&m, pid: 10, at: t0)
        _ = m.handle(.heartbeat(pid: 10, healthy: true, detail: nil), at: t0 + .seconds(5))
        // The check fires at t0+15 but the last heartbeat was at t0+5: look again at t0+20.
        #expect(m.handle(.timerFired(.heartbeatCheck, generation: 1), at: t0 + .seconds(15)) == [.startTimer(.heartbeatCheck, generation: 2, after: .seconds(5))])
        let actions = m.handle(.timerFired(.heartbeatCheck, generation: 2), at: t0 + .seconds(20))
        #expect(actions.contains(.signal(pid: 10, signal: SIGTERM)))
        #expect(actions.contains(.signal(pid: 10, signal: SIGCONT)))
        #expect(actions.contains(.startTimer(.kill, generation: 1, after: .seconds(10))))
        #expect(m.state == .stopping)
        #expect(m.handle(.timerFired(.kill, generation: 1), at: t0 + .seconds(30)) == [.signal(pid: 10, signal: SIGKILL)])
        #expect(m.handle(.exited(pid: 10, status: .signaled(signal: SIGKILL)), at: t0 + .seconds(30)) == [.spawn])
        #expect(m.lastExit?.reason.hasPrefix("hung: no heartbeat for 15 s") == true)
    }

    @Test func repeatedFailuresBackOffAndBecomeACrashLoopWithOneAlert() {
        var m = machine()
        var now = t0
        var alerts = 0
        var delays: [Duration] = []
        _ = m.handle(.start, at: now)
        for pid in Int32(1)...7 {
            _ = m.handle(.spawned(pid: pid), at: now)
            let actions = m.handle(.exited(pid: pid, status: .exited(code: 1)), at: now)
            alerts += actions.filter { if case .alert(.critical, _) = $0 { true } else { false } }.count
            if let (generation, delay) = actions.compactMap({ if case .startTimer(.restart, let g, let d) = $0 { (g, d) } else { nil } }).first {
                delays.append(delay)
                #expect(m.state == (m.inCrashLoop ? .crashLoop : .backoff))
                now = now + delay
                #expect(m.handle(.timerFired(.restart, generation: generation), at: now) == [.spawn])
            } else {
                delays.append(.zero)
            }
        }
        #expect(delays == [.zero, .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(32)])
        #expect(alerts == 1)
        #expect(m.inCrashLoop)
    }

    @Test func aCrashLoopIsAlertedOnceEvenWhenTheWorkerComesUpBetweenFailures() {
        var m = WorkerStateMachine(settings: settings, policy: RestartPolicy(initialDelay: .zero, maximumDelay: .zero))
        var alerts = 0
        _ = m.handle(.start, at: t0)
        for pid in Int32(1)...12 {
            _ = m.handle(.spawned(pid: pid), at: t0)
            _ = m.handle(.ready(pid: pid), at: t0)
            let actions = m.handle(.exited(pid: pid, status: .signaled(signal: SIGKILL)), at: t0)
            alerts += actions.filter { if case .alert(.critical, _) = $0 { true } else { false } }.count
        }
        #expect(alerts == 1)
    }

    @Test func fatalConfigurationExitFailsWithoutRestart() {
        var m = machine()
        running(&m, pid: 10, at: t0)
        _ = m.handle(.fatalReported(pid: 10, message: "Discord rejected the token"), at: t0)
        let actions = m.handle(.exited(pid: 10, status: .exited(code: WorkerExitCode.fatalConfiguration)), at: t0)
        #expect(!actions.contains(.spawn))
        #expect(m.state == .failed)
        #expect(m.detail == "Discord rejected the token")
        // The operator fixes the configuration and asks for a restart.
        #expect(m.handle(.restartRequested(by: "operator"), at: t0) == [.spawn])
    }

    @Test func requestedRestartIsGracefulAndNotAFailure() {
        var m = machine()
        running(&m, pid: 10, at: t0)
        let actions = m.handle(.restartRequested(by: "uid 0"), at: t0)
        #expect(actions.first == .requestShutdown(pid: 10, reason: "restart requested by uid 0"))
        #expect(m.handle(.exited(pid: 10, status: .exited(code: 0)), at: t0) == [.spawn])
        #expect(m.policy.failuresInARow == 0)
        #expect(m.restarts == 1)
    }

    @Test func shutdownStopsTheWorkerAndFinishes() {
        var m = machine()
        running(&m, pid: 10, at: t0)
        let actions = m.handle(.shutdownRequested, at: t0)
        #expect(actions.first == .requestShutdown(pid: 10, reason: "the supervisor is shutting down"))
        #expect(m.handle(.exited(pid: 10, status: .exited(code: 0)), at: t0) == [.finished])
        #expect(m.state == .stopped)
        #expect(m.handle(.restartRequested(by: "late"), at: t0) == [])
    }

    @Test func shutdownWhileBackingOffFinishesAtOnce() {
        var m = machine()
        running(&m, pid: 10, at: t0)
        _ = m.handle(.exited(pid: 10, status: .exited(code: 1)), at: t0)
        _ = m.handle(.spawned(pid: 11), at: t0)
        _ = m.handle(.exited(pid: 11, status: .exited(code: 1)), at: t0)
        #expect(m.state == .backoff)
        #expect(m.handle(.shutdownRequested, at: t0) == [.finished])
    }

    @Test func unhealthyHeartbeatShowsInTheState() {
        var m = machine()
        running(&m, pid: 10, at: t0)
        _ = m.handle(.heartbeat(pid: 10, healthy: false, detail: "gateway disconnected"), at: t0)
        #expect(m.state == .unhealthy)
        #expect(m.detail == "gateway disconnected")
    }
}
