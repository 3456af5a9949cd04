import FoundationEssentials

/// How many Gateway shards the worker runs, and which shard serves a guild.
///
/// Discord routes a guild to shard `(guild_id >> 22) % shard_count` (DMs to shard 0). One shard
/// holds at most 2,500 guilds; past that Discord closes its identify with 4011.
enum ShardPlan {
    /// The shard of `guild` among `count`.
    static func shard(of guild: GuildID, count: Int) -> Int {
        Int((guild.rawValue >> 22) % UInt64(max(1, count)))
    }

    /// The shard count to run.
    /// - configured: `discord.shards` (nil: `auto`).
    /// - recommended: `GET /gateway/bot`'s `shards`.
    /// - stored: the count of the sessions the previous worker left, if any.
    /// - required: after a 4011, the count the worker must now reach at least.
    static func count(configured: Int?, recommended: Int, stored: Int?, required: Int?) -> Int {
        var count: Int
        if let configured {
            count = configured
        } else {
            // Auto: keep the sessions' count (they resume) unless Discord now asks for more.
            count = max(1, recommended, stored ?? 0)
        }
        if let required { count = max(count, required) }
        return count
    }

    /// After a 4011 at `count` shards: Discord's recommendation, and at least one more shard.
    static func afterShardingRequired(count: Int, recommended: Int) -> Int {
        max(count + 1, recommended)
    }
}

/// Identify rate limits across shards: an identify's rate-limit key is
/// `shard_id % max_concurrency`, and each key identifies at most once every 5 seconds. Shards of
/// different keys identify at once, so `max_concurrency` shards start together, then the next
/// bucket 5 s later. A slot is reserved when asked for, so a shard that fails (or is slow to
/// connect) only uses its own key's slot and never holds up another key.
struct IdentifyBuckets: Sendable {
    /// Discord's 5 s, and half a second for the time from the permit to the identify frame
    /// (connecting, Hello), which Discord's count starts from.
    static let window = 5.5
    private(set) var maxConcurrency: Int
    private var next: [Int: Double] = [:]

    init(maxConcurrency: Int) {
        self.maxConcurrency = max(1, maxConcurrency)
    }

    func key(of shard: Int) -> Int { shard % maxConcurrency }

    /// Reserves the first slot at or after `notBefore` for `shard`'s key and returns it (seconds
    /// since 1970).
    mutating func reserve(shard: Int, notBefore: Double) -> Double {
        let key = key(of: shard)
        let slot = max(notBefore, next[key] ?? 0)
        next[key] = slot + Self.window
        return slot
    }

    /// When `shard`'s Identify frame may go, asked just before it is sent at `now`: 5 s (and a
    /// little) after the previous frame of its key, which a slow connection can have sent later
    /// than its slot. Usually `now`: the slots are already 5.5 s apart.
    mutating func frameTime(shard: Int, now: Double) -> Double {
        let key = key(of: shard)
        let time = max(now, (framesSent[key] ?? 0) + Self.frameSpacing)
        framesSent[key] = time
        return time
    }

    /// Discord's 5 s between two Identify frames of one key, and 0.1 s for the way there.
    static let frameSpacing = 5.1
    private var framesSent: [Int: Double] = [:]

    /// Every key waits until `time` (the previous worker identified just before).
    mutating func holdAll(until time: Double) {
        for key in 0..<maxConcurrency { next[key] = max(next[key] ?? 0, time) }
    }
}
