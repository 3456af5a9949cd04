import FoundationEssentials
import Testing

@testable import BotWorker

@Suite struct RuleEngineTests {
    let guild = GuildID(1)
    let verifiedRole = RoleID(10), regular = RoleID(11), muted = RoleID(12), veteran = RoleID(13), booster = RoleID(14)
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    /// A user id whose snowflake says the account is `days` old at `now`.
    func user(ageDays: Double) -> UserID {
        let ms = UInt64((now.timeIntervalSince1970 - ageDays * 86400) * 1000) - Snowflake<UserTag>.discordEpochMs
        return UserID(ms << 22)
    }

    func member(roles: Set<RoleID> = [], level: Int = 0, verified: Bool = false, ageDays: Double = 400, memberDays: Double? = 100) -> MemberFacts {
        MemberFacts(user: user(ageDays: ageDays), roles: roles, level: level, verified: verified,
                    joinedAt: memberDays.map { now.addingTimeInterval(-$0 * 86400) })
    }

    func rule(_ target: RoleID, _ combinator: RoleRule.Combinator = .all, _ conditions: [RoleRule.Condition]) -> RoleRule {
        RoleRule(id: nil, guild: guild, target: target, combinator: combinator, conditions: conditions)
    }

    @Test func everyConditionIsEvaluated() {
        let m = member(roles: [verifiedRole], level: 5, verified: true, ageDays: 30, memberDays: 10)
        #expect(RuleEngine.holds(.hasRole(verifiedRole), for: m, now: now))
        #expect(!RuleEngine.holds(.hasRole(muted), for: m, now: now))
        #expect(RuleEngine.holds(.lacksRole(muted), for: m, now: now))
        #expect(!RuleEngine.holds(.lacksRole(verifiedRole), for: m, now: now))
        #expect(RuleEngine.holds(.hasAnyRole([muted, verifiedRole]), for: m, now: now))
        #expect(!RuleEngine.holds(.hasAnyRole([muted, booster]), for: m, now: now))
        #expect(RuleEngine.holds(.levelAtLeast(5), for: m, now: now))
        #expect(!RuleEngine.holds(.levelAtLeast(6), for: m, now: now))
        #expect(RuleEngine.holds(.verified, for: m, now: now))
        #expect(!RuleEngine.holds(.verified, for: member(), now: now))
        #expect(RuleEngine.holds(.accountAgeAtLeast(days: 29), for: m, now: now))
        #expect(!RuleEngine.holds(.accountAgeAtLeast(days: 31), for: m, now: now))
        #expect(RuleEngine.holds(.memberForAtLeast(days: 10), for: m, now: now))
        #expect(!RuleEngine.holds(.memberForAtLeast(days: 11), for: m, now: now))
        #expect(!RuleEngine.holds(.memberForAtLeast(days: 0), for: member(memberDays: nil), now: now))
    }

    @Test func allNeedsEveryConditionAnyNeedsOne() {
        let conditions: [RoleRule.Condition] = [.verified, .levelAtLeast(10)]
        let m = member(level: 3, verified: true)
        #expect(!RuleEngine.holds(rule(regular, .all, conditions), for: m, now: now))
        #expect(RuleEngine.holds(rule(regular, .any, conditions), for: m, now: now))
        #expect(!RuleEngine.holds(rule(regular, .any, []), for: m, now: now))
    }

    @Test func thePlanGivesAndTakesOnlyManagedRoles() {
        let rules = [rule(regular, .all, [.levelAtLeast(5)]), rule(veteran, .all, [.memberForAtLeast(days: 365)])]
        // Level 6, member 100 days, holds veteran (no longer deserved) and an unmanaged role.
        let m = member(roles: [veteran, booster], level: 6)
        let plan = RuleEngine.plan(rules, for: m, now: now)
        #expect(plan.add == [regular])
        #expect(plan.remove == [veteran])
        // Applying it and planning again changes nothing: idempotent.
        var after = m
        after.roles = m.roles.union(plan.add).subtracting(plan.remove)
        #expect(RuleEngine.plan(rules, for: after, now: now).isEmpty)
    }

    @Test func twoRulesForOneRoleGiveItWhileEitherHolds() {
        let rules = [rule(regular, .all, [.levelAtLeast(50)]), rule(regular, .all, [.hasRole(booster)])]
        #expect(RuleEngine.plan(rules, for: member(roles: [booster]), now: now).add == [regular])
        #expect(RuleEngine.plan(rules, for: member(roles: [regular, booster]), now: now).isEmpty)
        #expect(RuleEngine.plan(rules, for: member(roles: [regular]), now: now).remove == [regular])
    }

    @Test func botsAndMembersInScreeningAreLeftAlone() {
        let rules = [rule(regular, .all, [.lacksRole(muted)])]
        var bot = member()
        bot.isBot = true
        var screening = member()
        screening.pending = true
        #expect(RuleEngine.plan(rules, for: bot, now: now).isEmpty)
        #expect(RuleEngine.plan(rules, for: screening, now: now).isEmpty)
    }

    @Test func aRuleOnItsOwnRoleIsRefused() {
        #expect(RuleEngine.oscillation(adding: rule(regular, .all, [.lacksRole(regular)]), to: []) != nil)
        #expect(RuleEngine.oscillation(adding: rule(regular, .any, [.hasAnyRole([booster, regular])]), to: []) != nil)
    }

    @Test func aCycleThroughALacksConditionIsRefused() {
        let existing = [rule(regular, .all, [.lacksRole(veteran)])]
        let flipping = rule(veteran, .all, [.hasRole(regular)])
        let reason = RuleEngine.oscillation(adding: flipping, to: existing)
        #expect(reason?.contains("flip back and forth") == true)
        // A chain without a cycle is fine, and so is a cycle of `has` only: it settles, except for a
        // member holding only one of its roles, which RuleChains stops at depth 10 (RuleChainsTests).
        #expect(RuleEngine.oscillation(adding: rule(veteran, .all, [.hasRole(booster)]), to: existing) == nil)
        #expect(RuleEngine.oscillation(adding: rule(veteran, .all, [.hasRole(regular)]), to: [rule(regular, .all, [.hasRole(veteran)])]) == nil)
        // Rules of another guild do not count.
        var elsewhere = existing[0]
        elsewhere.guild = GuildID(2)
        #expect(RuleEngine.oscillation(adding: flipping, to: [elsewhere]) == nil)
    }
}
