import Foundation
import IPC
import TestSupport
import Testing

/// Role connections' limits on the real binaries: at most 100 rules a server, chains of rule
/// changes stopped at depth 10 with an alert in the supervisor, and the history of what the rules
/// changed and why.
@Suite(.serialized) struct RoleConnectionLimitTests {
    typealias Bot = FeatureTests.Bot

    @Test func theHundredAndFirstRuleIsRefused() async throws {
        let bot = try await Bot()
        let veteran = try #require(bot.roles["Veteran"])
        // Rules nobody meets, so that the sweep after each one changes nothing.
        for level in 1000..<1100 {
            let added = try await bot.command("roleconnection", [Bot.sub("add", [
                Bot.option("role", 8, .string(veteran)), Bot.option("min_level", 4, .integer(level)),
            ])])
            try #require(added["content"]?.stringValue?.contains("added") == true, "rule for level \(level): \(added)")
        }
        let refused = try await bot.command("roleconnection", [Bot.sub("add", [
            Bot.option("role", 8, .string(veteran)), Bot.option("min_level", 4, .integer(2000)),
        ])])
        let text = refused["content"]?.stringValue ?? ""
        #expect(text.contains("was not added"))
        #expect(text.contains("has 100 rules"))
        #expect(text.contains("/roleconnection remove"))
        // The list fits in one message, saying how many it leaves out.
        let list = try await bot.command("roleconnection", [Bot.sub("list", [])])
        #expect(list["content"]?.stringValue?.hasSuffix("more (100 of 100 rules).") == true)
        // Removing one makes room again.
        let removed = try await bot.command("roleconnection", [Bot.sub("remove", [Bot.option("rule", 4, .integer(1))])])
        #expect(removed["content"]?.stringValue?.contains("removed") == true)
        let again = try await bot.command("roleconnection", [Bot.sub("add", [
            Bot.option("role", 8, .string(veteran)), Bot.option("min_level", 4, .integer(2000)),
        ])])
        #expect(again["content"]?.stringValue?.contains("Rule #101 added") == true)
        #expect(try bot.harness.terminate() == 0)
    }

    @Test func rulesThatFlipEachOtherStopAtDepthTenWithAnAlertAndTheirHistory() async throws {
        let bot = try await Bot()
        let member = try #require(bot.roles["Member"]), regular = try #require(bot.roles["Regular"])
        // Regular while having Member, Member while having Regular: with only one of them, every
        // evaluation swaps the two.
        for (target, condition) in [(regular, member), (member, regular)] {
            let added = try await bot.command("roleconnection", [Bot.sub("add", [
                Bot.option("role", 8, .string(target)), Bot.option("has_role", 8, .string(condition)),
            ])])
            try #require(added["content"]?.stringValue?.contains("added") == true, "\(added)")
        }
        let user = try await bot.join(accountAgeDays: 400)
        try await bot.sandbox.post("/sandbox/member", .object(["user": .string(user), "roles": .array([.string(member)])]))

        let status = try bot.harness.waitForStatus(timeout: .seconds(20), "the loop alert") { status in
            status.alerts.contains { $0.message.contains("role rules looped for member \(user)") }
        }
        let alert = try #require(status.alerts.first { $0.message.contains("role rules looped for member \(user)") })
        #expect(alert.severity == .warning)
        #expect(alert.message.contains("#1 (+@Regular) → #2 (−@Member) → #2 (+@Member) → #1 (−@Regular)"))
        #expect(alert.message.hasSuffix("stopped at depth 10"))

        // The history lists the ten changes, with their rule and condition.
        let history = try await bot.command("roleconnection", [Bot.sub("history", [Bot.option("member", 6, .string(user))])])
        let lines = (history["content"]?.stringValue ?? "").split(separator: "\n").dropFirst()
        #expect(lines.count == 10)
        #expect(lines.first?.hasSuffix("+<@&\(regular)> by rule #1 (has <@&\(member)> now holds)") == true)
        #expect(lines.dropFirst().first?.hasSuffix("−<@&\(member)> by rule #2 (has <@&\(regular)> no longer holds)") == true)
        // Stopped: nothing more was changed by the time the history answered.
        let changes = try await bot.roleChanges(of: user).filter { $0["reason"]?.stringValue?.hasPrefix("role connection") == true }
        #expect(changes.count == 10)
        #expect(try bot.harness.terminate() == 0)
    }
}
