import Testing

@testable import BotWorker

@Suite struct IdentifyPacingTests {
    let plenty = SessionStartLimit(total: 1000, remaining: 990, resetAfter: .seconds(80_000), maxConcurrency: 1)

    @Test func aFirstIdentifyGoesAtOnce() {
        #expect(IdentifyPacing.delay(history: [], limit: plenty, now: 10_000).seconds == 0)
        #expect(IdentifyPacing.delay(history: [], limit: nil, now: 10_000).seconds == 0)
    }

    @Test func identifiesOfOneKeyAreFiveSecondsApart() {
        var buckets = IdentifyBuckets(maxConcurrency: 1)
        #expect(buckets.reserve(shard: 0, notBefore: 100) == 100)
        #expect(buckets.reserve(shard: 1, notBefore: 100) == 105.5)
        #expect(buckets.reserve(shard: 2, notBefore: 100) == 111)
        // A later ask is not held by slots long gone.
        #expect(buckets.reserve(shard: 3, notBefore: 200) == 200)
    }

    @Test func maxConcurrencyShardsStartTogetherThenTheNextBucket() {
        var buckets = IdentifyBuckets(maxConcurrency: 16)
        let first = (0..<16).map { buckets.reserve(shard: $0, notBefore: 100) }
        #expect(first.allSatisfy { $0 == 100 })
        let second = (16..<32).map { buckets.reserve(shard: $0, notBefore: 100) }
        #expect(second.allSatisfy { $0 == 105.5 })
        // Shard 33's key is 1: the third slot of key 1.
        #expect(buckets.reserve(shard: 33, notBefore: 100) == 111)
    }

    @Test func aLateFrameHoldsTheNextFrameOfItsKey() {
        var buckets = IdentifyBuckets(maxConcurrency: 2)
        // Shard 0's connection was slow: its frame went at 100.7, not at its slot 100.
        #expect(buckets.frameTime(shard: 0, now: 100.7) == 100.7)
        // Shard 2 (key 0) is ready at its slot 105.5: held until 5.1 s after shard 0's frame.
        #expect(buckets.frameTime(shard: 2, now: 105.5) == 105.8)
        // Another key is not held.
        #expect(buckets.frameTime(shard: 1, now: 105.5) == 105.5)
    }

    @Test func aFreshWorkerWaitsOutItsPredecessorsLastIdentify() {
        var buckets = IdentifyBuckets(maxConcurrency: 2)
        buckets.holdAll(until: 103)
        #expect(buckets.reserve(shard: 0, notBefore: 100) == 103)
        #expect(buckets.reserve(shard: 1, notBefore: 100) == 103)
    }

    @Test func shardsAreRoutedAsDiscordDoes() {
        // (guild_id >> 22) % count
        let guild = GuildID((UInt64(1_000_003) << 22) | 12345)
        #expect(ShardPlan.shard(of: guild, count: 3) == 1_000_003 % 3)
        #expect(ShardPlan.shard(of: guild, count: 1) == 0)
    }

    @Test func theShardCountFollowsConfigurationRecommendationAndSessions() {
        #expect(ShardPlan.count(configured: nil, recommended: 3, stored: nil, required: nil) == 3)
        // Auto keeps the previous sessions' count, so they resume, unless Discord asks for more.
        #expect(ShardPlan.count(configured: nil, recommended: 2, stored: 4, required: nil) == 4)
        #expect(ShardPlan.count(configured: nil, recommended: 5, stored: 4, required: nil) == 5)
        #expect(ShardPlan.count(configured: 2, recommended: 5, stored: nil, required: nil) == 2)
        // After a 4011 the configured count is not enough.
        #expect(ShardPlan.count(configured: 1, recommended: 2, stored: nil, required: ShardPlan.afterShardingRequired(count: 1, recommended: 2)) == 2)
        #expect(ShardPlan.afterShardingRequired(count: 3, recommended: 2) == 4)
    }

    @Test func aBotOfManyShardsMayStartTwiceAnHour() {
        let history = (0..<40).map { 7_000 + Double($0) * 70 }
        #expect(IdentifyPacing.delay(history: history, limit: plenty, now: 10_000, shards: 30).seconds == 0)
        #expect(IdentifyPacing.delay(history: history + history, limit: plenty, now: 10_000, shards: 30).seconds > 0)
    }

    @Test func aCrashLoopIsHeldToFortyAnHour() {
        // 40 identifies in the last hour, the oldest 3000 s ago: wait until it is an hour old.
        let history = (0..<40).map { 7_000 + Double($0) * 70 }
        let (wait, reason) = IdentifyPacing.delay(history: history, limit: plenty, now: 10_000)
        #expect(wait == 600)
        #expect(reason?.contains("40 identifies in the last hour") == true)
        #expect(IdentifyPacing.delay(history: Array(history.dropFirst()), limit: plenty, now: 10_000).seconds == 0)
    }

    @Test func nothingLeftWaitsForTheReset() {
        let none = SessionStartLimit(total: 1000, remaining: 0, resetAfter: .seconds(3_600), maxConcurrency: 1)
        let (wait, reason) = IdentifyPacing.delay(history: [], limit: none, now: 10_000)
        #expect(wait == 3_600)
        #expect(reason?.contains("used up") == true)
    }

    @Test func theLastFewAreSpreadUntilTheReset() {
        let few = SessionStartLimit(total: 1000, remaining: 10, resetAfter: .seconds(5_000), maxConcurrency: 1)
        // 5000 s / 10 left = one per 500 s; the last was 100 s ago.
        #expect(IdentifyPacing.delay(history: [9_900], limit: few, now: 10_000).seconds == 400)
    }
}
