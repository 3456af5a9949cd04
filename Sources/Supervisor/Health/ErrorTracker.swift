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
        var seen: [String: WindowCount] = [:]
        var alerted: [String: ContinuousClock.Instant] = [:]
        var all = WindowCount()
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
            state.all.add(now, window: window)
            let count = state.seen[key, default: WindowCount()].add(now, window: window)
            if state.seen.count > 1000 { state.seen = state.seen.filter { $0.value.current(at: now, window: window) > 0 } }
            guard count >= threshold else { return nil }
            if let last = state.alerted[key], now - last < window { return nil }
            state.alerted[key] = now
            return Repeat(fingerprint: key, count: count, example: detail ?? message)
        }
        if let report, let handler = handler.withLock({ $0 }) { handler(report) }
    }

    /// Errors of every kind in the window up to `now`.
    func count(at now: ContinuousClock.Instant = .now) -> Int {
        state.withLock { $0.all.current(at: now, window: window) }
    }
}

/// Events in a sliding window, kept as runs of up to 100 ms: recording one costs the same
/// however many are in the window (a flood of 1,000,000 errors a minute included), and the
/// memory is bounded by the window, not by the rate. A run leaves the window whole, when its
/// first event does.
struct WindowCount: Sendable {
    private var runs: [(start: ContinuousClock.Instant, count: Int)] = []
    private var head = 0
    private var total = 0
    static let run = Duration.milliseconds(100)

    /// Adds an event at `now`; the count in the window after it.
    @discardableResult
    mutating func add(_ now: ContinuousClock.Instant, window: Duration) -> Int {
        expire(now, window: window)
        if head < runs.count, now - runs[runs.count - 1].start < Self.run {
            runs[runs.count - 1].count += 1
        } else {
            runs.append((now, 1))
        }
        total += 1
        return total
    }

    /// The events less than `window` before `now`.
    func current(at now: ContinuousClock.Instant, window: Duration) -> Int {
        var count = total
        for index in head..<runs.count where now - runs[index].start >= window { count -= runs[index].count }
        return count
    }

    private mutating func expire(_ now: ContinuousClock.Instant, window: Duration) {
        while head < runs.count, now - runs[head].start >= window {
            total -= runs[head].count
            head += 1
        }
        if head > 256, head * 2 > runs.count {
            runs.removeFirst(head)
            head = 0
        }
    }
}
