import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// The three features end to end: gateway events and interactions from the sandbox, the REST
/// calls the bot makes back, and what it stores.
@Suite(.serialized) struct FeatureTests {
    /// A running bot on the sandbox, and the names of the sandbox guild's roles and channels.
    struct Bot {
        let harness: SupervisorHarness
        let sandbox: SandboxClient
        let roles: [String: String]
        let channels: [String: String]
        let owner: String

        /// - Parameter config: merged over the harness's; `DIR` in it names the harness's directory.
        init(config: [String: Any] = [:]) async throws {
            let harness = try SupervisorHarness(config: config)
            try harness.rewriteConfig { $0.replacingOccurrences(of: "DIR", with: harness.dir) }
            try harness.startReady()
            let status = try harness.waitForStatus(timeout: .seconds(30), "the gateway connected") {
                $0.worker.discord?.gatewayState == "connected" && $0.worker.discord?.guilds == 1
            }
            try await self.init(harness: harness, sandbox: SandboxClient(baseURL: try #require(status.worker.discord?.sandboxURL)))
        }

        /// A bot already running (in `discord` mode against `sandbox`, say) and connected.
        init(harness: SupervisorHarness, sandbox: SandboxClient) async throws {
            self.harness = harness
            self.sandbox = sandbox
            let guild = try await sandbox.get("/sandbox/state")["guild"] ?? .null
            roles = Dictionary(uniqueKeysWithValues: (guild["roles"]?.arrayValue ?? []).compactMap { role in
                role["name"]?.stringValue.flatMap { name in role["id"]?.stringValue.map { (name, $0) } }
            })
            channels = Dictionary(uniqueKeysWithValues: (guild["channels"]?.arrayValue ?? []).compactMap { channel in
                channel["name"]?.stringValue.flatMap { name in channel["id"]?.stringValue.map { (name, $0) } }
            })
            let ownerRole = roles["Owner"] ?? ""
            owner = try #require((guild["members"]?.arrayValue ?? []).first {
                $0["roles"]?.arrayValue.contains(.string(ownerRole)) == true
            }?["user"]?["id"]?.stringValue)
        }

        /// Runs a slash command as `user` and returns the bot's first answer.
        func command(_ name: String, as user: String? = nil, _ options: [JSONValue]) async throws -> JSONValue {
            let interaction = try await sandbox.post("/sandbox/interaction", .object([
                "user": .string(user ?? owner), "kind": .string("command"), "name": .string(name), "options": .array(options),
            ]))
            return try await answer(to: try #require(interaction["id"]?.stringValue))
        }

        func press(_ customID: String, as user: String, message: String? = nil) async throws -> JSONValue {
            var body: [String: JSONValue] = ["user": .string(user), "kind": .string("button"), "customID": .string(customID)]
            if let message { body["message"] = .string(message) }
            let interaction = try await sandbox.post("/sandbox/interaction", .object(body))
            return try await answer(to: try #require(interaction["id"]?.stringValue))
        }

        func answer(to id: String) async throws -> JSONValue {
            var last: JSONValue = .null
            try await waitUntilAsync(timeout: .seconds(10), "the answer to interaction \(id)") {
                last = (try? await sandbox.get("/sandbox/interactions/\(id)")) ?? .null
                return !(last["responses"]?.arrayValue.isEmpty ?? true)
            }
            return last["responses"]?.arrayValue.first?["data"] ?? .null
        }

        func member(_ user: String) async throws -> JSONValue {
            let members = try await sandbox.get("/sandbox/state")["guild"]?["members"]?.arrayValue ?? []
            return members.first { $0["user"]?["id"]?.stringValue == user } ?? .null
        }

        func roles(of user: String) async throws -> Set<String> {
            Set(try await member(user)["roles"]?.arrayValue.compactMap(\.stringValue) ?? [])
        }

        /// Waits until `user`'s roles satisfy `condition`.
        func waitForRoles(_ user: String, _ what: String, _ condition: @escaping (Set<String>) -> Bool) async throws {
            try await waitUntilAsync(timeout: .seconds(10), what) { condition((try? await roles(of: user)) ?? []) }
        }

        func join(accountAgeDays: Double) async throws -> String {
            let joined = try await sandbox.post("/sandbox/join", .object(["count": .integer(1), "accountAgeDays": .number(accountAgeDays)]))
            return try #require(joined["members"]?.arrayValue.first?["user"]?["id"]?.stringValue)
        }

        func roleChanges(of user: String) async throws -> [JSONValue] {
            (try await sandbox.get("/sandbox/state")["roleChanges"]?.arrayValue ?? []).filter { $0["user"]?.stringValue == user }
        }

        static func option(_ name: String, _ type: Int, _ value: JSONValue) -> JSONValue {
            .object(["name": .string(name), "type": .integer(type), "value": value])
        }

        static func sub(_ name: String, _ options: [JSONValue]) -> JSONValue {
            .object(["name": .string(name), "type": .integer(1), "options": .array(options)])
        }
    }

    @Test func verificationGivesTheUnverifiedRoleThenTheVerifiedOneAndRefusesYoungAccounts() async throws {
        let bot = try await Bot()
        let setup = try await bot.command("verification", [Bot.sub("setup", [
            Bot.option("channel", 7, .string(bot.channels["verify"]!)),
            Bot.option("verified_role", 8, .string(bot.roles["Verified"]!)),
            Bot.option("unverified_role", 8, .string(bot.roles["Unverified"]!)),
            Bot.option("min_account_age_days", 4, .integer(30)),
        ])])
        #expect(setup["content"]?.stringValue?.contains("Verification is set up") == true)
        // The button message was posted in the verify channel.
        let messages = try await bot.sandbox.get("/sandbox/state")["messages"]?.arrayValue ?? []
        #expect(messages.contains { $0["channel_id"]?.stringValue == bot.channels["verify"] && $0["components"] != nil })

        // A new member gets the unverified role; pressing Verify swaps it for the verified one.
        let member = try await bot.join(accountAgeDays: 400)
        try await bot.waitForRoles(member, "the unverified role") { $0.contains(bot.roles["Unverified"]!) }
        let answer = try await bot.press("verification:verify", as: member)
        #expect(answer["content"]?.stringValue == "You are verified. Welcome!")
        #expect(answer["flags"]?.intValue == 64)
        #expect(try await bot.roles(of: member) == [bot.roles["Verified"]!])
        // Pressing again changes nothing and says so.
        #expect(try await bot.press("verification:verify", as: member)["content"]?.stringValue == "You are already verified.")

        // An account of 3 days is refused with the date it may verify.
        let young = try await bot.join(accountAgeDays: 3)
        let refused = try await bot.press("verification:verify", as: young)
        #expect(refused["content"]?.stringValue?.contains("too new") == true)
        #expect(try await bot.roles(of: young).contains(bot.roles["Verified"]!) == false)

        // Membership screening: nothing while pending; the unverified role once it is passed.
        let screened = try await bot.sandbox.post("/sandbox/join", .object(["count": .integer(1), "pending": .bool(true), "accountAgeDays": .number(400)]))
        let newcomer = try #require(screened["members"]?.arrayValue.first?["user"]?["id"]?.stringValue)
        let probe = try await bot.command("rank", as: newcomer, [])  // processed after the join
        #expect(probe["content"] != nil)
        #expect(try await bot.roles(of: newcomer).isEmpty)
        try await bot.sandbox.post("/sandbox/member", .object(["user": .string(newcomer), "pending": .bool(false)]))
        try await bot.waitForRoles(newcomer, "the unverified role after screening") { $0 == [bot.roles["Unverified"]!] }

        // Every attempt is stored.
        #expect(try bot.harness.sqlite("SELECT COUNT(*) FROM verification_attempts") == "3")
        #expect(try bot.harness.sqlite("SELECT group_concat(outcome, ',') FROM (SELECT outcome FROM verification_attempts ORDER BY id)") == "verified,already-verified,too-young")
        #expect(try bot.harness.sqlite("SELECT COUNT(*) FROM verified_members") == "1")
        let status = try await bot.command("verification", [Bot.sub("status", [Bot.option("member", 6, .string(member))])])
        #expect(status["content"]?.stringValue?.contains("is verified since") == true)
        // The admin action is in audit.log with guild, user and command.
        #expect(bot.harness.log("audit").contains { $0["command"] as? String == "verification setup" && $0["user_id"] as? String == bot.owner })
        #expect(try bot.harness.terminate() == 0)
    }

    @Test func xpLevelsUpWithCooldownRewardsAnnouncesAndFiresRoleRules() async throws {
        let bot = try await Bot()
        // 60 XP a message, once an hour: the second message earns nothing.
        _ = try await bot.command("levels", [Bot.sub("config", [
            Bot.option("min_xp", 4, .integer(60)), Bot.option("max_xp", 4, .integer(60)), Bot.option("cooldown_seconds", 4, .integer(3600)),
            Bot.option("announce_channel", 7, .string(bot.channels["levels"]!)),
        ])])
        let reward = try await bot.command("levels", [.object(["name": .string("reward"), "type": .integer(2), "options": .array([
            Bot.sub("add", [Bot.option("level", 4, .integer(1)), Bot.option("role", 8, .string(bot.roles["Regular"]!))]),
        ])])])
        #expect(reward["content"]?.stringValue?.contains("level 1") == true)
        // A role connection: Member while at level 1 or more.
        let rule = try await bot.command("roleconnection", [Bot.sub("add", [
            Bot.option("role", 8, .string(bot.roles["Member"]!)), Bot.option("min_level", 4, .integer(1)),
        ])])
        #expect(rule["content"]?.stringValue?.hasPrefix("Rule #1 added") == true)

        let member = try await bot.join(accountAgeDays: 400)
        for _ in 0..<2 {
            try await bot.sandbox.post("/sandbox/message", .object(["user": .string(member), "content": .string("hello")]))
        }
        try await waitUntilAsync(timeout: .seconds(10), "two messages counted") {
            (try? bot.harness.sqlite("SELECT messages FROM xp_members WHERE user_id = '\(member)'")) == "2"
        }
        #expect(try bot.harness.sqlite("SELECT xp FROM xp_members WHERE user_id = '\(member)'") == "60")

        // Cooldown off: the next message makes 120 XP, level 1.
        _ = try await bot.command("levels", [Bot.sub("config", [Bot.option("cooldown_seconds", 4, .integer(0))])])
        try await bot.sandbox.post("/sandbox/message", .object(["user": .string(member), "content": .string("again")]))
        try await bot.waitForRoles(member, "the level reward and the rule's role") {
            $0.contains(bot.roles["Regular"]!) && $0.contains(bot.roles["Member"]!)
        }
        #expect(try bot.harness.sqlite("SELECT level FROM xp_members WHERE user_id = '\(member)'") == "1")
        try await waitUntilAsync(timeout: .seconds(10), "the announcement") {
            let messages = (try? await bot.sandbox.get("/sandbox/state")["messages"]?.arrayValue) ?? []
            return messages.contains { $0["channel_id"]?.stringValue == bot.channels["levels"] && $0["content"]?.stringValue == "GG <@\(member)>, you reached level 1!" }
        }

        // XP taken away below the level: the reward and the rule's role go.
        let removed = try await bot.command("xp", [Bot.sub("remove", [Bot.option("member", 6, .string(member)), Bot.option("amount", 4, .integer(100))])])
        #expect(removed["content"]?.stringValue?.contains("20 XP") == true)
        try await bot.waitForRoles(member, "both roles taken back") {
            !$0.contains(bot.roles["Regular"]!) && !$0.contains(bot.roles["Member"]!)
        }
        // No loop on the bot's own GUILD_MEMBER_UPDATEs: exactly four changes, even after more traffic.
        try await bot.sandbox.post("/sandbox/message", .object(["user": .string(member), "content": .string("probe")]))
        try await waitUntilAsync(timeout: .seconds(10), "the probe counted") {
            (try? bot.harness.sqlite("SELECT messages FROM xp_members WHERE user_id = '\(member)'")) == "4"
        }
        #expect(try await bot.roleChanges(of: member).count == 4)
        let rank = try await bot.command("rank", as: member, [])
        #expect(rank["content"]?.stringValue?.contains("level 0") == true)
        #expect(try bot.harness.terminate() == 0)
    }

    @Test func roleRulesFollowVerificationAndAreRevertedWhenTheConditionStops() async throws {
        let bot = try await Bot()
        _ = try await bot.command("verification", [Bot.sub("setup", [
            Bot.option("channel", 7, .string(bot.channels["verify"]!)),
            Bot.option("verified_role", 8, .string(bot.roles["Verified"]!)),
        ])])
        // Veteran while verified and lacking Unverified.
        let added = try await bot.command("roleconnection", [Bot.sub("add", [
            Bot.option("role", 8, .string(bot.roles["Veteran"]!)), Bot.option("verified", 5, .bool(true)),
            Bot.option("lacks_role", 8, .string(bot.roles["Unverified"]!)),
        ])])
        #expect(added["content"]?.stringValue?.contains("added") == true)
        // Refused: a role above the bot, and a rule that would flip Veteran back and forth.
        let above = try await bot.command("roleconnection", [Bot.sub("add", [
            Bot.option("role", 8, .string(bot.roles["Owner"]!)), Bot.option("min_level", 4, .integer(1)),
        ])])
        #expect(above["content"]?.stringValue?.contains("not below the bot's highest role") == true)
        let flipping = try await bot.command("roleconnection", [Bot.sub("add", [
            Bot.option("role", 8, .string(bot.roles["Unverified"]!)), Bot.option("has_role", 8, .string(bot.roles["Veteran"]!)),
        ])])
        #expect(flipping["content"]?.stringValue?.contains("flip back and forth") == true)

        let member = try await bot.join(accountAgeDays: 400)
        _ = try await bot.press("verification:verify", as: member)
        try await bot.waitForRoles(member, "Veteran after verification") { $0.contains(bot.roles["Veteran"]!) }
        // The test sub-command explains, changing nothing.
        let test = try await bot.command("roleconnection", [Bot.sub("test", [Bot.option("member", 6, .string(member))])])
        #expect(test["content"]?.stringValue?.contains("#1 matches") == true)
        #expect(test["content"]?.stringValue?.contains("nothing would change") == true)

        // A moderator gives the member Unverified: the rule stops holding and Veteran goes.
        var roles = try await bot.roles(of: member)
        roles.insert(bot.roles["Unverified"]!)
        try await bot.sandbox.post("/sandbox/member", .object(["user": .string(member), "roles": .array(roles.map { .string($0) })]))
        try await bot.waitForRoles(member, "Veteran taken back") { !$0.contains(bot.roles["Veteran"]!) }
        // Rules survive a restart of the worker (which starts a new sandbox: same guild, new port).
        let before = try bot.harness.status().worker.pid
        #expect(try SupervisorHarness.cli(["restart-worker", "--socket", bot.harness.statusSocket]).status == 0)
        let restarted = try bot.harness.waitForStatus(timeout: .seconds(30), "the new worker connected") {
            $0.worker.pid != before && $0.worker.discord?.gatewayState == "connected" && $0.worker.discord?.guilds == 1
        }
        let next = SandboxClient(baseURL: try #require(restarted.worker.discord?.sandboxURL))
        let interaction = try await next.post("/sandbox/interaction", .object([
            "user": .string(bot.owner), "kind": .string("command"), "name": .string("roleconnection"), "options": .array([Bot.sub("list", [])]),
        ]))
        let id = try #require(interaction["id"]?.stringValue)
        var listed: JSONValue = .null
        try await waitUntilAsync(timeout: .seconds(10), "the rule list") {
            listed = (try? await next.get("/sandbox/interactions/\(id)")) ?? .null
            return !(listed["responses"]?.arrayValue.isEmpty ?? true)
        }
        #expect(listed["responses"]?.arrayValue.first?["data"]?["content"]?.stringValue?.contains("#1:") == true)
        #expect(try bot.harness.terminate() == 0)
    }
}
