import FoundationEssentials
import GRDB

/// What happens to the XP of a member who leaves (`/levels config on_leave:`): `keep` (the
/// default) keeps it for when they come back; `reset` takes it once they have been gone for the
/// grace period (24 h by default), so a member who leaves and comes back within it loses nothing.
///
/// The time a member left is stored (`xp_members.left_at`), so a reset due while the worker was
/// stopped happens when the next one starts.
extension XPFeature {
    func startLeaving() async {
        let feature = self
        await context.events.subscribe([.memberLeft, .memberJoined, .guildAvailable], feature: Self.name) { event in
            switch event {
            case .memberLeft(let guild, let user):
                await feature.memberLeft(guild: guild, user: user)
            case .memberJoined(let member):
                await feature.clearLeft(guild: member.guild, users: [member.user])
            case .guildAvailable(let guild, let members):
                // Members who came back while no event reached the bot are members again.
                await feature.clearLeft(guild: guild, users: members.map(\.user))
            default:
                break
            }
        }
        context.background.submit {
            do {
                let gone = try await feature.context.database.read("xp.left-members") { db in
                    try Row.fetchAll(db, sql: "SELECT guild_id, user_id, left_at FROM xp_members WHERE left_at IS NOT NULL")
                        .compactMap { row -> (GuildID, UserID, Double)? in
                            guard let guild = GuildID(row["guild_id"] as String), let user = UserID(row["user_id"] as String) else { return nil }
                            return (guild, user, row["left_at"])
                        }
                }
                for (guild, user, leftAt) in gone { feature.scheduleReset(guild: guild, user: user, leftAt: leftAt) }
            } catch {
                feature.context.logger.error("members who left could not be read; their XP resets wait for the next start", metadata: ["error": "\(error)"])
            }
        }
    }

    private func memberLeft(guild: GuildID, user: UserID) async {
        guard settings(of: guild).onLeave == .reset else { return }
        let at = Date().timeIntervalSince1970
        await context.writes.submit("xp.member-left") { db in
            try db.execute(sql: "UPDATE xp_members SET left_at = ? WHERE guild_id = ? AND user_id = ?", arguments: [at, guild.description, user.description])
            return nil
        }
        scheduleReset(guild: guild, user: user, leftAt: at)
    }

    /// Clears the departure of those of `users` who had left (usually none: one read of the
    /// guild's departed members, then a write only for those back).
    private func clearLeft(guild: GuildID, users: [UserID]) async {
        guard !users.isEmpty else { return }
        let present = Set(users.map(\.description))
        await context.writes.submit("xp.member-back") { db in
            let departed = try String.fetchAll(db, sql: "SELECT user_id FROM xp_members WHERE guild_id = ? AND left_at IS NOT NULL", arguments: [guild.description])
            for user in departed where present.contains(user) {
                try db.execute(sql: "UPDATE xp_members SET left_at = NULL WHERE guild_id = ? AND user_id = ?", arguments: [guild.description, user])
            }
            return nil
        }
    }

    /// Resets the member's XP when the grace period after `leftAt` ends, unless they came back or
    /// the guild keeps XP by then.
    func scheduleReset(guild: GuildID, user: UserID, leftAt: Double) {
        let feature = self
        context.background.submit {
            while !Task.isCancelled {
                let settings = feature.settings(of: guild)
                guard settings.onLeave == .reset else { return }
                let due = leftAt + settings.leaveGraceSeconds - Date().timeIntervalSince1970
                if due > 0 {
                    // The grace may change meanwhile: look again when this wait ends.
                    guard (try? await Task.sleep(for: .milliseconds(Int64(min(due, 3600) * 1000)))) != nil else { return }
                    continue
                }
                await feature.resetIfStillGone(guild: guild, user: user, grace: settings.leaveGraceSeconds)
                return
            }
        }
    }

    private func resetIfStillGone(guild: GuildID, user: UserID, grace: Double) async {
        let cutoff = Date().timeIntervalSince1970 - grace
        do {
            let removed = try await context.database.write("xp.reset-after-leaving") { db -> Int? in
                try Int.fetchOne(db, sql: "DELETE FROM xp_members WHERE guild_id = ? AND user_id = ? AND left_at IS NOT NULL AND left_at <= ? RETURNING xp",
                                 arguments: [guild.description, user.description, cutoff])
            }.value
            if let removed {
                context.logger.info("xp reset: the member stayed away past the grace period", metadata: [
                    "guild_id": "\(guild)", "user_id": "\(user)", "xp": "\(removed)", "grace_seconds": "\(Int(grace))",
                ])
            }
        } catch {
            context.logger.error("xp of a member who left could not be reset", metadata: ["guild_id": "\(guild)", "user_id": "\(user)", "error": "\(error)"])
        }
    }
}
