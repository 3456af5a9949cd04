import FoundationEssentials

/// A role connection: the bot gives `target` to a member while the rule's conditions hold, and
/// takes it away when they stop holding.
struct RoleRule: Sendable, Equatable, Codable {
    enum Combinator: String, Sendable, Codable {
        /// Every condition holds.
        case all
        /// At least one holds.
        case any
    }

    enum Condition: Sendable, Equatable, Codable, CustomStringConvertible {
        case hasRole(RoleID)
        case lacksRole(RoleID)
        case hasAnyRole([RoleID])
        case levelAtLeast(Int)
        case verified
        case accountAgeAtLeast(days: Int)
        case memberForAtLeast(days: Int)

        var description: String {
            switch self {
            case .hasRole(let role): "has <@&\(role)>"
            case .lacksRole(let role): "lacks <@&\(role)>"
            case .hasAnyRole(let roles): "has any of " + roles.map { "<@&\($0)>" }.joined(separator: ", ")
            case .levelAtLeast(let level): "level \(level) or more"
            case .verified: "verified"
            case .accountAgeAtLeast(let days): "account at least \(days) days old"
            case .memberForAtLeast(let days): "member for at least \(days) days"
            }
        }

        /// The roles it looks at.
        var roles: [RoleID] {
            switch self {
            case .hasRole(let role), .lacksRole(let role): [role]
            case .hasAnyRole(let roles): roles
            default: []
            }
        }

        var isNegative: Bool {
            if case .lacksRole = self { true } else { false }
        }
    }

    var id: Int64?
    var guild: GuildID
    var target: RoleID
    var combinator: Combinator
    var conditions: [Condition]

    var description: String {
        "<@&\(target)> while " + conditions.map(\.description).joined(separator: combinator == .all ? " and " : " or ")
    }
}

/// What the rules need to know of a member to decide.
struct MemberFacts: Sendable, Equatable {
    var user: UserID
    var roles: Set<RoleID>
    var level: Int
    var verified: Bool
    var joinedAt: Date?
    /// Bots are never given roles by rules.
    var isBot: Bool = false
    /// Membership screening not passed: nothing is granted, nothing taken.
    var pending: Bool = false

    var accountCreatedAt: Date { user.createdAt }
}

/// The rule engine: pure functions, so that every condition, both combinators and the planning of
/// role changes are unit tested without Discord.
enum RuleEngine {
    static func holds(_ condition: RoleRule.Condition, for member: MemberFacts, now: Date) -> Bool {
        switch condition {
        case .hasRole(let role): member.roles.contains(role)
        case .lacksRole(let role): !member.roles.contains(role)
        case .hasAnyRole(let roles): !member.roles.isDisjoint(with: roles)
        case .levelAtLeast(let level): member.level >= level
        case .verified: member.verified
        case .accountAgeAtLeast(let days): now.timeIntervalSince(member.accountCreatedAt) >= Double(days) * 86400
        case .memberForAtLeast(let days): member.joinedAt.map { now.timeIntervalSince($0) >= Double(days) * 86400 } ?? false
        }
    }

    static func holds(_ rule: RoleRule, for member: MemberFacts, now: Date) -> Bool {
        guard !rule.conditions.isEmpty else { return false }
        switch rule.combinator {
        case .all: return rule.conditions.allSatisfy { holds($0, for: member, now: now) }
        case .any: return rule.conditions.contains { holds($0, for: member, now: now) }
        }
    }

    struct Plan: Sendable, Equatable {
        var add: Set<RoleID> = []
        var remove: Set<RoleID> = []
        var isEmpty: Bool { add.isEmpty && remove.isEmpty }
    }

    /// The role changes that bring `member` in line with `rules`. A role is managed by the rules
    /// that target it: the member should have it exactly when at least one of them holds. Roles no
    /// rule targets are never touched; bots and members still in screening are left alone.
    ///
    /// Rules are evaluated against the member's roles as they are now, so applying the plan and
    /// planning again gives an empty plan whenever the rules are free of oscillation (which
    /// `RuleEngine.oscillation` checks when a rule is added).
    static func plan(_ rules: [RoleRule], for member: MemberFacts, now: Date) -> Plan {
        guard !member.isBot, !member.pending else { return Plan() }
        var plan = Plan()
        let targets = Set(rules.map(\.target))
        for target in targets {
            let wanted = rules.contains { $0.target == target && holds($0, for: member, now: now) }
            let has = member.roles.contains(target)
            if wanted, !has { plan.add.insert(target) }
            if !wanted, has { plan.remove.insert(target) }
        }
        return plan
    }

    /// Why adding `rule` to `existing` could make roles flip back and forth, or nil when it cannot.
    ///
    /// A rule's target depends on the roles its conditions look at. Giving or taking a role can
    /// change whether another rule holds; the assignments settle unless there is a cycle of such
    /// dependencies through a `lacks` condition (A gives X while lacking Y, B gives Y while having
    /// X: X on → Y on → X off → Y off → …). A rule that looks at its own target is the shortest
    /// such cycle, and is refused whatever its sign, as a rule "give X while having X" never
    /// starts and "while lacking X" never stops.
    ///
    /// A cycle of `has` only is allowed, though it does not always settle: with "X while having Y"
    /// and "Y while having X", a member holding only one of them gets both swapped at every
    /// evaluation. `RuleChains` stops that (and any other loop) at depth 10, with an alert.
    static func oscillation(adding rule: RoleRule, to existing: [RoleRule]) -> String? {
        if rule.conditions.contains(where: { $0.roles.contains(rule.target) }) {
            return "the rule looks at its own role <@&\(rule.target)>: it would give and take it back at once"
        }
        let rules = existing.filter { $0.guild == rule.guild } + [rule]
        // Edges: condition role → target role, marked negative for `lacks`.
        var edges: [RoleID: [(to: RoleID, negative: Bool)]] = [:]
        for r in rules {
            for condition in r.conditions {
                for role in condition.roles {
                    edges[role, default: []].append((r.target, condition.isNegative))
                }
            }
        }
        // A negative edge u → v on a cycle: v reaches u again.
        func reaches(_ from: RoleID, _ to: RoleID) -> Bool {
            var seen: Set<RoleID> = [from]
            var stack = [from]
            while let next = stack.popLast() {
                if next == to { return true }
                for edge in edges[next] ?? [] where seen.insert(edge.to).inserted {
                    stack.append(edge.to)
                }
            }
            return false
        }
        for (from, outgoing) in edges {
            for edge in outgoing where edge.negative && reaches(edge.to, from) {
                return "with the existing rules, <@&\(edge.to)> depends on lacking <@&\(from)>, which depends on <@&\(edge.to)>: the two roles would flip back and forth"
            }
        }
        return nil
    }
}

/// How many rules a server may have, as RoleLogic allows: every member update evaluates them
/// all, and past a hundred nobody can tell any more which rule gave what.
enum RuleLimit {
    static let perGuild = 100

    /// Why one more rule is refused when the server has `existing`, or nil when it fits.
    static func refusal(existing: Int) -> String? {
        guard existing >= perGuild else { return nil }
        return "The rule was not added: this server has \(existing) rules, and \(perGuild) is the most a server can have. "
            + "Remove one with /roleconnection remove rule:<number> (the numbers are in /roleconnection list), then add this one again."
    }
}
