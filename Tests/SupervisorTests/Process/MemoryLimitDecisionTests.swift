import Glibc
import IPC
import Testing

@testable import Supervisor

/// `worker.memoryMaxBytes` in the worker's state machine: two heartbeats in a row above it
/// restart the worker gracefully, once.
@Suite struct MemoryLimitDecisionTests {
    let t0 = ContinuousClock.now
    let limit: Int64 = 100_000_000

    func running(pid: Int32) -> WorkerStateMachine {
        var m = WorkerStateMachine(
            settings: .init(heartbeatTimeout: .seconds(15), stopGrace: .seconds(10), memoryMaxBytes: limit),
            policy: RestartPolicy(initialDelay: .seconds(1), maximumDelay: .seconds(60))
        )
        _ = m.handle(.start, at: t0)
        _ = m.handle(.spawned(pid: pid), at: t0)
        _ = m.handle(.ready(pid: pid), at: t0)
        return m
    }

    func beat(_ pid: Int32, _ rss: Int64?) -> WorkerStateMachine.Event {
        .heartbeat(pid: pid, healthy: true, detail: nil, rssBytes: rss)
    }

    @Test func oneHeartbeatAboveThenOneBelowDoesNotRestart() {
        var m = running(pid: 10)
        #expect(m.handle(beat(10, limit + 1), at: t0 + .seconds(1)) == [])
        #expect(m.handle(beat(10, limit - 1), at: t0 + .seconds(2)) == [])
        #expect(m.handle(beat(10, limit + 1), at: t0 + .seconds(3)) == [])
        #expect(m.handle(beat(10, nil), at: t0 + .seconds(4)) == [])
        #expect(m.handle(beat(10, limit + 1), at: t0 + .seconds(5)) == [])
        #expect(m.state == .ready)
    }

    @Test func exactlyAtTheLimitIsNotAbove() {
        var m = running(pid: 10)
        #expect(m.handle(beat(10, limit), at: t0 + .seconds(1)) == [])
        #expect(m.handle(beat(10, limit), at: t0 + .seconds(2)) == [])
        #expect(m.state == .ready)
    }

    @Test func twoInARowRestartGracefullyOnceWithAnAlertAndTheReason() {
        var m = running(pid: 10)
        #expect(m.handle(beat(10, 152_340_000), at: t0 + .seconds(1)) == [])
        let actions = m.handle(beat(10, 160_000_000), at: t0 + .seconds(2))
        let message = "worker RSS 160.0 MB above worker.memoryMaxBytes 100.0 MB in two heartbeats in a row; restarted gracefully"
        #expect(actions.contains(.alert(.warning, message)))
        #expect(actions.contains { if case .requestShutdown(10, _) = $0 { true } else { false } })
        #expect(actions.contains(.startTimer(.kill, generation: 1, after: .seconds(10))))
        #expect(m.state == .stopping)
        // The stopping worker's further heartbeats change nothing.
        #expect(m.handle(beat(10, 170_000_000), at: t0 + .seconds(3)) == [])
        #expect(m.handle(beat(10, 170_000_000), at: t0 + .seconds(4)) == [])
        // It exits: restarted at once, not counted as a failure.
        #expect(m.handle(.exited(pid: 10, status: .exited(code: 0)), at: t0 + .seconds(5)) == [.spawn])
        #expect(m.lastExit?.reason.hasPrefix("memory limit: " + message) == true)
        #expect(m.policy.recentFailures.isEmpty)
        #expect(m.restarts == 1)
    }

    @Test func theNewWorkerNeedsTwoHeartbeatsOfItsOwn() {
        var m = running(pid: 10)
        _ = m.handle(beat(10, limit + 1), at: t0 + .seconds(1))
        _ = m.handle(beat(10, limit + 1), at: t0 + .seconds(2))
        _ = m.handle(.exited(pid: 10, status: .exited(code: 0)), at: t0 + .seconds(3))
        _ = m.handle(.spawned(pid: 11), at: t0 + .seconds(3))
        _ = m.handle(.ready(pid: 11), at: t0 + .seconds(3))
        #expect(m.handle(beat(11, limit + 1), at: t0 + .seconds(4)) == [])
        #expect(m.state == .ready)
        let actions = m.handle(beat(11, limit + 1), at: t0 + .seconds(5))
        #expect(actions.contains { if case .requestShutdown(11, _) = $0 { true } else { false } })
    }

    @Test func noLimitNeverRestarts() {
        var m = WorkerStateMachine(
            settings: .init(heartbeatTimeout: .seconds(15), stopGrace: .seconds(10)),
            policy: RestartPolicy(initialDelay: .seconds(1), maximumDelay: .seconds(60))
        )
        _ = m.handle(.start, at: t0)
        _ = m.handle(.spawned(pid: 10), at: t0)
        _ = m.handle(.ready(pid: 10), at: t0)
        for second in 1...5 {
            #expect(m.handle(beat(10, 1 << 40), at: t0 + .seconds(second)) == [])
        }
    }

    @Test func megabytes() {
        #expect(WorkerStateMachine.megabytes(52_449_999) == "52.4 MB")
        #expect(WorkerStateMachine.megabytes(52_450_000) == "52.5 MB")
        #expect(WorkerStateMachine.megabytes(0) == "0.0 MB")
    }
}
