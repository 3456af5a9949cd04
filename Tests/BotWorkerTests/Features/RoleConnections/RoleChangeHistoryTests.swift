import FoundationEssentials
import GRDB
import Glibc
import IPC
import Testing

@testable import BotWorker

@Suite struct RoleChangeHistoryTests {
    let guild = GuildID(1), user = UserID(2)
    let verifiedRole = RoleID(10), regular = RoleID(11), muted = RoleID(12)
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func facts(roles: Set<RoleID> = [], level: Int = 0, verified: Bool = false) -> MemberFacts {
        MemberFacts(user: user, roles: roles, level: level, verified: verified, joinedAt: now)
    }

    func rule(_ id: Int64, _ target: RoleID, _ combinator: RoleRule.Combinator = .all, _ conditions: [RoleRule.Condition]) -> RoleRule {
        RoleRule(id: id, guild: guild, target: target, combinator: combinator, conditions: conditions)
    }

    func database() throws -> DatabasePool {
        var template = Array("/tmp/rchXXXXXX".utf8CString)
        let directory = String(cString: mkdtemp(&template)!)
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(features: [RoleConnectionsFeature.self]), pool)
        return pool
    }

    @Test func eachChangeNamesItsRuleAndTheConditionsThatDecided() {
        let rules = [rule(1, regular, .all, [.levelAtLeast(1), .lacksRole(muted)]), rule(2, verifiedRole, .any, [.verified, .levelAtLeast(50)])]
        // Level 3 and not muted: Regular given by #1; no longer verified: Verified taken by #2.
        let member = facts(roles: [verifiedRole], level: 3)
        let plan = RuleEngine.plan(rules, for: member, now: now)
        let changes = RuleEngine.changes(plan, rules: rules, for: member, now: now)
        #expect(changes == [
            RoleChange(rule: 1, role: regular, added: true, why: "level 1 or more and lacks <@&12> now hold"),
            RoleChange(rule: 2, role: verifiedRole, added: false, why: "verified and level 50 or more no longer hold"),
        ])
        // Of two rules for one role, the one that holds gives it.
        let two = [rule(3, regular, .all, [.levelAtLeast(40)]), rule(4, regular, .all, [.verified])]
        let given = RuleEngine.changes(RuleEngine.plan(two, for: facts(verified: true), now: now), rules: two, for: facts(verified: true), now: now)
        #expect(given == [RoleChange(rule: 4, role: regular, added: true, why: "verified now holds")])
    }

    @Test func aHistoryLineSaysWhenWhatWhichRuleAndWhy() {
        let line = RoleChange.line(at: "2026-12-05T15:40:12.345Z", role: RoleID(5), added: true, rule: 1, why: "level 1 or more now holds")
        #expect(line == "2026-12-05 15:40 +<@&5> by rule #1 (level 1 or more now holds)")
        #expect(RoleChange.line(at: "2026-12-05T15:41:00.000Z", role: RoleID(5), added: false, rule: 2, why: "x").hasPrefix("2026-12-05 15:41 −<@&5> by rule #2"))
    }

    @Test func theHistoryShowsTheLastTwentyAndKeepsAHundredPerMember() throws {
        let pool = try database()
        let other = UserID(3)
        try pool.write { (db: Database) throws in
            for i in 0..<130 {
                let change = RoleChange(rule: Int64(i), role: regular, added: i % 2 == 0, why: "step \(i)")
                try RoleChangeHistory.record(db, guild: guild, user: user, changes: [change], at: "2026-12-05T15:40:00.000Z")
            }
            try RoleChangeHistory.record(db, guild: guild, user: other, changes: [RoleChange(rule: 9, role: muted, added: true, why: "w")], at: "2026-01-01T00:00:00.000Z")
        }
        let kept = try pool.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM role_rule_changes WHERE user_id = ?", arguments: [user.description]) }
        #expect(kept == RoleChangeHistory.keptPerMember)
        let lines = try pool.read { try RoleChangeHistory.recent($0, guild: guild, user: user) }
        #expect(lines.count == 20)
        #expect(lines.first?.hasSuffix("by rule #110 (step 110)") == true)
        #expect(lines.last?.hasSuffix("by rule #129 (step 129)") == true)
        // Older than 90 days: pruned, whoever it was.
        try pool.write { try RoleChangeHistory.prune($0, now: Timestamp.date("2026-12-05T16:00:00.000Z")!) }
        #expect(try pool.read { try RoleChangeHistory.recent($0, guild: guild, user: other) }.isEmpty)
        #expect(try pool.read { try RoleChangeHistory.recent($0, guild: guild, user: user) }.count == 20)
    }
}
