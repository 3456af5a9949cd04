import FoundationEssentials
import GRDB
import IPC
import Logging

/// The XP feature's slash commands: `/rank`, `/leaderboard`, `/xp privacy hide|show` for every
/// member; `/xp add|remove|set|reset` and `/levels …` (rewards, config, sync, import, export)
/// for Manage Server.
struct XPCommands {
    let feature: XPFeature
    var context: FeatureContext { feature.context }

    static func option(_ type: Int, _ name: String, _ description: String, required: Bool = false, extra: [String: JSONValue] = [:]) -> JSONValue {
        .object(["type": .integer(type), "name": .string(name), "description": .string(description), "required": .bool(required)].merging(extra) { $1 })
    }

    static func sub(_ name: String, _ description: String, _ options: [JSONValue] = []) -> JSONValue {
        .object(["type": .integer(1), "name": .string(name), "description": .string(description), "options": .array(options)])
    }

    static func command(_ name: String, _ description: String, admin: Bool, _ options: [JSONValue]) -> JSONValue {
        var object: [String: JSONValue] = [
            "name": .string(name), "type": .integer(1), "contexts": .array([.integer(0)]),
            "description": .string(description), "options": .array(options),
        ]
        if admin { object["default_member_permissions"] = .string(String(XPFeature.manageServer)) }
        return .object(object)
    }

    static let definitions: [JSONValue] = [
        command("rank", "Show your level and XP, or another member's", admin: false, [option(6, "member", "Whose rank to show")]),
        command("leaderboard", "The members with the most XP", admin: false, [option(4, "page", "Page (10 a page)", extra: ["min_value": .integer(1)])]),
        // Not admin as a whole: `privacy` is every member's; the handler checks Manage Server for the rest.
        command("xp", "Your XP privacy; a member's XP (Manage Server)", admin: false, [
            .object(["type": .integer(2), "name": .string("privacy"), "description": .string("Whether you appear on the leaderboards"), "options": .array([
                sub("hide", "Leave me out of the leaderboards (I keep my XP)"),
                sub("show", "Show me on the leaderboards again"),
            ])]),
            sub("add", "Add XP", [option(6, "member", "Whose XP", required: true), option(4, "amount", "How much", required: true, extra: ["min_value": .integer(1)])]),
            sub("remove", "Take XP away", [option(6, "member", "Whose XP", required: true), option(4, "amount", "How much", required: true, extra: ["min_value": .integer(1)])]),
            sub("set", "Set the XP", [option(6, "member", "Whose XP", required: true), option(4, "amount", "The new total", required: true, extra: ["min_value": .integer(0)])]),
            sub("reset", "Set the XP to 0", [option(6, "member", "Whose XP", required: true)]),
        ]),
        command("levels", "Level rewards and XP settings", admin: true, [
            .object(["type": .integer(2), "name": .string("reward"), "description": .string("Roles given at a level"), "options": .array([
                sub("add", "Give a role at a level", [option(4, "level", "The level", required: true, extra: ["min_value": .integer(1)]), option(8, "role", "The role", required: true)]),
                sub("remove", "Stop giving a role at a level", [option(4, "level", "The level", required: true)]),
                sub("list", "List the level rewards"),
            ])]),
            sub("sync", "Give and take reward roles so that every member's match their level"),
            sub("import", "Import XP from MEE6's leaderboard JSON or this bot's CSV export", [
                option(11, "file", "The file", required: true),
                option(3, "format", "mee6: MEE6's leaderboard JSON; csv: user_id,xp,level,messages,voice_minutes", required: true,
                       extra: ["choices": .array(XPTransfer.Format.allCases.map { .object(["name": .string($0.rawValue), "value": .string($0.rawValue)]) })]),
                option(5, "dry_run", "Only show what would change"),
            ]),
            sub("export", "Every member's XP as a CSV file (user_id,xp,level,messages,voice_minutes)"),
            sub("config", "XP settings (only what you give changes)", [
                option(4, "min_xp", "Least XP a message earns", extra: ["min_value": .integer(0)]),
                option(4, "max_xp", "Most XP a message earns", extra: ["min_value": .integer(0)]),
                option(4, "cooldown_seconds", "Seconds between two messages that earn XP", extra: ["min_value": .integer(0)]),
                option(7, "announce_channel", "Where level-ups are announced"),
                option(3, "announce", "Announce level-ups", extra: ["choices": .array(["channel", "same", "off"].map { .object(["name": .string($0), "value": .string($0)]) })]),
                option(3, "template", "Announcement; {user} and {level} are filled in"),
                option(3, "reward_mode", "stack: keep every reward; replace: only the highest", extra: ["choices": .array(["stack", "replace"].map { .object(["name": .string($0), "value": .string($0)]) })]),
                option(7, "no_xp_channel", "Toggle: messages there earn no XP"),
                option(8, "no_xp_role", "Toggle: members with it earn no XP"),
                option(7, "multiplier_channel", "A channel whose XP is multiplied"),
                option(8, "multiplier_role", "A role whose XP is multiplied"),
                option(10, "multiplier", "The multiplier for multiplier_channel or multiplier_role (1 removes it)", extra: ["min_value": .number(0), "max_value": .number(10)]),
                option(3, "leaderboard", "The dashboard's leaderboard page (rank, name, level, XP): public, or off", extra: ["choices": .array(["public", "off"].map { .object(["name": .string($0), "value": .string($0)]) })]),
                option(4, "voice_xp", "XP a minute in voice earns (0: off)", extra: ["min_value": .integer(0), "max_value": .integer(1000)]),
                option(3, "on_leave", "keep: a member who leaves keeps their XP; reset: it goes after the grace period", extra: ["choices": .array(["keep", "reset"].map { .object(["name": .string($0), "value": .string($0)]) })]),
                option(10, "leave_grace_hours", "With on_leave reset: hours a member may be gone before their XP goes (default 24)", extra: ["min_value": .number(0), "max_value": .number(8760)]),
            ]),
        ]),
    ]

    func handle(_ interaction: Interaction) async throws -> InteractionReply {
        guard let guild = interaction.guild else { throw CommandRefusal(description: "XP exists only in a server.") }
        switch interaction.commandName {
        case "rank": return try await rank(interaction, guild)
        case "leaderboard": return try await leaderboard(interaction, guild)
        case "xp":
            if interaction.options.first?["name"]?.stringValue == "privacy" { return try await privacy(interaction, guild) }
            guard interaction.memberPermissions & XPFeature.manageServer != 0 else {
                throw CommandRefusal(description: "Changing a member's XP needs the Manage Server permission.")
            }
            return try await change(interaction, guild)
        case "levels":
            switch interaction.options.first?["name"]?.stringValue {
            case "reward": return try await reward(interaction, guild)
            case "sync": return try await XPSync(feature: feature).start(interaction, guild)
            case "import": return try await XPTransferCommands(feature: feature).importFile(interaction, guild)
            case "export": return try await XPTransferCommands(feature: feature).export(interaction, guild)
            default: return try await configure(interaction, guild)
            }
        default: throw CommandRefusal(description: "Unknown command.")
        }
    }

    private func rank(_ interaction: Interaction, _ guild: GuildID) async throws -> InteractionReply {
        let user = interaction.option("member")?.stringValue.flatMap(UserID.init) ?? interaction.user
        let standing = try await context.database.read("xp.rank") { db in try XPFeature.standing(db, guild: guild, user: user) }
        guard let standing else {
            return .ephemeral(user == interaction.user ? "You have no XP yet: chat a little first." : "<@\(user)> has no XP yet.")
        }
        let next = XPCurve.totalXP(for: standing.level + 1)
        return .visible("<@\(user)> is level \(standing.level) with \(standing.xp) XP (\(next - standing.xp) to level \(standing.level + 1)), \(standing.hidden ? "hidden from the leaderboards" : "rank #\(standing.rank) in this server"), \(standing.messages) messages, \(standing.voiceMinutes) minutes in voice.")
    }

    private func leaderboard(_ interaction: Interaction, _ guild: GuildID) async throws -> InteractionReply {
        let page = max(1, interaction.option("page")?.intValue ?? 1)
        let (rows, total) = try await context.database.read("xp.leaderboard") { db in
            (try Row.fetchAll(db, sql: "SELECT user_id, xp, level FROM xp_members WHERE guild_id = ? AND NOT hidden ORDER BY xp DESC, user_id LIMIT 10 OFFSET ?",
                              arguments: [guild.description, (page - 1) * 10]).map { ($0["user_id"] as String, $0["xp"] as Int, $0["level"] as Int) },
             try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM xp_members WHERE guild_id = ? AND NOT hidden", arguments: [guild.description]) ?? 0)
        }
        let pages = max(1, (total + 9) / 10)
        guard !rows.isEmpty else { return .ephemeral(total == 0 ? "Nobody has XP yet." : "There are only \(pages) pages.") }
        let lines = rows.enumerated().map { "#\((page - 1) * 10 + $0.offset + 1) <@\($0.element.0)>: level \($0.element.2), \($0.element.1) XP" }
        return .visible("**Leaderboard** (page \(page) of \(pages))\n" + lines.joined(separator: "\n"))
    }

    private func change(_ interaction: Interaction, _ guild: GuildID) async throws -> InteractionReply {
        guard let user = interaction.option("member")?.stringValue.flatMap(UserID.init) else { throw CommandRefusal(description: "Name a member.") }
        let action = interaction.subcommand ?? ""
        let amount = interaction.option("amount")?.intValue ?? 0
        let result = try await context.database.write("xp.admin-\(action)") { db -> (xp: Int, change: (old: Int, new: Int)?) in
            let current = try Row.fetchOne(db, sql: "SELECT xp, level FROM xp_members WHERE guild_id = ? AND user_id = ?", arguments: [guild.description, user.description])
            let xp: Int = current?["xp"] ?? 0
            let level: Int = current?["level"] ?? 0
            let updated = switch action {
            case "add": xp + amount
            case "remove": max(0, xp - amount)
            case "set": max(0, amount)
            default: 0
            }
            // No name: `Interaction` does not keep the resolved member, so the stored one is kept.
            try XPFeature.setXP(db, guild: guild, user: user, name: nil, xp: updated)
            return (updated, try XPFeature.settle(db, guild: guild, user: user, xp: updated, stored: level))
        }.value
        context.audit.info("xp changed", metadata: [
            "guild_id": "\(guild)", "user_id": "\(interaction.user)", "command": "xp \(action)", "member": "\(user)", "amount": "\(amount)", "xp": "\(result.xp)",
        ])
        if let change = result.change {
            await feature.levelChanged(guild: guild, user: user, from: change.old, to: change.new, channel: nil)
        }
        return .ephemeral("<@\(user)> now has \(result.xp) XP (level \(XPCurve.level(forXP: result.xp))).")
    }

    private func reward(_ interaction: Interaction, _ guild: GuildID) async throws -> InteractionReply {
        var settings = feature.settings(of: guild)
        let level = interaction.option("level")?.intValue
        switch interaction.options.first?["options"]?.arrayValue.first?["name"]?.stringValue {
        case "add":
            guard let level, let role = interaction.option("role")?.stringValue.flatMap(RoleID.init) else { throw CommandRefusal(description: "Give a level and a role.") }
            if let why = await context.discord.cannotManage(role, in: guild) { throw CommandRefusal(description: "The reward was not added: \(why).") }
            settings.rewards[level] = role
            try await save(settings, guild, interaction, "levels reward add")
            // Retroactively: members already at or above the level get it now.
            let members = try await context.database.read("xp.members-at-level") { db in
                try String.fetchAll(db, sql: "SELECT user_id FROM xp_members WHERE guild_id = ? AND level >= ?", arguments: [guild.description, level])
            }
            let feature = self.feature
            let context = self.context
            let settings = settings
            context.background.submit {
                for id in members.compactMap(UserID.init) {
                    let current = try? await context.database.read("xp.level") { db in
                        try Int.fetchOne(db, sql: "SELECT level FROM xp_members WHERE guild_id = ? AND user_id = ?", arguments: [guild.description, id.description])
                    }
                    await feature.applyRewards(guild: guild, user: id, level: (current ?? nil) ?? level, settings: settings, memberRoles: nil)
                }
            }
            return .ephemeral("Members reaching level \(level) get <@&\(role)>; the \(members.count) already there are getting it now.")
        case "remove":
            guard let level, settings.rewards.removeValue(forKey: level) != nil else { throw CommandRefusal(description: "There is no reward at that level.") }
            try await save(settings, guild, interaction, "levels reward remove")
            return .ephemeral("No more reward at level \(level). Members who have the role keep it.")
        default:
            guard !settings.rewards.isEmpty else { return .ephemeral("No level rewards yet: add one with /levels reward add.") }
            return .ephemeral("Rewards (\(settings.rewardMode.rawValue)):\n" + settings.rewards.sorted { $0.key < $1.key }.map { "level \($0.key): <@&\($0.value)>" }.joined(separator: "\n"))
        }
    }

    private func configure(_ interaction: Interaction, _ guild: GuildID) async throws -> InteractionReply {
        var s = feature.settings(of: guild)
        if let value = interaction.option("min_xp")?.intValue { s.minXP = value }
        if let value = interaction.option("max_xp")?.intValue { s.maxXP = value }
        guard s.minXP <= s.maxXP else { throw CommandRefusal(description: "min_xp (\(s.minXP)) must not be above max_xp (\(s.maxXP)).") }
        if let value = interaction.option("cooldown_seconds")?.intValue { s.cooldownSeconds = Double(value) }
        if let channel = interaction.option("announce_channel")?.stringValue.flatMap(ChannelID.init) {
            s.announceChannel = channel
            s.announceInSameChannel = false
        }
        switch interaction.option("announce")?.stringValue {
        case "same": s.announceInSameChannel = true
        case "off": s.announceChannel = nil; s.announceInSameChannel = false
        default: break
        }
        if let template = interaction.option("template")?.stringValue { s.template = String(template.prefix(500)) }
        if let mode = interaction.option("reward_mode")?.stringValue.flatMap(XPSettings.RewardMode.init) { s.rewardMode = mode }
        if let channel = interaction.option("no_xp_channel")?.stringValue.flatMap(ChannelID.init) {
            if s.noXPChannels.remove(channel) == nil { s.noXPChannels.insert(channel); s.channelMultipliers[channel] = nil }
        }
        if let role = interaction.option("no_xp_role")?.stringValue.flatMap(RoleID.init) {
            if s.noXPRoles.remove(role) == nil { s.noXPRoles.insert(role); s.roleMultipliers[role] = nil }
        }
        if let multiplier = interaction.option("multiplier")?.doubleValue {
            if let channel = interaction.option("multiplier_channel")?.stringValue.flatMap(ChannelID.init) {
                s.channelMultipliers[channel] = multiplier == 1 ? nil : multiplier
                s.noXPChannels.remove(channel)
            }
            if let role = interaction.option("multiplier_role")?.stringValue.flatMap(RoleID.init) {
                s.roleMultipliers[role] = multiplier == 1 ? nil : multiplier
                s.noXPRoles.remove(role)
            }
        }
        if let value = interaction.option("voice_xp")?.intValue { s.voiceXP = max(0, value) }
        if let policy = interaction.option("on_leave")?.stringValue.flatMap(XPSettings.LeavePolicy.init) { s.onLeave = policy }
        if let hours = interaction.option("leave_grace_hours")?.doubleValue { s.leaveGraceSeconds = max(0, hours) * 3600 }
        let leaderboard = interaction.option("leaderboard")?.stringValue.flatMap(XPSettings.LeaderboardPage.init)
        if let leaderboard { s.leaderboard = leaderboard }
        try await save(s, guild, interaction, "levels config", leaderboard.map { ["leaderboard": "\($0.rawValue)"] } ?? [:])
        let announce = s.announceInSameChannel ? "in the same channel" : s.announceChannel.map { "in <#\($0)>" } ?? "off"
        let summary = """
            XP per message \(s.minXP)–\(s.maxXP), cooldown \(Int(s.cooldownSeconds)) s; announcements \(announce) ("\(s.template)"); \
            rewards \(s.rewardMode.rawValue); no-XP channels \(s.noXPChannels.count), roles \(s.noXPRoles.count); \
            multipliers: \(s.channelMultipliers.count) channels, \(s.roleMultipliers.count) roles; leaderboard page \(s.leaderboard.rawValue); \
            voice \(s.voiceXP > 0 ? "\(s.voiceXP) XP a minute" : "off"); on leave \(s.onLeave.rawValue)\(s.onLeave == .reset ? " after \(Self.hours(s.leaveGraceSeconds))" : "").
            """
        switch leaderboard {
        case .public?: return .ephemeral(summary + "\nThe leaderboard page is now public: anyone with the dashboard's address can see rank, name, level and XP of this server's members.")
        case .off?: return .ephemeral(summary + "\nThe leaderboard page is now off.")
        case nil: return .ephemeral(summary)
        }
    }

    static func hours(_ seconds: Double) -> String {
        let hours = seconds / 3600
        return hours == hours.rounded() ? "\(Int(hours)) h" : "\(Int(seconds.rounded())) s"
    }

    /// `/xp privacy hide|show`: the member's own choice; their XP is kept either way.
    private func privacy(_ interaction: Interaction, _ guild: GuildID) async throws -> InteractionReply {
        let choice = interaction.options.first?["options"]?.arrayValue.first?["name"]?.stringValue
        guard choice == "hide" || choice == "show" else { throw CommandRefusal(description: "Choose hide or show.") }
        let hide = choice == "hide"
        let user = interaction.user
        try await context.database.write("xp.privacy") { db in
            try db.execute(sql: """
                INSERT INTO xp_members (guild_id, user_id, xp, level, messages, hidden) VALUES (?, ?, 0, 0, 0, ?)
                ON CONFLICT (guild_id, user_id) DO UPDATE SET hidden = excluded.hidden
                """, arguments: [guild.description, user.description, hide])
        }
        context.logger.info("xp privacy changed", metadata: ["guild_id": "\(guild)", "user_id": "\(user)", "hidden": "\(hide)"])
        return .ephemeral(hide
            ? "You are now left out of /leaderboard and the leaderboard page. You keep your XP and level; /xp privacy show brings you back."
            : "You are on the leaderboards again.")
    }

    private func save(_ settings: XPSettings, _ guild: GuildID, _ interaction: Interaction, _ command: String, _ detail: Logger.Metadata = [:]) async throws {
        try await context.database.write("xp.settings") { db in try settings.save(db, guild: guild) }
        feature.settings.withLock { $0[guild] = settings }
        context.audit.info("xp settings changed", metadata: detail.merging(["guild_id": "\(guild)", "user_id": "\(interaction.user)", "command": "\(command)"]) { $1 })
    }
}
