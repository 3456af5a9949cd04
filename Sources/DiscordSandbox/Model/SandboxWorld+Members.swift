import IPC

/// Member changes: the role writes the bot makes over REST (with Discord's hierarchy checks) and
/// the joins, leaves and screening the control API and the activity loop simulate.
extension SandboxWorld {
    func member(guild guildID: UInt64, user: UInt64) throws(DiscordError) -> SandboxGuild.Member {
        guard let member = try existingGuild(guildID).members[user] else { throw .unknownMember }
        return member
    }

    /// Whether the bot may add or remove this role: below its highest role and not managed.
    func checkManageable(_ roleID: UInt64, in target: SandboxGuild) throws(DiscordError) {
        guard let role = target.role(roleID) else { throw .unknownRole }
        if role.managed || role.position >= target.botTopPosition { throw .missingPermissions }
    }

    /// PUT or DELETE /guilds/{g}/members/{u}/roles/{r}: 204, and GUILD_MEMBER_UPDATE when the
    /// role list changed.
    mutating func changeRole(guild guildID: UInt64, user: UInt64, role roleID: UInt64, add: Bool, reason: String?) throws(DiscordError) {
        var member = try member(guild: guildID, user: user)
        let target = try existingGuild(guildID)
        try checkManageable(roleID, in: target)
        if roleID == target.id { return }  // @everyone is implicit
        let has = member.roles.contains(roleID)
        guard has != add else { return }
        if add { member.roles.append(roleID) } else { member.roles.removeAll { $0 == roleID } }
        roleChanges.append(RoleChange(guild: guildID, user: user, role: roleID, added: add, reason: reason, at: DiscordTime.nowMilliseconds()))
        if roleChanges.count > Self.keptRecords { roleChanges.removeFirst() }
        memberUpdated(member, guild: guildID)
    }

    /// PATCH /guilds/{g}/members/{u} with `roles`: the whole list, each added or removed role checked.
    mutating func setRoles(guild guildID: UInt64, user: UInt64, roles: [UInt64], reason: String?) throws(DiscordError) -> SandboxGuild.Member {
        var member = try member(guild: guildID, user: user)
        let target = try existingGuild(guildID)
        for role in roles where target.role(role) == nil {
            throw .invalidForm(field: "roles", code: "INVALID_ROLE", message: "Role \(role) is not valid.")
        }
        let wanted = roles.filter { $0 != target.id }.reduce(into: [UInt64]()) { if !$0.contains($1) { $0.append($1) } }
        let added = wanted.filter { !member.roles.contains($0) }
        let removed = member.roles.filter { !wanted.contains($0) }
        for role in added + removed { try checkManageable(role, in: target) }
        guard !added.isEmpty || !removed.isEmpty else { return member }
        member.roles = wanted
        let now = DiscordTime.nowMilliseconds()
        for role in added { roleChanges.append(RoleChange(guild: guildID, user: user, role: role, added: true, reason: reason, at: now)) }
        for role in removed { roleChanges.append(RoleChange(guild: guildID, user: user, role: role, added: false, reason: reason, at: now)) }
        if roleChanges.count > Self.keptRecords { roleChanges.removeFirst(roleChanges.count - Self.keptRecords) }
        memberUpdated(member, guild: guildID)
        return member
    }

    /// Stores the member (in guild 0 unless `guildID` names another) and sends GUILD_MEMBER_UPDATE.
    mutating func memberUpdated(_ member: SandboxGuild.Member, guild guildID: UInt64? = nil) {
        let guildID = guildID ?? guild.id
        if guildID == guild.id {
            guild.members[member.user.id] = member
        } else if var light = guild(withID: guildID) {
            light.members[member.user.id] = member
            store(light)
        } else {
            return
        }
        gateway.dispatch(
            "GUILD_MEMBER_UPDATE", SandboxGuild.json(member, guildID: guildID),
            to: .memberUpdate(botItself: member.user.id == guild.bot.id), guild: guildID
        )
    }

    /// New members join (GUILD_MEMBER_ADD); their accounts are of random age unless given.
    mutating func join(count: Int, pending: Bool, accountAgeDays: Double?) -> [SandboxGuild.Member] {
        (0..<max(count, 0)).map { _ in
            let age = accountAgeDays ?? Double(random.next() % 3000) + Double(random.next() % 1000) / 1000
            let member = guild.join(accountAgeDays: age, pending: pending, now: DiscordTime.nowMilliseconds())
            gateway.dispatch("GUILD_MEMBER_ADD", SandboxGuild.json(member, guildID: guild.id), to: .members, guild: guild.id)
            return member
        }
    }

    /// A member who left comes back (GUILD_MEMBER_ADD): same account, no roles, joined now.
    mutating func rejoin(user: UInt64) throws(DiscordError) -> SandboxGuild.Member {
        guard guild.members[user] == nil, var member = formerMembers.removeValue(forKey: user) else { throw .unknownUser }
        member.roles = []
        member.joinedAt = DiscordTime.nowMilliseconds()
        guild.members[user] = member
        gateway.dispatch("GUILD_MEMBER_ADD", SandboxGuild.json(member, guildID: guild.id), to: .members, guild: guild.id)
        return member
    }

    /// A member leaves (GUILD_MEMBER_REMOVE).
    mutating func leave(user: UInt64) throws(DiscordError) {
        guard let member = guild.members[user], user != guild.bot.id else { throw .unknownMember }
        leaveVoice(user: user)
        guild.members[user] = nil
        formerMembers[user] = member
        gateway.dispatch(
            "GUILD_MEMBER_REMOVE", .object(["guild_id": .id(guild.id), "user": SandboxGuild.json(member.user)]), to: .members,
            guild: guild.id
        )
    }

    /// The control API's edit: no hierarchy checks (it is Discord's side, not the bot's).
    mutating func editMember(user: UInt64, pending: Bool?, roles: [UInt64]?) throws(DiscordError) -> SandboxGuild.Member {
        guard var member = guild.members[user] else { throw .unknownMember }
        if let pending { member.pending = pending }
        if let roles {
            for role in roles where guild.role(role) == nil { throw .unknownRole }
            member.roles = roles
        }
        memberUpdated(member)
        return member
    }
}
