import Testing

@testable import Supervisor

@Suite struct RestartPolicyTests {
    let start = ContinuousClock.now

    @Test func firstRestartIsImmediateThenBacksOffExponentiallyToTheCap() {
        var policy = RestartPolicy(initialDelay: .seconds(1), maximumDelay: .seconds(60))
        var delays: [Duration] = []
        for minute in 0..<9 {
            delays.append(policy.recordFailure(at: start + .seconds(minute * 61)).delay)
        }
        #expect(delays == [.zero, .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(32), .seconds(60), .seconds(60)])
    }

    @Test func moreThanFiveFailuresInTenMinutesIsACrashLoop() {
        var policy = RestartPolicy()
        for second in 0..<5 {
            #expect(policy.recordFailure(at: start + .seconds(second)).isCrashLoop == false)
        }
        #expect(policy.recordFailure(at: start + .seconds(5)).isCrashLoop)
    }

    @Test func failuresOlderThanTheWindowDoNotCount() {
        var policy = RestartPolicy()
        for second in 0..<5 { _ = policy.recordFailure(at: start + .seconds(second)) }
        // Ten minutes after the first five, a sixth failure is not a loop.
        #expect(policy.recordFailure(at: start + .seconds(605)).isCrashLoop == false)
    }

    @Test func backoffResetsAfterTenMinutesOfStableRunning() {
        var policy = RestartPolicy(initialDelay: .seconds(1), maximumDelay: .seconds(60))
        for second in 0..<4 { _ = policy.recordFailure(at: start + .seconds(second)) }
        policy.workerBecameReady(at: start + .seconds(10))
        // Ready for only nine minutes: the run of failures goes on.
        #expect(policy.recordFailure(at: start + .seconds(10 + 540)).delay == .seconds(8))
        policy.workerBecameReady(at: start + .seconds(600))
        #expect(policy.recordFailure(at: start + .seconds(600 + 601)).delay == .zero)
    }
}
