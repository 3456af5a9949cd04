/// When to start the worker again after a failure: a pure value, tested with an injected clock.
///
/// - The first restart after a failure is at once; each further failure in a row doubles the
///   delay, from `initialDelay` up to `maximumDelay`.
/// - After `stableAfter` of running ready, the run of failures is forgotten.
/// - More than `crashLoopThreshold` failures within `window` is a crash loop: restarts go on at the
///   backed-off pace (the bot is never left down for good), and the state says so.
struct RestartPolicy: Sendable, Equatable {
    var initialDelay: Duration = .seconds(1)
    var maximumDelay: Duration = .seconds(60)
    var window: Duration = .seconds(600)
    var stableAfter: Duration = .seconds(600)
    var crashLoopThreshold = 5

    private(set) var failuresInARow = 0
    private(set) var recentFailures: [ContinuousClock.Instant] = []
    private var readySince: ContinuousClock.Instant?

    struct Decision: Equatable {
        var delay: Duration
        var isCrashLoop: Bool
    }

    init(initialDelay: Duration = .seconds(1), maximumDelay: Duration = .seconds(60)) {
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// The worker reported ready.
    mutating func workerBecameReady(at now: ContinuousClock.Instant) {
        readySince = now
    }

    /// The worker failed (crashed, hung, or exited unasked): how long to wait before the next start.
    mutating func recordFailure(at now: ContinuousClock.Instant) -> Decision {
        if let readySince, now - readySince >= stableAfter {
            failuresInARow = 0
        }
        readySince = nil
        failuresInARow += 1
        recentFailures.append(now)
        recentFailures.removeAll { now - $0 > window }
        return Decision(delay: delay(forFailure: failuresInARow), isCrashLoop: isCrashLoop)
    }

    /// Whether the failures in the window exceed the threshold.
    var isCrashLoop: Bool { recentFailures.count > crashLoopThreshold }

    private func delay(forFailure n: Int) -> Duration {
        guard n > 1 else { return .zero }
        var delay = initialDelay
        for _ in 2..<n {
            delay *= 2
            if delay >= maximumDelay { return maximumDelay }
        }
        return min(delay, maximumDelay)
    }
}
