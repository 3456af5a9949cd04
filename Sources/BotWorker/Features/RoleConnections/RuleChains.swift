import FoundationEssentials

/// The chains of role changes that rules cause, per member, and where they stop.
///
/// A role a rule gives or takes comes back as a GUILD_MEMBER_UPDATE, which is evaluated in turn
/// and may make another rule change a role, and so on. Rules that look safe to
/// `RuleEngine.oscillation` can still keep a member's roles flipping for ever: two `has` rules
/// feeding each other (Regular while having Member, Member while having Regular) swap the two
/// roles at every evaluation when a member holds only one; another bot undoing what a rule did
/// fights it without end.
///
/// A chain is the changes made for one member, each in an evaluation that the previous change
/// caused: a member update within `quietPeriod` of the member's last rule change continues it;
/// anything else (a join, a level, a verification, a sweep, a rule added or removed) starts a
/// new one. At `maxDepth` changes the chain stops: the rules change nothing more for that member
/// until a new chain starts, and the loop is reported once (`Loop`, at most one an
/// `alertInterval` for the same member and rules).
///
/// ```swift
/// var chains = RuleChains()
/// chains.begin(key, .memberUpdate, now: now)
/// switch chains.record(RuleChains.Link(rule: 3, role: regular, added: true), for: key, now: now) {
/// case .apply: …                    // give the role
/// case .stop(let loop): …           // give nothing; alert when `loop` is set
/// }
/// ```
struct RuleChains: Sendable {
    /// One change in a chain: the rule that made it, the role, given or taken.
    struct Link: Sendable, Equatable {
        var rule: Int64
        var role: RoleID
        var added: Bool
    }

    /// What started an evaluation.
    enum Trigger: Sendable, Equatable {
        /// A member update: a rule's change coming back, when it follows one closely.
        case memberUpdate
        /// Anything else: a join, a level, a verification, a sweep, a rule changed.
        case other

        /// One evaluation for both: `other` wins, as it starts a new chain.
        func merged(with other: Trigger) -> Trigger {
            self == .other || other == .other ? .other : .memberUpdate
        }
    }

    enum Decision: Sendable, Equatable {
        case apply
        /// Not applied: the chain reached `maxDepth`. The loop to report, the first time only
        /// (and at most once an `alertInterval` for the same member and rules).
        case stop(Loop?)
    }

    /// A chain stopped at `maxDepth`.
    struct Loop: Sendable, Equatable {
        var guild: GuildID
        var user: UserID
        var links: [Link]

        /// "role rules looped for member 7 in guild 1: #3 (+@Regular) → #4 (−@Member) → …; stopped at depth 10".
        func description(roleName: (RoleID) -> String) -> String {
            let chain = links.map { "#\($0.rule) (\($0.added ? "+" : "−")@\(roleName($0.role)))" }.joined(separator: " → ")
            return "role rules looped for member \(user) in guild \(guild): \(chain) → …; stopped at depth \(links.count)"
        }
    }

    struct MemberKey: Hashable, Sendable {
        var guild: GuildID
        var user: UserID
    }

    static let maxDepth = 10
    /// How long after a rule's change a member update still counts as caused by it, and how long
    /// a stopped chain waits without updates before rules may change the member again.
    static let quietPeriod: TimeInterval = 60
    static let alertInterval: TimeInterval = 3600

    private struct Chain {
        var links: [Link] = []
        var lastActivity: Date
        var stopped = false
    }

    private var chains: [MemberKey: Chain] = [:]
    /// When each loop (member and rules) was last reported.
    private var alerted: [String: Date] = [:]
    /// Chains are pruned when there are more than this many (members changed in the last minute).
    private var pruneAbove = 256

    /// An evaluation of `member` starts.
    mutating func begin(_ member: MemberKey, _ trigger: Trigger, now: Date) {
        guard var chain = chains[member] else { return }
        if trigger == .other || now.timeIntervalSince(chain.lastActivity) > Self.quietPeriod {
            chains[member] = nil
            return
        }
        if chain.stopped {
            // Updates keep a stopped chain stopped: the quiet period counts from the last one.
            chain.lastActivity = now
            chains[member] = chain
        }
    }

    /// Whether the rules may make `link` now, in the chain the current evaluation continues.
    mutating func record(_ link: Link, for member: MemberKey, now: Date) -> Decision {
        var chain = chains[member] ?? Chain(lastActivity: now)
        defer {
            chains[member] = chain
            prune(now: now)
        }
        chain.lastActivity = now
        if chain.stopped { return .stop(nil) }
        guard chain.links.count >= Self.maxDepth else {
            chain.links.append(link)
            return .apply
        }
        chain.stopped = true
        let signature = "\(member.guild)/\(member.user)/" + Set(chain.links.map(\.rule)).sorted().map(String.init).joined(separator: ",")
        if let last = alerted[signature], now.timeIntervalSince(last) < Self.alertInterval { return .stop(nil) }
        alerted = alerted.filter { now.timeIntervalSince($0.value) < Self.alertInterval }
        alerted[signature] = now
        return .stop(Loop(guild: member.guild, user: member.user, links: chain.links))
    }

    /// The changes in `member`'s current chain.
    func depth(of member: MemberKey) -> Int { chains[member]?.links.count ?? 0 }

    func isStopped(_ member: MemberKey) -> Bool { chains[member]?.stopped ?? false }

    private mutating func prune(now: Date) {
        guard chains.count > pruneAbove else { return }
        chains = chains.filter { now.timeIntervalSince($0.value.lastActivity) <= Self.quietPeriod }
        pruneAbove = max(256, chains.count * 2)
    }
}
