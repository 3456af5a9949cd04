import IPC
import NIOCore

extension Sandbox {
    /// POST /sandbox/flood: `count` MESSAGE_CREATE from random members, as fast as the sockets take
    /// them (or `perSecond`). Batches of 256 are built and numbered under the lock and queued with one
    /// flush; the next batch waits until every socket is writable again. Answers once the last frame
    /// is written. Flood messages are not kept in `messages`.
    ///
    /// `channel` may be any guild's text channel (its members write). With `allGuilds` the messages
    /// go round-robin to every guild's text channel (guild 0's "general" or `channel`), each from a
    /// member of that guild, so every shard gets its share; each reaches only the sessions of its
    /// guild's shard.
    func flood(count: Int, channel: UInt64?, perSecond: Double, allGuilds: Bool = false) async -> HTTPReply {
        let clock = ContinuousClock()
        let start = clock.now
        let target: SandboxWorld.FloodTarget? = withWorld { world in
            var channelID = channel ?? world.guild.channel(named: "general").id
            // Round-robin from guild 0, whose share goes to its "general" unless `channel` is one of its own.
            if allGuilds, world.guild.channel(channelID) == nil { channelID = world.guild.channel(named: "general").id }
            guard let owner = world.guild(ofChannel: channelID) else { return nil }
            return SandboxWorld.FloodTarget(guildID: owner.id, channelID: channelID, authors: SandboxWorld.floodAuthors(of: owner))
        }
        guard let target else { return .error(.unknownChannel) }
        var cursor = 0
        log("flood started", ["count": .integer(count), "per_second": .number(perSecond)])
        // Paced floods go out in small batches every few milliseconds, not in bursts a tenth of a
        // second apart, so that a latency measured under them is the bot's and not the burst's.
        let batchSize = perSecond > 0 ? max(1, min(256, Int(perSecond / 500))) : 256
        var sent = 0
        var sessions = 0
        var first: Int?
        var last: Int?
        var lastWrites: [EventLoopFuture<Void>] = []
        while sent < count {
            let size = min(batchSize, count - sent)
            let (eligible, reached, delivered, queued) = withWorld { world in
                let batch = world.floodBatch(count: size, target: target, allGuilds: allGuilds, cursor: &cursor)
                return (batch.sessions, batch.reached, batch.delivered, batch.queued.map { ($0.0, $0.1, $0.first, $0.last) })
            }
            guard eligible > 0, delivered > 0 || allGuilds else { break }
            sent += size
            sessions = max(sessions, reached)
            if let head = queued.first {
                first = first ?? head.2
                last = head.3
            }
            lastWrites = queued.map(\.1)
            for (connection, _, _, _) in queued { try? await connection.writable().get() }
            if perSecond > 0 {
                let due = start + .seconds(Double(sent) / perSecond)
                if due > clock.now { try? await Task.sleep(until: due, clock: clock) }
            }
        }
        for write in lastWrites { try? await write.get() }
        let elapsed = clock.now - start
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        log("flood finished", ["sent": .integer(sent), "sessions": .integer(sessions), "seconds": .number(seconds)])
        return .json(.ok, .object([
            "sent": .integer(sent), "sessions": .integer(sessions), "seconds": .number(seconds),
            "firstSequence": first.map(JSONValue.integer) ?? .null, "lastSequence": last.map(JSONValue.integer) ?? .null,
        ]))
    }
}
