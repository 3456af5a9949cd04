import FoundationEssentials
import GRDB
import IPC

/// A role a rule gives or takes, and why: the rule, and the conditions that made the difference.
struct RoleChange: Sendable, Equatable {
    var rule: Int64
    var role: RoleID
    var added: Bool
    /// "level 1 or more now holds", "has <@&1> no longer holds".
    var why: String

    var link: RuleChains.Link { RuleChains.Link(rule: rule, role: role, added: added) }

    /// One line of `/roleconnection history`: "2026-12-05 15:40 +<@&2> by rule #1 (level 1 or more now holds)".
    static func line(at: String, role: RoleID, added: Bool, rule: Int64, why: String) -> String {
        let minute = String(at.prefix(16).map { $0 == "T" ? " " : $0 })
        return "\(minute) \(added ? "+" : "−")<@&\(role)> by rule #\(rule) (\(why))"
    }
}

extension RuleEngine {
    /// The changes of `plan`, each with the rule it comes from: for a role given, the first rule
    /// that holds; for a role taken, the first rule that targets it (none holds). Gives first,
    /// then takes, each in role order.
    static func changes(_ plan: Plan, rules: [RoleRule], for member: MemberFacts, now: Date) -> [RoleChange] {
        let given = plan.add.sorted().compactMap { role -> RoleChange? in
            guard let rule = rules.first(where: { $0.target == role && holds($0, for: member, now: now) }), let id = rule.id else { return nil }
            return RoleChange(rule: id, role: role, added: true, why: why(rule, for: member, now: now, added: true))
        }
        let taken = plan.remove.sorted().compactMap { role -> RoleChange? in
            guard let rule = rules.first(where: { $0.target == role }), let id = rule.id else { return nil }
            return RoleChange(rule: id, role: role, added: false, why: why(rule, for: member, now: now, added: false))
        }
        return given + taken
    }

    /// The conditions that decide: those that hold when the rule gives its role, those that do
    /// not when it takes it.
    static func why(_ rule: RoleRule, for member: MemberFacts, now: Date, added: Bool) -> String {
        let deciding = rule.conditions.filter { holds($0, for: member, now: now) == added }
        let verb = deciding.count == 1 ? "holds" : "hold"
        return deciding.map(\.description).joined(separator: " and ") + (added ? " now \(verb)" : " no longer \(verb)")
    }
}

/// The role changes the rules made, per member: what `/roleconnection history` shows. The last
/// `keptPerMember` of each member are kept, and none older than `keptDays`.
enum RoleChangeHistory {
    static let keptPerMember = 100
    static let keptDays = 90
    static let shown = 20

    /// Stores `changes` made for `user` at `at`, and drops that member's oldest beyond `keptPerMember`.
    static func record(_ db: Database, guild: GuildID, user: UserID, changes: [RoleChange], at: String) throws {
        for change in changes {
            try db.execute(sql: """
                INSERT INTO role_rule_changes (guild_id, user_id, role_id, added, rule_id, reason, at) VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [guild.description, user.description, change.role.description, change.added, change.rule, change.why, at])
        }
        try db.execute(sql: """
            DELETE FROM role_rule_changes WHERE guild_id = ? AND user_id = ? AND id <= (
                SELECT id FROM role_rule_changes WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)
            """, arguments: [guild.description, user.description, guild.description, user.description, keptPerMember])
    }

    /// Drops the changes older than `keptDays` (members who left keep nothing for ever).
    static func prune(_ db: Database, now: Date) throws {
        let cutoff = Timestamp.string(now.addingTimeInterval(-Double(keptDays) * 86400))
        try db.execute(sql: "DELETE FROM role_rule_changes WHERE at < ?", arguments: [cutoff])
    }

    /// The last `shown` changes for `user`, oldest first, as history lines.
    static func recent(_ db: Database, guild: GuildID, user: UserID) throws -> [String] {
        let rows = try Row.fetchAll(db, sql: """
            SELECT at, role_id, added, rule_id, reason FROM role_rule_changes
            WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT ?
            """, arguments: [guild.description, user.description, shown])
        return rows.reversed().compactMap { row -> String? in
            guard let role = RoleID(row["role_id"] as String) else { return nil }
            return RoleChange.line(at: row["at"], role: role, added: row["added"], rule: row["rule_id"], why: row["reason"])
        }
    }
}
