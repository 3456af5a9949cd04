import BotData
import Foundation
import GRDB
import Glibc
import IPC
import Logging
import TestSupport
import Testing

@testable import BotWorker
@testable import Supervisor

/// A feature defined here, not in `FeatureCatalog`: run by the worker's feature framework, its
/// log lines written as the worker writes them (`StderrLogHandler`), its system announced in the
/// worker's hello, and the lines filed by the supervisor's `WorkerOutput` into its own file,
/// `errors.log`, the error tracker and the health check that reads it.
private struct ProbeFeature: Feature {
    static let name = "probe_feature"
    let context: FeatureContext

    struct ProbeError: Error {}

    static func registerMigrations(in migrator: inout DatabaseMigrator) {}

    init(context: FeatureContext) { self.context = context }

    func setup() async throws {
        let logger = context.logger
        logger.info("probe set up", metadata: ["guild_id": "1"])
        await context.events.subscribe([.memberLeft], feature: Self.name) { event in
            guard case .memberLeft(let guild, let user) = event else { return }
            logger.error("probe failed", metadata: ["guild_id": "\(guild)", "user_id": "\(user)", "error": "\(ProbeError())", "error_type": "ProbeError"])
        }
    }

    func verifyDatabase(_ db: Database) throws -> [String] { [] }
    func loadSettings() async throws {}
    func cleanup() async {}
}

@Suite struct FeatureLogSystemTests {
    let directory: String

    init() throws {
        var template = Array("/tmp/itXXXXXX".utf8CString)
        directory = String(cString: mkdtemp(&template)!)
        mkdir(directory + "/logs", 0o755)
    }

    func read(_ name: String) -> [String] {
        ((try? String(contentsOfFile: directory + "/logs/" + name, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    @Test func aFeatureOutsideTheCatalogHasItsOwnFileAndItsErrorsReachErrorsLogAndHealth() async throws {
        let pid: Int32 = 4242
        // The supervisor's side: log files, the error tracker (one error is already a warning
        // here, to see it in the check), the worker output filing.
        let files = try LogFiles(directory: directory + "/logs")
        let errors = ErrorTracker(window: .seconds(300), threshold: 1)
        let output = WorkerOutput(files: files, echo: false, fallback: Logger(label: "bot") { JSONLogHandler(system: $0, files: files, echo: false) }, errors: errors)

        // The hello as the worker sends it for its features, across the wire.
        let features: [any Feature.Type] = [ProbeFeature.self]
        let line = try JSONLine.encode(WorkerMessage.hello(.init(pid: pid, version: BotVersion.current, logSystems: FeatureCatalog.logSystems(of: features))))
        guard case .hello(let hello) = try JSONLine.decode(WorkerMessage.self, from: line) else {
            Issue.record("not a hello: \(line)")
            return
        }
        #expect(hello.logSystems == ["probe_feature"])
        #expect(output.systems.admit(hello) == nil)

        // The worker's side: the feature framework with the worker's log handler, whose lines
        // go to the supervisor's filing as they would through the worker's stderr pipe.
        let sink: @Sendable (String) -> Void = { rendered in
            for line in rendered.split(separator: "\n") { output.accept(String(line), stream: "stderr", pid: pid) }
        }
        func logger(_ system: String) -> Logger { Logger(label: system) { StderrLogHandler(system: $0, output: sink) } }
        let pool = try AppDatabase.openPool(path: directory + "/bot.sqlite")
        try AppDatabase.migrate(AppDatabase.migrator(features: features), pool)
        let database = SafeDatabase(writer: pool, logger: logger("database")) { _ in }
        let events = EventBus(logger: logger("bot"))
        let feature = ProbeFeature(context: FeatureContext(
            database: database, logger: logger(ProbeFeature.logSystem), audit: logger("audit"), events: events,
            writes: WriteBatcher(database: database, logger: logger("database")),
            commands: CommandRouter(logger: logger("bot"), audit: logger("audit")), discord: DiscordAccess()
        ))
        try await feature.setup()
        await events.publish(.memberLeft(guild: GuildID(1), user: UserID(2)))

        // Its own file, with both lines; the error in errors.log; nothing refiled into bot.log.
        let own = read("probe_feature.log")
        #expect(own.count == 2, "\(own)")
        #expect(own.contains { $0.contains("\"probe set up\"") } && own.contains { $0.contains("\"probe failed\"") })
        #expect(read("errors.log").contains { $0.contains("\"probe failed\"") && $0.contains("\"system\":\"probe_feature\"") })
        #expect(!read("bot.log").contains { $0.contains("probe") })

        // Counted by the error-rate check that `health` runs.
        #expect(errors.count() == 1)
        let check = HealthRules.errorRate(errors: errors.count(), window: errors.window, threshold: errors.threshold)
        #expect(check.name == "errors" && check.status == .warn && check.detail.contains("1 errors"), "\(check)")
        try? FileManager.default.removeItem(atPath: directory)
    }
}
