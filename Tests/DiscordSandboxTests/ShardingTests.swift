import IPC
import NIOCore
import NIOHTTP1
import Testing

@testable import DiscordSandbox

/// Many guilds over several Gateway shards: which guilds each shard's READY and GUILD_CREATEs
/// carry, where guild events go, 4011, `max_concurrency`, closing one shard, REST on light guilds.
///
/// Serialized: the many-guild cases are heavy for a debug build, and the rest of the sandbox's
/// tests run beside this suite. Timing at 10,000 guilds is `benchmarks/shards`' job, with the
/// release build and the real worker.
@Suite(.serialized) struct ShardingTests {
    /// A shard's connection after READY and every GUILD_CREATE it announced.
    struct Opened {
        var gateway: TestGateway
        var sessionID: String
        var guilds: [String]
        var created: [String]
    }

    /// Identifies shard `[id, count]` and reads READY and its GUILD_CREATEs (`brief`: only their
    /// ids are decoded).
    static func open(
        _ harness: SandboxHarness, shard: (Int, Int)?, intents: Int = 33283, brief: Bool = false, within seconds: Double = 30
    ) async throws -> Opened {
        let gateway = TestGateway.connect(harness, brief: brief ? ["GUILD_CREATE"] : [])
        gateway.send(harness.identifyPayload(intents: intents, shard: shard))
        let ready = try #require(await gateway.dispatch("READY", within: seconds))
        if let shard { #expect(ready["d"]?["shard"] == .array([.integer(shard.0), .integer(shard.1)])) }
        let guilds = try #require(ready["d"]?["guilds"]?.array).compactMap { $0["id"]?.stringValue }
        let created = await collect(gateway, "GUILD_CREATE", count: guilds.count, within: seconds).compactMap { $0["d"]?["id"]?.stringValue }
        return Opened(gateway: gateway, sessionID: ready["d"]?["session_id"]?.stringValue ?? "", guilds: guilds, created: created)
    }

    /// The next `count` dispatches of `type` (others skipped), or fewer at the deadline.
    static func collect(_ gateway: TestGateway, _ type: String, count: Int, within seconds: Double = 10) async -> [JSONValue] {
        let deadline = ContinuousClock.now + .seconds(seconds)
        var found: [JSONValue] = []
        while found.count < count, ContinuousClock.now < deadline {
            guard let payload = await gateway.next(within: 5) else { break }
            if payload["t"]?.stringValue == type { found.append(payload) }
        }
        return found
    }

    static func shard(of id: String, count: Int) -> Int { Int((UInt64(id)! >> 22) % UInt64(count)) }

    @Test func sixThousandGuildsSplitOverThreeShards() async throws {
        let harness = try await SandboxHarness(members: 12) { $0.guilds = 6000; $0.maxConcurrency = 3 }
        let bot = try await harness.rest(.GET, "/gateway/bot")
        #expect(bot.json?["shards"] == .integer(3))
        #expect(bot.json?["session_start_limit"]?["max_concurrency"] == .integer(3))

        var shards: [Opened] = []
        for id in 0..<3 { shards.append(try await Self.open(harness, shard: (id, 3), brief: true)) }
        var all = Set<String>()
        for (id, opened) in shards.enumerated() {
            #expect(opened.guilds.count == 2000)
            #expect(opened.guilds.allSatisfy { Self.shard(of: $0, count: 3) == id })
            #expect(opened.created == opened.guilds)
            #expect(all.isDisjoint(with: opened.guilds))
            all.formUnion(opened.guilds)
        }
        #expect(all.count == 6000)
        #expect(all.contains(harness.guildID))

        let state = try #require(try await harness.control(.GET, "/state").json)
        #expect(state["guilds"] == .integer(6000))
        let listed = try #require(state["shards"]?.array)
        #expect(listed.map { $0["id"] } == [.integer(0), .integer(1), .integer(2)])
        #expect(listed.allSatisfy { $0["count"] == .integer(3) && $0["guilds"] == .integer(2000) && $0["connected"] == .bool(true) })
        #expect(listed.allSatisfy { $0["sequence"] == .integer(2001) })  // READY and 2,000 GUILD_CREATE
        #expect(state["identifies"]?.array?.map { $0["accepted"] } == [.bool(true), .bool(true), .bool(true)])
        #expect(state["identifyRefusals"] == .integer(0))
        for opened in shards { opened.gateway.stop() }
        try await harness.shutdown()
    }

    @Test func aShardOverTheLimitIsClosedWith4011() async throws {
        let harness = try await SandboxHarness { $0.guilds = 30; $0.guildsPerShardLimit = 10; $0.maxConcurrency = 16 }
        #expect(try await harness.rest(.GET, "/gateway/bot").json?["shards"] == .integer(3))
        let unsharded = TestGateway.connect(harness)
        unsharded.send(harness.identifyPayload())
        #expect(await unsharded.closeCode() == .some(4011))
        let two = TestGateway.connect(harness)
        two.send(harness.identifyPayload(shard: (0, 2)))
        #expect(await two.closeCode() == .some(4011))
        let three = try await Self.open(harness, shard: (1, 3))
        #expect(three.guilds.count == 10)
        three.gateway.stop()
        try await harness.shutdown()
    }

    @Test func maxConcurrencyOneRefusesASecondIdentifyWithinTheWindow() async throws {
        // A window long enough that a loaded machine cannot stretch the two Identifies apart; it is
        // shortened below to see the refused one accepted once the window is over.
        let harness = try await SandboxHarness { $0.guilds = 4; $0.identifyWindowMilliseconds = 60_000 }
        let gateways = [TestGateway.connect(harness), TestGateway.connect(harness)]
        for gateway in gateways { #expect(await gateway.next()?["op"] == .integer(10)) }
        // Both at once: whichever the sandbox takes second is refused (key 0 for both).
        gateways[0].send(harness.identifyPayload(shard: (0, 2)))
        gateways[1].send(harness.identifyPayload(shard: (1, 2)))
        let answers = [try #require(await gateways[0].next()), try #require(await gateways[1].next())]
        #expect(answers.filter { $0["t"] == .string("READY") }.count == 1)
        let refusedIndex = try #require(answers.firstIndex { $0["op"] == .integer(9) })
        #expect(answers[refusedIndex]["d"] == .bool(false))

        let state = try #require(try await harness.control(.GET, "/state").json)
        let identifies = try #require(state["identifies"]?.array)
        #expect(identifies.map { $0["accepted"] } == [.bool(true), .bool(false)])
        #expect(identifies.last?["shard"] == .integer(refusedIndex))
        #expect(state["identifyRefusals"] == .integer(1))
        #expect(state["shards"]?.array?.count == 1)

        // The connection stayed open: once the window of key 0 is over, the same Identify is accepted.
        let window: UInt64 = 500
        let shortened = try await harness.control(.POST, "/gateway/bot", body: .object(["identifyWindowMs": .integer(Int(window))]))
        #expect(shortened.json?["identifyWindowMs"] == .integer(500))
        #expect(shortened.json?["maxConcurrency"] == .integer(1))
        let acceptedAt = UInt64(try #require(identifies[0]["at"]?.int))
        let now = DiscordTime.nowMilliseconds()
        if acceptedAt + window + 50 > now { try await Task.sleep(for: .milliseconds(Int64(acceptedAt + window + 50 - now))) }
        gateways[refusedIndex].send(harness.identifyPayload(shard: (refusedIndex, 2)))
        let ready = try #require(await gateways[refusedIndex].dispatch("READY"))
        #expect(ready["d"]?["shard"] == .array([.integer(refusedIndex), .integer(2)]))
        let after = try #require(try await harness.control(.GET, "/state").json)
        #expect(after["identifies"]?.array?.last?["accepted"] == .bool(true))
        #expect(after["identifyRefusals"] == .integer(1))
        for gateway in gateways { gateway.stop() }
        try await harness.shutdown()
    }

    @Test func maxConcurrencySixteenStartsSixteenShardsAtOnce() async throws {
        let harness = try await SandboxHarness { $0.guilds = 40; $0.maxConcurrency = 16; $0.identifyWindowMilliseconds = 60_000 }
        let gateways = (0..<17).map { _ in TestGateway.connect(harness) }
        for gateway in gateways { #expect(await gateway.next()?["op"] == .integer(10)) }
        for (id, gateway) in gateways.enumerated().prefix(16) { gateway.send(harness.identifyPayload(shard: (id, 17))) }
        for gateway in gateways.prefix(16) { #expect(await gateway.dispatch("READY") != nil) }
        // Shard 16's key is 16 % 16 = 0, which shard 0 used.
        gateways[16].send(harness.identifyPayload(shard: (16, 17)))
        let refused = try #require(await gateways[16].next())
        #expect(refused["op"] == .integer(9))
        #expect(refused["d"] == .bool(false))
        gateways[16].send("{\"op\":1,\"d\":null}")
        #expect(await gateways[16].next()?["op"] == .integer(11))  // still connected

        let state = try #require(try await harness.control(.GET, "/state").json)
        #expect(state["identifies"]?.array?.count == 17)
        #expect(state["identifies"]?.array?.filter { $0["accepted"] == .bool(true) }.count == 16)
        #expect(state["identifyRefusals"] == .integer(1))
        #expect(state["shards"]?.array?.count == 16)
        let bot = try await harness.control(.POST, "/gateway/bot", body: .object(["shards": .integer(17), "maxConcurrency": .integer(32)]))
        #expect(bot.json == .object(["shards": .integer(17), "maxConcurrency": .integer(32)]))
        let rest = try await harness.rest(.GET, "/gateway/bot")
        #expect(rest.json?["shards"] == .integer(17))
        #expect(rest.json?["session_start_limit"]?["max_concurrency"] == .integer(32))
        // Key 16 of 32 is free now.
        gateways[16].send(harness.identifyPayload(shard: (16, 17)))
        #expect(await gateways[16].dispatch("READY") != nil)
        for gateway in gateways { gateway.stop() }
        try await harness.shutdown()
    }

    @Test func guildEventsGoOnlyToTheShardThatOwnsTheGuild() async throws {
        let harness = try await SandboxHarness { $0.guilds = 10; $0.maxConcurrency = 2 }
        let shards = [try await Self.open(harness, shard: (0, 2)), try await Self.open(harness, shard: (1, 2))]
        #expect(shards[0].guilds.count + shards[1].guilds.count == 10)
        let (ownShard, lightChannel, otherChannel) = harness.sandbox.withWorld { world in
            let zero = SandboxWorld.shard(ofGuild: world.guild.id, count: 2)
            let other = world.guildIDs(inShard: 1 - zero, of: 2).first { $0 != world.guild.id }!
            return (zero, world.guild(withID: other)!.channels[0].id, world.guild.channel(named: "general").id)
        }
        let other = shards[1 - ownShard].gateway, own = shards[ownShard].gateway

        // A flood into a light guild on the other shard reaches that shard only; guild 0's next
        // message is the first thing guild 0's shard sees.
        let flood = try await harness.control(.POST, "/flood", body: .object(["count": .integer(5), "channel": .id(lightChannel)]))
        #expect(flood.json?["sent"] == .integer(5))
        #expect(flood.json?["sessions"] == .integer(1))
        let flooded = await Self.collect(other, "MESSAGE_CREATE", count: 5)
        #expect(flooded.count == 5)
        #expect(flooded.allSatisfy { $0["d"]?["channel_id"] == .id(lightChannel) })
        let user = try #require(harness.sandbox.withWorld { $0.guild.humans.first?.user.id })
        _ = try await harness.control(.POST, "/message", body: .object(["user": .id(user), "content": .string("guild zero")]))
        let next = try #require(await own.next())
        #expect(next["t"] == .string("MESSAGE_CREATE"))
        #expect(next["d"]?["channel_id"] == .id(otherChannel))

        // "guilds": "all": one message per guild, each on its guild's shard.
        let spread = try await harness.control(.POST, "/flood", body: .object(["count": .integer(20), "guilds": .string("all")]))
        #expect(spread.json?["sent"] == .integer(20))
        for (index, opened) in shards.enumerated() {
            let expected = opened.guilds.count * 2
            let messages = await Self.collect(opened.gateway, "MESSAGE_CREATE", count: expected)
            #expect(messages.count == expected)
            #expect(messages.allSatisfy { Self.shard(of: $0["d"]?["guild_id"]?.stringValue ?? "0", count: 2) == index })
            #expect(Set(messages.compactMap { $0["d"]?["guild_id"]?.stringValue }) == Set(opened.guilds))
        }

        // A guild added later: its GUILD_CREATE reaches its shard only.
        let added = try await harness.control(.POST, "/guilds", body: .object(["count": .integer(2)]))
        #expect(added.json?["guilds"] == .integer(12))
        for id in try #require(added.json?["added"]?.array).compactMap(\.stringValue) {
            let create = try #require(await shards[Self.shard(of: id, count: 2)].gateway.dispatch("GUILD_CREATE"))
            #expect(create["d"]?["id"] == .string(id))
        }
        for opened in shards { opened.gateway.stop() }
        try await harness.shutdown()
    }

    @Test func closingOneShardLeavesTheOtherReceiving() async throws {
        let harness = try await SandboxHarness { $0.guilds = 10; $0.maxConcurrency = 2 }
        let shards = [try await Self.open(harness, shard: (0, 2)), try await Self.open(harness, shard: (1, 2))]
        let closed = try await harness.control(.POST, "/gateway/close", body: .object(["shard": .integer(0)]))
        #expect(closed.json?["closed"] == .integer(1))
        #expect(await shards[0].gateway.closeCode() != nil)

        let channels = harness.sandbox.withWorld { world in
            (0..<2).map { shard in
                let id = world.guildIDs(inShard: shard, of: 2).first { $0 != world.guild.id }!
                return world.guild(withID: id)!.channels[0].id
            }
        }
        for channel in channels {
            let flood = try await harness.control(.POST, "/flood", body: .object(["count": .integer(3), "channel": .id(channel)]))
            #expect(flood.json?["sent"] == .integer(3))
        }
        let received = await Self.collect(shards[1].gateway, "MESSAGE_CREATE", count: 3)
        #expect(received.count == 3)
        #expect(received.allSatisfy { $0["d"]?["channel_id"] == .id(channels[1]) })

        let state = try #require(try await harness.control(.GET, "/state").json)
        let listed = try #require(state["shards"]?.array)
        #expect(listed.map { $0["connected"] } == [.bool(false), .bool(true)])

        // Shard 0's session was kept: its Resume replays what its guilds did meanwhile.
        let sequence = shards[0].guilds.count + 1
        let resumed = TestGateway.connect(harness, path: "/gateway-resume?v=10&encoding=json")
        resumed.send("{\"op\":6,\"d\":{\"token\":\"\(SandboxHarness.token)\",\"session_id\":\"\(shards[0].sessionID)\",\"seq\":\(sequence)}}")
        let replayed = await Self.collect(resumed, "MESSAGE_CREATE", count: 3)
        #expect(replayed.map { $0["s"] } == (1...3).map { .integer(sequence + $0) })
        #expect(replayed.allSatisfy { $0["d"]?["channel_id"] == .id(channels[0]) })
        #expect(await resumed.dispatch("RESUMED") != nil)
        resumed.stop()
        shards[1].gateway.stop()
        try await harness.shutdown()
    }

    @Test func restAnswersForLightGuildsAndUnknownGuildsAre10004() async throws {
        let harness = try await SandboxHarness { $0.guilds = 3 }
        let (light, channel, member, verified, bot, app) = harness.sandbox.withWorld { world in
            let guild = world.guild(withID: world.lightGuilds.id(at: 1))!
            return (String(guild.id), guild.channels[0].id, guild.humans[0].user.id, guild.roles[1].id, guild.bot.id, world.applicationID)
        }
        let fetched = try await harness.rest(.GET, "/guilds/\(light)")
        #expect(fetched.status == 200)
        #expect(fetched.json?["id"] == .string(light))
        #expect(fetched.json?["name"] == .string("Sandbox Guild 2"))
        #expect(fetched.json?["approximate_member_count"] == .integer(3))
        #expect(fetched.json?["roles"]?.array?.first?["name"] == .string("@everyone"))
        let own = try await harness.rest(.GET, "/guilds/\(light)/members/\(bot)")
        #expect(own.status == 200)
        #expect(own.json?["user"]?["id"] == .id(bot))
        let list = try await harness.rest(.GET, "/guilds/\(light)/members?limit=1000&after=0")
        #expect(list.json?.array?.count == 3)
        #expect(try await harness.rest(.GET, "/guilds/\(light)/channels").json?.array?.count == 1)

        let commands: JSONValue = .array([.object(["name": .string("rank"), "description": .string("Your level"), "type": .integer(1)])])
        let put = try await harness.rest(.PUT, "/applications/\(app)/guilds/\(light)/commands", body: commands)
        #expect(put.status == 200)
        #expect(put.json?.array?.first?["guild_id"] == .string(light))
        #expect(try await harness.rest(.GET, "/applications/\(app)/guilds/\(light)/commands").json == put.json)
        #expect(try await harness.rest(.GET, "/applications/\(app)/guilds/\(harness.guildID)/commands").json == .array([]))

        let posted = try await harness.rest(.POST, "/channels/\(channel)/messages", body: .object(["content": .string("hello")]))
        #expect(posted.status == 200)
        #expect(posted.json?["guild_id"] == .string(light))
        #expect(try await harness.rest(.PUT, "/guilds/\(light)/members/\(member)/roles/\(verified)").status == 204)
        let granted = try await harness.rest(.GET, "/guilds/\(light)/members/\(member)")
        #expect(granted.json?["roles"] == .array([.id(verified)]))

        for path in ["/guilds/12345", "/guilds/12345/members/\(bot)", "/guilds/12345/members?limit=10", "/guilds/12345/roles"] {
            let unknown = try await harness.rest(.GET, path)
            #expect(unknown.status == 404)
            #expect(unknown.json?["code"] == .integer(10004))
        }
        let unknownPut = try await harness.rest(.PUT, "/applications/\(app)/guilds/12345/commands", body: commands)
        #expect(unknownPut.json?["code"] == .integer(10004))
        try await harness.shutdown()
    }

    /// A light guild's GUILD_CREATE, written from a template, is its generic JSON, with the keys
    /// guild 0's has.
    @Test func lightGuildCreateIsTheGenericJSONWithGuildZerosKeys() throws {
        var configuration = SandboxConfiguration(members: 3, activityPerMinute: 0, logging: false)
        configuration.guilds = 50
        let sandbox = Sandbox(configuration: configuration)
        let pairs = sandbox.withWorld { world in
            [1, 2, 17, 49].flatMap { index in
                [true, false].map { allMembers in
                    (JSONValue.parse(world.lightGuilds.createEvent(index: index, allMembers: allMembers)),
                     world.lightGuilds[index].createEventJSON(allMembers: allMembers), allMembers)
                }
            }
        }
        for (written, generic, allMembers) in pairs {
            #expect(written != nil)
            #expect(written == JSONValue.parse(ByteBuffer(string: generic.jsonText)))
            #expect(written?["members"]?.array?.count == (allMembers ? 3 : 1))
        }
        let (zero, light) = sandbox.withWorld { world in
            (world.guild.createEventJSON(allMembers: true), world.lightGuilds[5].createEventJSON(allMembers: true))
        }
        guard case .object(let zeroKeys) = zero, case .object(let lightKeys) = light else {
            Issue.record("not objects")
            return
        }
        #expect(Set(zeroKeys.keys) == Set(lightKeys.keys))
        #expect(light["name"] == .string("Sandbox Guild 6"))
    }
}
