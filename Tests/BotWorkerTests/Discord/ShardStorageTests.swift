import FoundationEssentials
import GRDB
import Glibc
import Testing

@testable import BotWorker

/// Where each shard's session is kept (`gateway_shards`), and the upgrade from the one session of
/// a worker of one connection.
@Suite struct ShardStorageTests {
    let path: String

    init() {
        var template = Array("/tmp/shardsXXXXXX".utf8CString)
        path = String(cString: mkdtemp(&template)!) + "/bot.sqlite"
    }

    @Test func theSessionOfAnUnshardedWorkerBecomesShardZeroOfOne() throws {
        let pool = try AppDatabase.openPool(path: path)
        let migrator = AppDatabase.migrator()
        try migrator.migrate(pool, upTo: "v4-core-gateway-session")
        try pool.write { db in
            try db.execute(sql: "UPDATE gateway_session SET session_id = 'old', resume_url = 'wss://r', sequence = 41, updated_at = 1000, user_id = '7', application_id = '8', guilds = '100,200' WHERE id = 1")
        }
        try migrator.migrate(pool)
        let (shards, identity, legacy): ([GatewayPosition.StoredShard], GatewayPosition.Identity?, String?) = try pool.read { db in
            (try GatewayPosition.loadShards(db), try GatewayPosition.loadIdentity(db), try String.fetchOne(db, sql: "SELECT session_id FROM gateway_session"))
        }
        #expect(shards.count == 1)
        #expect(shards.first?.id == 0 && shards.first?.count == 1)
        #expect(shards.first?.session == GatewaySession.StoredSession(sessionID: "old", resumeURL: "wss://r", sequence: 41))
        #expect(shards.first?.guilds.map(\.description) == ["100", "200"])
        #expect(identity?.user.description == "7" && identity?.application.description == "8")
        // Kept in one place only.
        #expect(legacy == nil)
    }

    @Test func rowsOfAnotherShardCountAreForgotten() throws {
        let pool = try AppDatabase.openPool(path: path)
        try AppDatabase.migrator().migrate(pool)
        try pool.write { db in
            for shard in 0..<3 { try GatewayPosition(shard: shard, shardCount: 3, sessionID: "s\(shard)", resumeURL: nil, sequence: 5).store(db) }
            try GatewayPosition.storeGuilds(shard: 1, count: 3, [GuildID(123), GuildID(456)], db)
        }
        let kept = try pool.read { db in try GatewayPosition.loadShards(db) }
        #expect(kept.map(\.id) == [0, 1, 2])
        #expect(kept[1].guilds == [GuildID(123), GuildID(456)])
        #expect(kept[1].session?.sessionID == "s1")
        try pool.write { db in try GatewayPosition.keepOnly(shardCount: 3, db) }
        #expect(try pool.read { db in try GatewayPosition.loadShards(db) }.count == 3)
        try pool.write { db in try GatewayPosition.keepOnly(shardCount: 2, db) }
        #expect(try pool.read { db in try GatewayPosition.loadShards(db) }.isEmpty)
    }
}
