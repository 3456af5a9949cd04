import BotData
import FoundationEssentials
import GRDB
import Glibc
import Logging
import Synchronization
import Testing

@testable import BotWorker

/// A feature made for the test, following the template: its own table, migration and handlers.
private struct GreeterFeature: Feature {
    static let name = "greeter"
    let context: FeatureContext

    static func registerMigrations(in migrator: inout DatabaseMigrator) {
        migrator.registerMigration("greeter-v1") { db in
            try db.create(table: "greeter_welcomes") { t in
                t.primaryKey("user_id", .text)
                t.column("guild_id", .text).notNull()
            }
            try AppDatabase.registerTable(db, name: "greeter_welcomes", feature: name, critical: true)
        }
    }

    init(context: FeatureContext) { self.context = context }

    func setup() async throws {
        let database = context.database
        let events = context.events
        await events.subscribe([.memberJoined], feature: Self.name) { event in
            guard case .memberJoined(let member) = event, !member.pending else { return }
            try await database.write("greeter.welcome") { db in
                try db.execute(sql: "INSERT INTO greeter_welcomes (user_id, guild_id) VALUES (?, ?)", arguments: ["\(member.user)", "\(member.guild)"])
            }
            await events.publish(.memberVerified(guild: member.guild, user: member.user))
        }
    }

    func verifyDatabase(_ db: Database) throws -> [String] {
        try db.tableExists("greeter_welcomes") ? [] : ["table greeter_welcomes is missing"]
    }

    func loadSettings() async throws {}
    func cleanup() async {}
}

@Suite struct FeatureFrameworkTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/bwXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
    }

    @Test func aFeaturesMigrationsFollowTheCoreAndRegisterItsTables() throws {
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(features: [GreeterFeature.self]), pool)
        try pool.read { (db: Database) throws in
            #expect(try AppDatabase.migrator(features: [GreeterFeature.self]).appliedMigrations(db) == ["v1-core", "v2-core-gateway", "v3-core-journal", "v4-core-gateway-session", "v5-core-gateway-shards", "v6-core-command-sync", "greeter-v1"])
        }
        let inspection = DatabaseInspector.inspect(path: directory + "/bot.sqlite", check: .integrity)
        #expect(inspection.isHealthy)
        #expect(inspection.tables.contains("greeter_welcomes"))
        #expect(inspection.criticalRows["greeter_welcomes"] == 0)
    }

    @Test func featuresTalkThroughTypedEventsOnly() async throws {
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(features: [GreeterFeature.self]), pool)
        let database = SafeDatabase(writer: pool, logger: Logger(label: "database")) { _ in }
        let events = EventBus(logger: Logger(label: "bot"))
        let feature = GreeterFeature(context: FeatureContext(database: database, logger: Logger(label: "greeter"), audit: Logger(label: "audit"), events: events, writes: WriteBatcher(database: database, logger: Logger(label: "database")), commands: CommandRouter(logger: Logger(label: "bot"), audit: Logger(label: "audit")), discord: DiscordAccess()))
        try await feature.setup()
        #expect(try await database.read("verify") { try feature.verifyDatabase($0) }.isEmpty)

        let verified = Mutex<[UserID]>([])
        await events.subscribe([.memberVerified], feature: "listener") { event in
            if case .memberVerified(_, let user) = event { verified.withLock { $0.append(user) } }
        }
        let member = Member(guild: GuildID(1), user: UserID(42), roles: [], pending: false, joinedAt: nil, isBot: false)
        await events.publish(.memberJoined(member))
        var screening = member
        screening.user = UserID(43)
        screening.pending = true
        await events.publish(.memberJoined(screening))
        #expect(verified.withLock { $0 } == [UserID(42)])
        #expect(try await database.read("count") { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM greeter_welcomes") } == 1)
    }

    @Test func aFailingHandlerNeverStopsTheOthers() async throws {
        struct Boom: Error {}
        let events = EventBus(logger: Logger(label: "bot"))
        let delivered = Mutex(0)
        await events.subscribe([.memberLeft], feature: "broken") { _ in throw Boom() }
        await events.subscribe([.memberLeft], feature: "fine") { _ in delivered.withLock { $0 += 1 } }
        await events.publish(.memberLeft(guild: GuildID(1), user: UserID(2)))
        #expect(delivered.withLock { $0 } == 1)
        #expect(await events.failures == 1)
    }
}
