import FoundationEssentials
import GRDB
import IPC
import Logging

/// Evaluation: members brought in line with the rules, one at a time each, their chains of
/// rule-made changes tracked (`RuleChains`) and every change kept for the history.
extension RoleConnectionsFeature {
    func storeFact(guild: GuildID, user: UserID, level: Int? = nil, verified: Bool? = nil) async throws {
        try await context.database.write("role_connections.member-fact", logLevel: .debug) { db in
            try db.execute(sql: """
                INSERT INTO role_member_facts (guild_id, user_id, level, verified) VALUES (?, ?, ?, ?)
                ON CONFLICT (guild_id, user_id) DO UPDATE SET level = COALESCE(?, level), verified = COALESCE(?, verified)
                """, arguments: [guild.description, user.description, level ?? 0, verified ?? false, level, verified])
        }
    }

    func facts(for member: Member) async throws -> MemberFacts {
        let (level, verified) = try await context.database.read("role_connections.member-facts") { db -> (Int, Bool) in
            let row = try Row.fetchOne(db, sql: "SELECT level, verified FROM role_member_facts WHERE guild_id = ? AND user_id = ?", arguments: [member.guild.description, member.user.description])
            return (row?["level"] ?? 0, row?["verified"] ?? false)
        }
        return MemberFacts(user: member.user, roles: member.roles, level: level, verified: verified,
                           joinedAt: member.joinedAt, isBot: member.isBot, pending: member.pending)
    }

    func evaluate(user: UserID, in guild: GuildID) async {
        guard rules.withLock({ !($0[guild] ?? []).isEmpty }) else { return }
        do {
            guard let member = try await context.discord.member(user, of: guild) else { return }  // left
            await evaluate(member, .other)
        } catch {
            context.logger.warning("member could not be fetched for evaluation", metadata: ["guild_id": "\(guild)", "user_id": "\(user)", "error": "\(error)"])
        }
    }

    /// Brings one member in line with the rules. One evaluation per member at a time: what
    /// arrives for a member being evaluated (the updates its own changes cause, above all) is
    /// evaluated once after it, on the member as Discord has them then, continuing the chain.
    func evaluate(_ member: Member, _ trigger: RuleChains.Trigger) async {
        guard rules.withLock({ !($0[member.guild] ?? []).isEmpty }), !member.isBot else { return }
        let key = RuleChains.MemberKey(guild: member.guild, user: member.user)
        let first = evaluating.withLock { running -> Bool in
            guard var current = running[key] else {
                running[key] = Running()
                return true
            }
            current.pending = current.pending?.merged(with: trigger) ?? trigger
            running[key] = current
            return false
        }
        guard first else { return }
        var next: (member: Member, trigger: RuleChains.Trigger)? = (member, trigger)
        while let (current, trigger) = next {
            await evaluateOnce(current, trigger)
            let pending = evaluating.withLock { running -> RuleChains.Trigger? in
                let pending = running[key]?.pending
                running[key] = pending == nil ? nil : Running()
                return pending
            }
            guard let pending else { return }
            do {
                next = try await context.discord.member(member.user, of: member.guild).map { ($0, pending) }
            } catch {
                context.logger.warning("member could not be fetched for evaluation", metadata: ["guild_id": "\(member.guild)", "user_id": "\(member.user)", "error": "\(error)"])
                next = nil
            }
            if next == nil { _ = evaluating.withLock { $0.removeValue(forKey: key) } }
        }
    }

    /// One plan for `member`, applied change by change while its chain allows, and recorded.
    private func evaluateOnce(_ member: Member, _ trigger: RuleChains.Trigger) async {
        let current = rules.withLock { $0[member.guild] ?? [] }
        guard !current.isEmpty else { return }
        let key = RuleChains.MemberKey(guild: member.guild, user: member.user)
        let now = Date()
        chains.withLock { $0.begin(key, trigger, now: now) }
        var made: [RoleChange] = []
        do {
            let facts = try await facts(for: member)
            for change in RuleEngine.changes(RuleEngine.plan(current, for: facts, now: now), rules: current, for: facts, now: now) {
                if let why = await context.discord.cannotManage(change.role, in: member.guild) {
                    context.logger.warning("rule skipped: the bot cannot change this role", metadata: ["guild_id": "\(member.guild)", "role_id": "\(change.role)", "reason": "\(why)"])
                    continue
                }
                if case .stop(let loop) = chains.withLock({ $0.record(change.link, for: key, now: Date()) }) {
                    await stopped(member, loop)
                    break
                }
                let reason = "role connection #\(change.rule): \(change.why)"
                if change.added {
                    try await context.discord.addRole(guild: member.guild, user: member.user, role: change.role, reason: reason)
                } else {
                    try await context.discord.removeRole(guild: member.guild, user: member.user, role: change.role, reason: reason)
                }
                made.append(change)
                context.logger.info(change.added ? "role given" : "role taken", metadata: [
                    "guild_id": "\(member.guild)", "user_id": "\(member.user)", "role_id": "\(change.role)", "rule": "\(change.rule)",
                    "depth": "\(chains.withLock { $0.depth(of: key) })",
                ])
            }
        } catch {
            context.logger.error("member evaluation failed", metadata: ["guild_id": "\(member.guild)", "user_id": "\(member.user)", "error": "\(error)"])
        }
        await remember(made, for: member)
    }

    /// A chain reached its depth: logged every time, raised in the supervisor when `loop` is set.
    private func stopped(_ member: Member, _ loop: RuleChains.Loop?) async {
        let roles = await context.discord.roles(of: member.guild)
        let chain = loop?.description { roles[$0]?.name ?? "\($0)" }
        context.logger.warning("rule changes stopped: the rules loop for this member", metadata: [
            "guild_id": "\(member.guild)", "user_id": "\(member.user)", "depth": "\(RuleChains.maxDepth)", "chain": "\(chain ?? "already reported")",
        ])
        if let chain { await context.alerts.raise(.warning, chain) }
    }

    /// Keeps the changes for `/roleconnection history`.
    private func remember(_ changes: [RoleChange], for member: Member) async {
        guard !changes.isEmpty else { return }
        do {
            try await context.database.write("role_connections.record-changes", logLevel: .debug) { db in
                try RoleChangeHistory.record(db, guild: member.guild, user: member.user, changes: changes, at: Timestamp.string())
            }
        } catch {
            context.logger.error("role changes not recorded in the history", metadata: ["guild_id": "\(member.guild)", "user_id": "\(member.user)", "error": "\(error)"])
        }
    }

    /// Every member of the guild, from the paged member list.
    func sweep(_ guild: GuildID) async {
        guard rules.withLock({ !($0[guild] ?? []).isEmpty }) else { return }
        do {
            let members = try await context.discord.members(of: guild)
            for member in members { await evaluate(member, .other) }
            context.logger.info("sweep done", metadata: ["guild_id": "\(guild)", "members": "\(members.count)"])
        } catch {
            context.logger.error("sweep failed", metadata: ["guild_id": "\(guild)", "error": "\(error)"])
        }
    }

    func sweepSoon(_ guild: GuildID) {
        let feature = self
        context.background.submit { await feature.sweep(guild) }
    }

    func startSweeping() {
        let feature = self
        let start = sweeping.withLock { running in
            defer { running = true }
            return !running
        }
        guard start else { return }
        context.background.submit {
            while !Task.isCancelled {
                guard (try? await Task.sleep(for: Self.sweepInterval)) != nil else { return }
                for guild in await feature.context.discord.guildIDs { await feature.sweep(guild) }
                await feature.pruneHistory()
            }
        }
    }

    private func pruneHistory() async {
        do {
            try await context.database.write("role_connections.prune-history", logLevel: .debug) { db in
                try RoleChangeHistory.prune(db, now: Date())
            }
        } catch {
            context.logger.error("the role change history could not be pruned", metadata: ["error": "\(error)"])
        }
    }
}
