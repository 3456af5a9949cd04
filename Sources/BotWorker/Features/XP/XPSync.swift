import FoundationEssentials
import GRDB
import IPC

/// `/levels sync`: gives and takes reward roles so that every member's match their level (after
/// reward roles were changed by hand, or the rewards changed). Members without XP are level 0.
///
/// It runs in the background, one member at a time through the shared REST limiter (so it never
/// crowds out the bot's other calls or breaks a limit), showing its progress in the command's
/// answer, which ends as the report of what it changed.
struct XPSync {
    let feature: XPFeature
    var context: FeatureContext { feature.context }

    /// What a sync did.
    struct Report: Sendable, Equatable {
        var members = 0
        var checked = 0
        var added = 0
        var removed = 0
        var changedMembers = 0
        var failed = 0
        var firstFailure: String?

        var progress: String { "Syncing reward roles: \(checked) of \(members) members checked, \(added) roles given, \(removed) taken so far…" }

        var summary: String {
            var text = "Reward roles synced for \(members) members: \(added) role\(added == 1 ? "" : "s") given and \(removed) taken, on \(changedMembers) member\(changedMembers == 1 ? "" : "s")"
            text += failed > 0 ? "; \(failed) change\(failed == 1 ? "" : "s") failed (\(firstFailure ?? "see xp.log"))." : "."
            return text
        }
    }

    /// The changes a member needs: the roles of `settings.rewardRoles(at:)` they lack, and the
    /// reward roles they hold but should not.
    static func changes(level: Int, holding roles: Set<RoleID>, settings: XPSettings) -> (add: [RoleID], remove: [RoleID]) {
        let (keep, drop) = settings.rewardRoles(at: level)
        return (keep.subtracting(roles).sorted(), drop.intersection(roles).sorted())
    }

    func start(_ interaction: Interaction, _ guild: GuildID) async throws -> InteractionReply {
        let settings = feature.settings(of: guild)
        guard !settings.rewards.isEmpty else { throw CommandRefusal(description: "There are no level rewards to sync: add one with /levels reward add.") }
        guard feature.syncing.withLock({ $0.insert(guild).inserted }) else {
            throw CommandRefusal(description: "A sync of this server's reward roles is already running.")
        }
        context.audit.info("xp reward roles sync started", metadata: ["guild_id": "\(guild)", "user_id": "\(interaction.user)", "command": "levels sync"])
        let sync = self
        context.background.submit {
            defer { _ = sync.feature.syncing.withLock { $0.remove(guild) } }
            let report = await sync.run(guild: guild, settings: settings) { report in
                try? await sync.context.discord.editOriginal(application: interaction.applicationID, token: interaction.token, InteractionReply.ephemeral(report.progress).message)
            }
            sync.context.logger.info("reward roles synced", metadata: [
                "guild_id": "\(guild)", "members": "\(report.members)", "added": "\(report.added)", "removed": "\(report.removed)", "failed": "\(report.failed)",
            ])
            do {
                try await sync.context.discord.editOriginal(application: interaction.applicationID, token: interaction.token, InteractionReply.ephemeral(report.summary).message)
            } catch {
                sync.context.logger.warning("the sync's report could not be shown", metadata: ["guild_id": "\(guild)", "error": "\(error)"])
            }
        }
        return .ephemeral("Syncing reward roles: reading the members…")
    }

    /// Syncs every member; `progress` is called at most every 2 s.
    func run(guild: GuildID, settings: XPSettings, progress: @Sendable (Report) async -> Void) async -> Report {
        var report = Report()
        let members: [Member]
        let levels: [String: Int]
        do {
            members = try await context.discord.members(of: guild).filter { !$0.isBot }
            levels = try await context.database.read("xp.sync-levels") { db in
                Dictionary(try Row.fetchAll(db, sql: "SELECT user_id, level FROM xp_members WHERE guild_id = ?", arguments: [guild.description])
                    .map { ($0["user_id"] as String, $0["level"] as Int) }, uniquingKeysWith: { $1 })
            }
        } catch {
            report.failed = 1
            report.firstFailure = "the members could not be read: \(error)"
            return report
        }
        report.members = members.count
        var shown = ContinuousClock.now
        for member in members {
            if Task.isCancelled { break }
            let level = levels[member.user.description] ?? 0
            let (add, remove) = Self.changes(level: level, holding: member.roles, settings: settings)
            var changed = false
            for (role, adding) in add.map({ ($0, true) }) + remove.map({ ($0, false) }) {
                do {
                    if adding {
                        try await context.discord.addRole(guild: guild, user: member.user, role: role, reason: "levels sync: level \(level) reward")
                        report.added += 1
                    } else {
                        try await context.discord.removeRole(guild: guild, user: member.user, role: role, reason: "levels sync: not a reward of level \(level)")
                        report.removed += 1
                    }
                    changed = true
                } catch {
                    report.failed += 1
                    report.firstFailure = report.firstFailure ?? "\(error)"
                }
            }
            if changed { report.changedMembers += 1 }
            report.checked += 1
            if ContinuousClock.now - shown >= .seconds(2) {
                shown = .now
                await progress(report)
            }
        }
        return report
    }
}
