import IPC
import NIOHTTP1

/// The control API under `/sandbox` (no auth), with which tests and benchmarks play the rest of
/// Discord: members joining and talking, buttons pressed, connections dropped, REST storms.
struct ControlRouter: Sendable {
    let sandbox: Sandbox

    /// `segments`: the path after `/sandbox`, split at `/`.
    func respond(to request: HTTPRequest, segments: [String]) -> HTTPOutcome {
        let body: JSONValue
        do throws(DiscordError) {
            body = try request.json() ?? .object([:])
        } catch {
            return .now(.error(error))
        }
        let route = (request.method, segments.joined(separator: "/"))
        if route.0 == .POST { sandbox.log("control action", ["action": .string(route.1)]) }
        switch route {
        case (.GET, "state"):
            return .now(.json(.ok, sandbox.withWorld { $0.stateJSON }))
        case (.POST, "flood"):
            let count = body["count"]?.int ?? 1000
            let channel = body["channel"]?.snowflake
            let perSecond = body["perSecond"]?.double ?? 0
            // "guilds": "all" spreads the messages round-robin over every guild.
            let allGuilds = body["guilds"]?.stringValue == "all"
            let sandbox = sandbox
            return .later { await sandbox.flood(count: count, channel: channel, perSecond: perSecond, allGuilds: allGuilds) }
        case (.GET, let path) where path.hasPrefix("interactions/") && segments.count == 2:
            let record = sandbox.withWorld { world in UInt64(segments[1]).flatMap { world.interactions[$0]?.json } }
            return .now(record.map { .json(.ok, $0) } ?? .error(.unknownInteraction))
        default:
            break
        }
        return .now(sandbox.withWorld { world in
            do throws(DiscordError) {
                return .json(.ok, try world.control(route.0, route.1, body, rateClock: DiscordTime.nowSeconds()))
            } catch {
                return .error(error)
            }
        })
    }
}

extension SandboxWorld {
    /// The control actions that are one change of the world.
    mutating func control(_ method: HTTPMethod, _ path: String, _ body: JSONValue, rateClock now: Double) throws(DiscordError) -> JSONValue {
        func user() throws(DiscordError) -> UInt64 {
            guard let id = body["user"]?.snowflake else {
                throw .invalidForm(field: "user", code: "BASE_TYPE_REQUIRED", message: "This field is required")
            }
            return id
        }
        switch (method, path) {
        case (.POST, "join"):
            if let former = body["user"]?.snowflake {
                return .object(["members": .array([SandboxGuild.json(try rejoin(user: former))])])
            }
            let members = join(count: body["count"]?.int ?? 1, pending: body["pending"]?.bool ?? false, accountAgeDays: body["accountAgeDays"]?.double)
            return .object(["members": .array(members.map { SandboxGuild.json($0) })])
        case (.POST, "member"):
            let roles = body["roles"]?.array.map { $0.compactMap(\.snowflake) }
            return SandboxGuild.json(try editMember(user: try user(), pending: body["pending"]?.bool, roles: roles))
        case (.POST, "leave"):
            try leave(user: try user())
            return .object(["left": .id(try user())])
        case (.POST, "attachments"):
            // A member's upload, for an ATTACHMENT option: {"filename", "content"} (text) → the
            // attachment object, whose id goes in the option's value.
            guard let filename = body["filename"]?.stringValue, !filename.isEmpty, !filename.contains("/") else {
                throw .invalidForm(field: "filename", code: "BASE_TYPE_REQUIRED", message: "This field is required")
            }
            let content = Array((body["content"]?.stringValue ?? "").utf8)
            return store(UploadedFile(field: "files[0]", filename: filename, contentType: body["contentType"]?.stringValue ?? "text/plain", bytes: content))
        case (.POST, "voice"):
            // {"user", "channel": id or null to leave, "selfMute", "selfDeaf", "mute", "deaf"}
            return try setVoice(
                user: try user(), channel: body["channel"]?.snowflake, selfMute: body["selfMute"]?.bool,
                selfDeaf: body["selfDeaf"]?.bool, mute: body["mute"]?.bool, deaf: body["deaf"]?.bool
            )
        case (.POST, "message"):
            // A member of the channel's guild (guild 0 by default) writes in it.
            let channel = body["channel"]?.snowflake ?? guild.channel(named: "general").id
            guard let author = (guild(ofChannel: channel) ?? guild).members[try user()]?.user else { throw .unknownMember }
            return try postMessage(channel: channel, author: author, content: body["content"]?.stringValue ?? "")
        case (.POST, "interaction"):
            guard let kind = InteractionKind(rawValue: body["kind"]?.stringValue ?? "command") else {
                throw .invalidForm(field: "kind", code: "BASE_TYPE_CHOICES", message: "Value must be one of (command, button, modal).")
            }
            // A modal: {"customID", "fields": {"<text input custom_id>": "<value>"}}.
            let fields: [String: String]? = if case .object(let given)? = body["fields"] { given.compactMapValues(\.stringValue) } else { nil }
            let record = try createInteraction(
                user: try user(), kind: kind, name: body["name"]?.stringValue, options: body["options"],
                customID: body["customID"]?.stringValue, channel: body["channel"]?.snowflake, message: body["message"]?.snowflake,
                fields: fields
            )
            return .object(["id": .id(record.id), "token": .string(record.token)])
        case (.POST, "guild"):
            // The guild's settings: {"verificationLevel": 0…4}, then GUILD_UPDATE.
            if let level = body["verificationLevel"]?.int {
                guard (0...4).contains(level) else {
                    throw .invalidForm(field: "verificationLevel", code: "BASE_TYPE_CHOICES", message: "Value must be one of {0, 1, 2, 3, 4}.")
                }
                guild.verificationLevel = level
            }
            gateway.dispatch("GUILD_UPDATE", guild.json, to: .all, guild: guild.id)
            return guild.json
        case (.POST, "gateway/close"):
            let code = body["code"]?.int.map { UInt16(clamping: $0) }
            if let shard = body["shard"], shard != .null {
                // Only the connections of the sessions on that shard (a session without `shard` is
                // shard 0); with no code they drop, and their sessions stay resumable.
                guard let shardID = shard.int else {
                    throw .invalidForm(field: "shard", code: "NUMBER_TYPE_COERCE", message: "Value is not int.")
                }
                let closing = gateway.liveSessions(at: DiscordTime.nowMilliseconds())
                    .filter { ($0.shard?.id ?? 0) == shardID }.compactMap(\.connection)
                for connection in closing { connection.close(code: code) }
                return .object(["closed": .integer(closing.count)])
            }
            for connection in connections.values { connection.close(code: code) }
            return .object(["closed": .integer(connections.count)])
        case (.POST, "gateway/bot"):
            // {"shards": N?, "maxConcurrency": M?, "identifyWindowMs": W?}: what GET /gateway/bot says,
            // and the Identify rate-limit window (null/absent: unchanged).
            if let shards = body["shards"], shards != .null {
                guard let value = shards.int, value >= 1 else {
                    throw .invalidForm(field: "shards", code: "NUMBER_TYPE_MIN", message: "int value should be greater than or equal to 1.")
                }
                gateway.shardsOverride = value
            }
            if let concurrency = body["maxConcurrency"], concurrency != .null {
                guard let value = concurrency.int, value >= 1 else {
                    throw .invalidForm(field: "maxConcurrency", code: "NUMBER_TYPE_MIN", message: "int value should be greater than or equal to 1.")
                }
                gateway.maxConcurrency = value
            }
            var answer: [String: JSONValue] = ["shards": .integer(recommendedShards), "maxConcurrency": .integer(gateway.maxConcurrency)]
            if let window = body["identifyWindowMs"], window != .null {
                guard let value = window.int, value >= 0 else {
                    throw .invalidForm(field: "identifyWindowMs", code: "NUMBER_TYPE_MIN", message: "int value should be greater than or equal to 0.")
                }
                gateway.concurrencyWindow = UInt64(value)
                answer["identifyWindowMs"] = .integer(value)
            }
            return .object(answer)
        case (.POST, "guilds"):
            // {"count": K}: the bot joins K more light guilds (GUILD_CREATE to each one's shard).
            let count = body["count"]?.int ?? 1
            guard count >= 0, guildCount + count <= Self.maximumGuilds else {
                throw .invalidForm(field: "count", code: "NUMBER_TYPE_MAX", message: "The sandbox holds at most \(Self.maximumGuilds) guilds.")
            }
            let added = addGuilds(count)
            return .object(["guilds": .integer(guildCount), "added": .array(added.map(JSONValue.id))])
        case (.POST, "gateway/acks"):
            gateway.acksEnabled = body["enabled"]?.bool ?? true
            return .object(["enabled": .bool(gateway.acksEnabled)])
        case (.POST, "gateway/replay-overlap"):
            gateway.replayOverlap = max(0, body["count"]?.int ?? 0)
            return .object(["count": .integer(gateway.replayOverlap)])
        case (.POST, "gateway/reconnect"):
            return .object(["sent": .integer(sendToSessions("{\"op\":7,\"d\":null,\"s\":null,\"t\":null}"))])
        case (.POST, "gateway/invalid-session"):
            let resumable = body["resumable"]?.bool ?? false
            let sent = sendToSessions("{\"op\":9,\"d\":\(resumable),\"s\":null,\"t\":null}")
            if !resumable { gateway.endConnectedSessions() }
            return .object(["sent": .integer(sent)])
        case (.POST, "rest/storm"):
            let seconds = body["seconds"]?.double ?? 1
            rateLimits.startStorm(seconds: seconds, global: body["global"]?.bool ?? false, at: now)
            return .object(["until": .number(now + seconds)])
        case (.POST, "activity"):
            activityPerMinute = max(0, body["perMinute"]?.double ?? 0)
            return .object(["perMinute": .number(activityPerMinute)])
        default:
            throw .notFound
        }
    }

    static let maximumGuilds = 100_000

    /// GET /sandbox/state: the live sessions' shards (a session without `shard` shows as 0 of 1).
    var shardsJSON: JSONValue {
        .array(gateway.liveSessions(at: DiscordTime.nowMilliseconds())
            .sorted { ($0.shard?.count ?? 1, $0.shard?.id ?? 0, $0.id) < ($1.shard?.count ?? 1, $1.shard?.id ?? 0, $1.id) }
            .map { session in
                let (id, count) = (session.shard?.id ?? 0, session.shard?.count ?? 1)
                let guilds = guildCount(inShard: id, of: count)
                return .object([
                    "id": .integer(id), "count": .integer(count), "sessionID": .string(session.id),
                    "connected": .bool(session.connection != nil), "guilds": .integer(guilds), "sequence": .integer(session.sequence),
                ])
            })
    }

    /// GET /sandbox/state.
    var stateJSON: JSONValue {
        let members = guild.members.values.sorted { $0.user.id < $1.user.id }.map { member in
            JSONValue.object([
                "user": .object(["id": .id(member.user.id), "username": .string(member.user.username), "bot": .bool(member.user.bot)]),
                "roles": .array(member.roles.map(JSONValue.id)), "pending": .bool(member.pending),
                "joined_at": .string(DiscordTime.iso(member.joinedAt)),
            ])
        }
        let limit = gateway.sessionStartLimit(at: DiscordTime.nowMilliseconds())
        return .object([
            "guild": .object([
                "id": .id(guild.id), "name": .string(guild.name), "roles": guild.rolesJSON, "channels": guild.channelsJSON,
                "members": .array(members), "owner_id": .id(guild.ownerID),
            ]),
            "applicationID": .id(applicationID),
            "messages": .array(messages.map(\.json)),
            "interactions": .array(interactionOrder.compactMap { interactions[$0]?.json }),
            "commands": commands,
            "webhookMessages": .array(webhookMessages),
            "roleChanges": .array(roleChanges.map(\.json)),
            "voiceStates": .array(guild.voiceStates.values.sorted { $0.user < $1.user }.map { guild.voiceJSON($0, member: false) }),
            "gateway": .object([
                "connections": .integer(gateway.connectionsOpened), "open": .integer(connections.count),
                "sessions": .integer(gateway.connectedSessionIDs.count), "identifies": .integer(gateway.identifies),
                "resumes": .integer(gateway.resumes), "sessionStartRemaining": .integer(limit.remaining),
                "acksEnabled": .bool(gateway.acksEnabled),
                "resumableSessions": .integer(gateway.liveSessionIDs(at: DiscordTime.nowMilliseconds()).count),
                "memberMessages": .integer(gateway.memberMessages),
            ]),
            "rest": .object([
                "requests": .integer(rest.requests), "invalidRequests": .integer(rest.invalidRequests),
                "byRoute": .object(rest.byRoute.mapValues(JSONValue.integer)),
            ]),
            "activityPerMinute": .number(activityPerMinute),
            "guilds": .integer(guildCount),
            "shards": shardsJSON,
            "identifies": .array(gateway.identifyLog.map(\.json)),
            "identifyRefusals": .integer(gateway.identifyRefusals),
            "gatewayBot": .object(["shards": .integer(recommendedShards), "maxConcurrency": .integer(gateway.maxConcurrency)]),
        ])
    }
}
