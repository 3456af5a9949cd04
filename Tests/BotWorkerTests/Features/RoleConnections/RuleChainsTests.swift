import FoundationEssentials
import Testing

@testable import BotWorker

@Suite struct RuleChainsTests {
    let member = RuleChains.MemberKey(guild: GuildID(1), user: UserID(7))
    let regular = RoleID(11), memberRole = RoleID(12)
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    /// Two `has` rules feeding each other: #1 gives Regular, #2 takes Member, #1 takes Regular,
    /// #2 gives Member, … one link at a time, each in an evaluation its predecessor caused.
    func flip(_ i: Int) -> RuleChains.Link {
        switch i % 4 {
        case 0: RuleChains.Link(rule: 1, role: regular, added: true)
        case 1: RuleChains.Link(rule: 2, role: memberRole, added: false)
        case 2: RuleChains.Link(rule: 2, role: memberRole, added: true)
        default: RuleChains.Link(rule: 1, role: regular, added: false)
        }
    }

    @Test func aLoopStopsAtDepthTenWithOneAlertNamingTheChain() throws {
        var chains = RuleChains()
        var now = start
        chains.begin(member, .memberUpdate, now: now)
        for i in 0..<RuleChains.maxDepth {
            now += 0.1
            if i > 0, i % 2 == 0 { chains.begin(member, .memberUpdate, now: now) }
            #expect(chains.record(flip(i), for: member, now: now) == .apply)
        }
        #expect(chains.depth(of: member) == 10)
        guard case .stop(let loop?) = chains.record(flip(10), for: member, now: now) else {
            Issue.record("the 11th change was not stopped with a loop to report")
            return
        }
        let names = [regular: "Regular", memberRole: "Member"]
        let text = loop.description { names[$0] ?? "?" }
        #expect(text.hasPrefix("role rules looped for member 7 in guild 1: #1 (+@Regular) → #2 (−@Member) → #2 (+@Member) → #1 (−@Regular) → #1 (+@Regular)"))
        #expect(text.hasSuffix("→ …; stopped at depth 10"))
        #expect(chains.isStopped(member))
        // Stopped: the updates that follow change nothing and raise nothing more.
        chains.begin(member, .memberUpdate, now: now + 1)
        #expect(chains.record(flip(11), for: member, now: now + 1) == .stop(nil))
    }

    @Test func somethingNotCausedByARuleOrAQuietPeriodStartsANewChain() {
        var chains = RuleChains()
        for i in 0...RuleChains.maxDepth { _ = chains.record(flip(i), for: member, now: start) }
        #expect(chains.isStopped(member))
        // A join, a level, a sweep: a new chain.
        chains.begin(member, .other, now: start + 1)
        #expect(chains.depth(of: member) == 0)
        #expect(chains.record(flip(0), for: member, now: start + 1) == .apply)

        for i in 1...RuleChains.maxDepth { _ = chains.record(flip(i), for: member, now: start + 1) }
        #expect(chains.isStopped(member))
        // Updates keep it stopped; a quiet period after the last one ends it.
        chains.begin(member, .memberUpdate, now: start + 30)
        #expect(chains.isStopped(member))
        chains.begin(member, .memberUpdate, now: start + 30 + RuleChains.quietPeriod + 1)
        #expect(!chains.isStopped(member))
        #expect(chains.record(flip(0), for: member, now: start + 100) == .apply)
    }

    @Test func anUpdateLongAfterTheLastRuleChangeIsNotCausedByIt() {
        var chains = RuleChains()
        for i in 0..<5 { _ = chains.record(flip(i), for: member, now: start) }
        chains.begin(member, .memberUpdate, now: start + 10)
        #expect(chains.depth(of: member) == 5)
        chains.begin(member, .memberUpdate, now: start + 10 + RuleChains.quietPeriod + 1)
        #expect(chains.depth(of: member) == 0)
    }

    @Test func theSameLoopIsReportedOnceAnHourOtherMembersApart() {
        var chains = RuleChains()
        func loop(_ key: RuleChains.MemberKey, at now: Date) -> RuleChains.Decision {
            chains.begin(key, .other, now: now)
            for i in 0..<RuleChains.maxDepth { _ = chains.record(flip(i), for: key, now: now) }
            return chains.record(flip(10), for: key, now: now)
        }
        guard case .stop(.some) = loop(member, at: start) else { Issue.record("first loop not reported"); return }
        #expect(loop(member, at: start + 600) == .stop(nil))  // the sweep 10 minutes later
        let other = RuleChains.MemberKey(guild: GuildID(1), user: UserID(8))
        guard case .stop(.some) = loop(other, at: start + 600) else { Issue.record("another member's loop not reported"); return }
        guard case .stop(.some) = loop(member, at: start + RuleChains.alertInterval + 1) else { Issue.record("not reported again after an hour"); return }
    }

    @Test func triggersMergeToTheOneThatStartsANewChain() {
        #expect(RuleChains.Trigger.memberUpdate.merged(with: .memberUpdate) == .memberUpdate)
        #expect(RuleChains.Trigger.memberUpdate.merged(with: .other) == .other)
        #expect(RuleChains.Trigger.other.merged(with: .memberUpdate) == .other)
    }

    @Test func theHundredAndFirstRuleIsRefusedSayingWhatToDo() throws {
        #expect(RuleLimit.refusal(existing: 0) == nil)
        #expect(RuleLimit.refusal(existing: 99) == nil)
        let refusal = try #require(RuleLimit.refusal(existing: 100))
        #expect(refusal.contains("has 100 rules"))
        #expect(refusal.contains("100 is the most"))
        #expect(refusal.contains("/roleconnection remove"))
    }
}
