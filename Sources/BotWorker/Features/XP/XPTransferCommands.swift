import FoundationEssentials
import GRDB
import IPC

/// `/levels import` and `/levels export`: the slash-command side of `XPTransfer` (the same
/// formats and checks as `bot-worker xp import|export`).
struct XPTransferCommands {
    let feature: XPFeature
    var context: FeatureContext { feature.context }

    /// The largest file `/levels import` reads.
    static let maximumBytes = 50 << 20

    func importFile(_ interaction: Interaction, _ guild: GuildID) async throws -> InteractionReply {
        guard let attachment = interaction.attachment("file") else { throw CommandRefusal(description: "Attach the file to import (MEE6's leaderboard JSON, or a CSV).") }
        guard let format = interaction.option("format")?.stringValue.flatMap(XPTransfer.Format.init) else {
            throw CommandRefusal(description: "Choose the file's format: mee6 or csv.")
        }
        guard attachment.size <= Self.maximumBytes else {
            throw CommandRefusal(description: "\(attachment.filename) is \(attachment.size) bytes; at most \(Self.maximumBytes) can be imported. Nothing was changed.")
        }
        let dryRun = interaction.option("dry_run") == .bool(true)
        let bytes: [UInt8]
        do {
            bytes = try await context.discord.download(attachment.url, limit: Self.maximumBytes)
        } catch {
            throw CommandRefusal(description: "\(attachment.filename) could not be read (\(error)). Nothing was changed.")
        }
        let entries: [XPTransfer.Entry]
        do {
            entries = try XPTransfer.parse(bytes, format: format)
        } catch {
            throw CommandRefusal(description: "\(attachment.filename) was not imported: \(error). Nothing was changed.")
        }
        if dryRun {
            let plan = try await context.database.read("xp.import-plan") { db in try XPTransfer.plan(db, guild: guild, entries: entries) }
            return .ephemeral("\(attachment.filename) (\(format.rawValue)): \(plan.summary)")
        }
        let plan = try await context.database.write("xp.import") { db in try XPTransfer.apply(db, guild: guild, entries: entries) }.value
        context.audit.info("xp imported", metadata: [
            "guild_id": "\(guild)", "user_id": "\(interaction.user)", "command": "levels import", "format": "\(format.rawValue)",
            "entries": "\(entries.count)", "added": "\(plan.added)", "updated": "\(plan.updated)",
        ])
        return .ephemeral("Imported \(attachment.filename) (\(format.rawValue)): \(plan.summary) Run /levels sync to give the reward roles of the imported levels.")
    }

    func export(_ interaction: Interaction, _ guild: GuildID) async throws -> InteractionReply {
        let (csv, count) = try await context.database.read("xp.export") { db in
            (try XPTransfer.export(db, guild: guild),
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM xp_members WHERE guild_id = ?", arguments: [guild.description]) ?? 0)
        }
        context.audit.info("xp exported", metadata: ["guild_id": "\(guild)", "user_id": "\(interaction.user)", "command": "levels export", "members": "\(count)"])
        var reply = InteractionReply.ephemeral("XP of \(count) member\(count == 1 ? "" : "s"): user_id, xp, level, messages, voice_minutes. /levels import with format csv reads it back.")
        reply.files = [DiscordREST.Upload(filename: "xp-\(guild).csv", contentType: "text/csv", bytes: Array(csv.utf8))]
        return reply
    }
}
