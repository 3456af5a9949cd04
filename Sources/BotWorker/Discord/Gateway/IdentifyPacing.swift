import FoundationEssentials
import IPC

/// When the next Identify may go, so that the bot never runs out of Discord's daily allowance
/// (1000 by default; running out resets the token). Every worker start costs one, so a crash
/// loop would burn them: the history comes from the database, which outlives the process.
///
/// - Nothing left (`remaining` 0): wait for `reset_after`.
/// - At most `perHour` in any hour (40 × 24 = 960, under the 1000 a day).
/// - At least 5 s / `max_concurrency` apart (Discord's identify rate).
/// - Under `lowWater` left: the rest spread evenly until the reset.
enum IdentifyPacing {
    static let perHour = 40
    static let lowWater = 100

    /// How long to wait before identifying at `now`; `history` is the time of each identify of the
    /// last 24 h (seconds since 1970, any order).
    static func delay(history: [Double], limit: SessionStartLimit?, now: Double) -> (seconds: Double, reason: String?) {
        var wait = 0.0
        var reason: String?
        func atLeast(_ seconds: Double, _ why: String) {
            if seconds > wait {
                wait = seconds
                reason = why
            }
        }
        let sorted = history.sorted()
        if let last = sorted.last {
            let spacing = 5.0 / Double(max(1, limit?.maxConcurrency ?? 1))
            atLeast(last + spacing - now, "identifies are at least \(spacing) s apart")
        }
        let lastHour = sorted.filter { now - $0 < 3600 }
        if lastHour.count >= perHour, let oldest = lastHour.first {
            atLeast(oldest + 3600 - now, "\(lastHour.count) identifies in the last hour (at most \(perHour), to stay under Discord's daily limit)")
        }
        if let limit {
            let reset = limit.resetAfter.fractionalMilliseconds / 1000
            if limit.remaining <= 0 {
                atLeast(reset, "Discord's session_start_limit is used up (\(limit.total) a day)")
            } else if limit.remaining < lowWater, let last = sorted.last {
                let spread = reset / Double(limit.remaining)
                atLeast(last + spread - now, "only \(limit.remaining) of \(limit.total) identifies left today; spreading them until the reset")
            }
        }
        return (max(0, wait), wait > 0 ? reason : nil)
    }
}
