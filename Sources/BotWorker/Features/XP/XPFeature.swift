import FoundationEssentials
import GRDB
import IPC
import Logging

/// XP and levels: every message of a member counts, and earns 15–25 XP at most once a minute
/// (MEE6's rules, which members expect). Crossing a level publishes `levelReached` once the write
/// is committed.
///
/// Messages arrive by the thousand a second in a busy guild, so the writes go through the group
/// commit (`context.writes`), never one transaction each.
struct XPFeature: Feature {
    static let name = "xp"

    struct Settings: Sendable, Equatable {
        var cooldownSeconds: Double = 60
        var xpPerMessage: ClosedRange<Int> = 15...25
    }

    let context: FeatureContext
    let settings = Settings()

    init(context: FeatureContext) { self.context = context }

    static func registerMigrations(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("xp-v1") { db in
            try db.create(table: "xp_members", options: .withoutRowID) { t in
                t.column("guild_id", .text).notNull()
                t.column("user_id", .text).notNull()
                t.column("xp", .integer).notNull().defaults(to: 0).check { $0 >= 0 }
                t.column("level", .integer).notNull().defaults(to: 0)
                t.column("messages", .integer).notNull().defaults(to: 0)
                // Seconds since 1970 of the last message that earned XP.
                t.column("last_award_at", .double)
                t.primaryKey(["guild_id", "user_id"])
            }
            try AppDatabase.registerTable(db, name: "xp_members", feature: name, critical: true)
        }
    }

    func setup() async throws {
        let database = context.database
        await context.commands.register(command: Self.rankCommand, feature: Self.name) { interaction in
            guard let guild = interaction.guild else { throw CommandRefusal(description: "Ranks exist only in a server.") }
            let user = interaction.option("member")?.stringValue.flatMap(UserID.init) ?? interaction.user
            let standing = try await database.read("xp.rank") { db in try XPFeature.standing(db, guild: guild, user: user) }
            guard let standing else {
                return .ephemeral(user == interaction.user ? "You have no XP yet: chat a little first." : "<@\(user)> has no XP yet.")
            }
            let next = XPCurve.totalXP(for: standing.level + 1)
            return .visible("<@\(user)> is level \(standing.level) with \(standing.xp) XP (\(next - standing.xp) to level \(standing.level + 1)), rank #\(standing.rank) in this server, \(standing.messages) messages.")
        }
        let writes = context.writes
        let events = context.events
        let settings = self.settings
        await context.events.subscribe([.messageCreated], feature: Self.name) { event in
            guard case .messageCreated(let message) = event, let guild = message.guild, !message.authorIsBot else { return }
            let award = Int.random(in: settings.xpPerMessage)
            let at = Date().timeIntervalSince1970
            await writes.submit("xp.message", receivedAt: message.receivedAt) { db in
                let level = try XPFeature.countMessage(db, guild: guild, user: message.author, award: award, at: at, cooldown: settings.cooldownSeconds)
                guard let level else { return nil }
                return { await events.publish(.levelReached(guild: guild, user: message.author, level: level)) }
            }
        }
    }

    /// Counts one message of `user` and awards `award` XP unless the last award is under
    /// `cooldown` seconds old. Returns the new level when this message reached one.
    static func countMessage(_ db: Database, guild: GuildID, user: UserID, award: Int, at: Double, cooldown: Double) throws -> Int? {
        let row = try Row.fetchOne(db, sql: """
            INSERT INTO xp_members (guild_id, user_id, xp, level, messages, last_award_at) VALUES (?, ?, ?, 0, 1, ?)
            ON CONFLICT (guild_id, user_id) DO UPDATE SET
                messages = messages + 1,
                xp = CASE WHEN last_award_at IS NULL OR excluded.last_award_at - last_award_at >= ?1
                     THEN xp + excluded.xp ELSE xp END,
                last_award_at = CASE WHEN last_award_at IS NULL OR excluded.last_award_at - last_award_at >= ?1
                     THEN excluded.last_award_at ELSE last_award_at END
            RETURNING xp, level
            """.replacingOccurrences(of: "?1", with: "\(cooldown)"), arguments: [guild.description, user.description, award, at])
        guard let row else { return nil }
        let xp: Int = row["xp"]
        let stored: Int = row["level"]
        let level = XPCurve.level(forXP: xp)
        guard level != stored else { return nil }
        try db.execute(
            sql: "UPDATE xp_members SET level = ? WHERE guild_id = ? AND user_id = ?",
            arguments: [level, guild.description, user.description]
        )
        return level > stored ? level : nil
    }

    static let rankCommand: JSONValue = .object([
        "name": .string("rank"), "type": .integer(1), "contexts": .array([.integer(0)]),
        "description": .string("Show your level and XP, or another member's"),
        "options": .array([.object([
            "type": .integer(6), "name": .string("member"), "description": .string("Whose rank to show"), "required": .bool(false),
        ])]),
    ])

    struct Standing: Sendable, Equatable {
        var xp: Int
        var level: Int
        var messages: Int
        var rank: Int
    }

    static func standing(_ db: Database, guild: GuildID, user: UserID) throws -> Standing? {
        guard let row = try Row.fetchOne(db, sql: "SELECT xp, level, messages FROM xp_members WHERE guild_id = ? AND user_id = ?",
                                         arguments: [guild.description, user.description]) else { return nil }
        let xp: Int = row["xp"]
        let above = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM xp_members WHERE guild_id = ? AND xp > ?", arguments: [guild.description, xp]) ?? 0
        return Standing(xp: xp, level: row["level"], messages: row["messages"], rank: above + 1)
    }

    func verifyDatabase(_ db: Database) throws -> [String] {
        try db.tableExists("xp_members") ? [] : ["table xp_members is missing"]
    }

    func loadSettings() async throws {}
    func cleanup() async {}
}
