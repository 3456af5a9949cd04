import Testing

@testable import DiscordSandbox

@Suite struct RateLimitsTests {
    @Test func aBucketAllowsItsLimitPerWindowAndMajorParameter() {
        var limits = RateLimits()
        limits.bucketLimit = 2
        #expect(limits.admit(bucket: "b", major: "1", exemptFromGlobal: false, at: 100) == .allowed(.init(limit: 2, remaining: 1, reset: 101, resetAfter: 1, bucket: "b")))
        _ = limits.admit(bucket: "b", major: "1", exemptFromGlobal: false, at: 100.1)
        guard case .limited(_, let retryAfter, let global) = limits.admit(bucket: "b", major: "1", exemptFromGlobal: false, at: 100.5) else {
            Issue.record("expected a 429")
            return
        }
        #expect(abs(retryAfter - 0.5) < 1e-9)
        #expect(!global)
        // Another guild has its own window; the window resets after a second.
        #expect(limits.admit(bucket: "b", major: "2", exemptFromGlobal: false, at: 100.5) != nil)
        if case .limited = limits.admit(bucket: "b", major: "1", exemptFromGlobal: false, at: 101) { Issue.record("window did not reset") }
    }

    @Test func theGlobalLimitSparesInteractionCallbacks() {
        var limits = RateLimits()
        limits.globalLimit = 3
        for index in 0..<3 { _ = limits.admit(bucket: "b\(index)", major: "-", exemptFromGlobal: false, at: 10) }
        guard case .limited(_, _, let global) = limits.admit(bucket: "other", major: "-", exemptFromGlobal: false, at: 10.2) else {
            Issue.record("expected a global 429")
            return
        }
        #expect(global)
        if case .limited = limits.admit(bucket: "callback", major: "-", exemptFromGlobal: true, at: 10.2) { Issue.record("callback limited") }
    }

    @Test func aStormRefusesEverythingUntilItEnds() {
        var limits = RateLimits()
        limits.startStorm(seconds: 1, global: false, at: 0)
        guard case .limited(_, let retryAfter, false) = limits.admit(bucket: "b", major: "-", exemptFromGlobal: true, at: 0.5) else {
            Issue.record("expected a 429")
            return
        }
        #expect(retryAfter == RateLimits.stormRetryAfter)
        if case .limited = limits.admit(bucket: "b", major: "-", exemptFromGlobal: false, at: 1.5) { Issue.record("storm did not end") }
    }

    @Test func bucketHashesAreStable() {
        #expect(RateLimits.bucketHash("GET /a") == RateLimits.bucketHash("GET /a"))
        #expect(RateLimits.bucketHash("GET /a") != RateLimits.bucketHash("GET /b"))
        #expect(RateLimits.bucketHash("GET /a").count == 32)
    }
}

@Suite struct ModelTests {
    @Test func snowflakesCarryTheirTime() {
        let id = Snowflake.make(unixMilliseconds: 1_700_000_000_123, increment: 5)
        #expect(Snowflake.unixMilliseconds(of: id) == 1_700_000_000_123)
        var generator = SnowflakeGenerator()
        let a = generator.next(at: 1_700_000_000_000)
        let b = generator.next(at: 1_700_000_000_000)
        #expect(b > a)
    }

    @Test func timestampsAreDiscordsFormat() {
        #expect(DiscordTime.iso(0) == "1970-01-01T00:00:00.000000+00:00")
        #expect(DiscordTime.iso(1_709_210_096_789) == "2024-02-29T12:34:56.789000+00:00")
    }

    @Test func theGuildIsTheSameForOneSeed() {
        let now: UInt64 = 1_750_000_000_000
        let a = SandboxGuild(seed: 7, memberCount: 40, now: now)
        let b = SandboxGuild(seed: 7, memberCount: 40, now: now + 1000)
        #expect(a.id == b.id)
        #expect(a.members.keys.sorted() == b.members.keys.sorted())
        #expect(a.members.count == 42)
        #expect(a.humans.filter(\.pending).count == 2)
        let ages = a.humans.map { now - Snowflake.unixMilliseconds(of: $0.user.id) }
        #expect(ages.min()! < 4 * DiscordTime.dayMilliseconds)
        #expect(ages.max()! > 7 * 365 * DiscordTime.dayMilliseconds)
        #expect(a.botTopPosition == 7)
    }
}
