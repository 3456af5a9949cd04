import FoundationEssentials
import IPC

/// When the next Identify may go, so that the bot never runs out of Discord's daily allowance
/// (1000 by default; running out resets the token). Every worker start costs one, so a crash
/// loop would burn them: the history comes from the database, which outlives the process.
///
/// The allowance is shared by every shard: a restart of a bot of N shards costs N identifies.
///
/// - Nothing left (`remaining` 0): wait for `reset_after`.
/// - At most `perHour(shards)` in any hour: 40 for up to 20 shards (40 × 24 = 960, under the
///   1000 a day), two full starts an hour past that.
/// - Under `lowWater` left: the rest spread evenly until the reset.
///
/// Discord's identify rate (one per 5 s per `shard_id % max_concurrency`) is `IdentifyBuckets`'.
enum IdentifyPacing {
    static func perHour(shards: Int) -> Int { max(40, 2 * shards) }
    static let lowWater = 100

    /// How long to wait before identifying at `now`; `history` is the time of each identify of the
    /// last 24 h (seconds since 1970, any order).
    static func delay(history: [Double], limit: SessionStartLimit?, now: Double, shards: Int = 1) -> (seconds: Double, reason: String?) {
        let perHour = perHour(shards: shards)
        var wait = 0.0
        var reason: String?
        func atLeast(_ seconds: Double, _ why: String) {
            if seconds > wait {
                wait = seconds
                reason = why
            }
        }
        let sorted = history.sorted()
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
