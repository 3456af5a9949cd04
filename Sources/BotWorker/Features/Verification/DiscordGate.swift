import FoundationEssentials

/// What Discord itself asks of a member before they may use the server, which
/// `/verification setup wait_for_discord:True` waits for before granting the verified role:
/// membership screening (`pending`) and the guild's verification level.
///
/// The levels (GUILD_CREATE / GUILD_UPDATE `verification_level`) build on each other:
/// 0 NONE; 1 LOW, a verified e-mail; 2 MEDIUM, also an account older than 5 minutes; 3 HIGH, also
/// a member of the server for more than 10 minutes; 4 VERY_HIGH, also a verified phone. A bot
/// sees neither the e-mail nor the phone: Discord enforces those two itself before the member can
/// use the server, so only the times are waited for here.
enum DiscordGate {
    static let mediumAccountAge: TimeInterval = 5 * 60
    static let highMembership: TimeInterval = 10 * 60

    struct Wait: Sendable, Equatable {
        /// Still in membership screening: the GUILD_MEMBER_UPDATE clearing `pending` ends it.
        var screening: Bool
        /// When the verification level's times are met, if not yet.
        var readyAt: Date?

        /// For the member, e.g. "once you have accepted the server's rules".
        var explanation: String {
            var parts: [String] = []
            if screening { parts.append("you have completed the server's membership screening (its rules)") }
            if let readyAt { parts.append("the server's verification level lets you in, <t:\(Int64(readyAt.timeIntervalSince1970)):R>") }
            return parts.joined(separator: " and ")
        }
    }

    /// Why the member must wait, or nil when Discord lets them in now. `joined` unknown counts as
    /// long ago (Discord sends `joined_at` with every member).
    static func wait(pending: Bool, level: Int, created: Date, joined: Date?, now: Date) -> Wait? {
        var readyAt: Date?
        if level >= 2 { readyAt = created.addingTimeInterval(mediumAccountAge) }
        if level >= 3, let joined { readyAt = max(readyAt ?? joined, joined.addingTimeInterval(highMembership)) }
        if let at = readyAt, at <= now { readyAt = nil }
        guard pending || readyAt != nil else { return nil }
        return Wait(screening: pending, readyAt: readyAt)
    }
}
