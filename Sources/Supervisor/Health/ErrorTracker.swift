import FoundationEssentials
import Synchronization

/// Every ERROR and CRITICAL line of both processes, counted by fingerprint (the system, the
/// place — log messages are constant by convention — and the error's type when the line names
/// it) over a sliding window. The same error repeating `threshold` times within `window` raises
/// one alert for that window, not one per error; the health loop reads the total.
final class ErrorTracker: Sendable {
    struct Repeat: Sendable, Equatable {
        var fingerprint: String
        var count: Int
        var example: String
    }

    private struct State {
        var seen: [String: [ContinuousClock.Instant]] = [:]
        var alerted: [String: ContinuousClock.Instant] = [:]
        var all: [ContinuousClock.Instant] = []
    }

    let window: Duration
    let threshold: Int
    private let state = Mutex(State())
    private let handler = Mutex<(@Sendable (Repeat) -> Void)?>(nil)

    init(window: Duration = .seconds(300), threshold: Int = 10) {
        self.window = window
        self.threshold = threshold
    }

    /// What to do when an error repeats (raise an alert); set once the status store exists, as
    /// errors are counted from the first log line.
    func onRepeat(_ handler: @escaping @Sendable (Repeat) -> Void) {
        self.handler.withLock { $0 = handler }
    }

    static func fingerprint(system: String, message: String, errorType: String?) -> String {
        [system, message, errorType].compactMap { $0 }.joined(separator: " | ")
    }

    func record(system: String, message: String, errorType: String? = nil, detail: String? = nil, at now: ContinuousClock.Instant = .now) {
        // Alerts are logged at their severity; counting them would make an alert about alerts.
        guard message != "alert" else { return }
        let key = Self.fingerprint(system: system, message: message, errorType: errorType)
        let window = self.window
        let threshold = self.threshold
        let report: Repeat? = state.withLock { state in
            state.all = state.all.filter { now - $0 < window } + [now]
            var times = state.seen[key, default: []].filter { now - $0 < window }
            times.append(now)
            state.seen[key] = times
            if state.seen.count > 1000 { state.seen = state.seen.filter { !$0.value.isEmpty && now - $0.value.last! < window } }
            guard times.count >= threshold else { return nil }
            if let last = state.alerted[key], now - last < window { return nil }
            state.alerted[key] = now
            return Repeat(fingerprint: key, count: times.count, example: detail ?? message)
        }
        if let report, let handler = handler.withLock({ $0 }) { handler(report) }
    }

    /// Errors of every kind in the window up to `now`.
    func count(at now: ContinuousClock.Instant = .now) -> Int {
        state.withLock { $0.all.filter { now - $0 < window }.count }
    }
}
