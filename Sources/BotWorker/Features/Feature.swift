import GRDB
import IPC
import Logging

/// What the core gives a feature: its database access, its own logger (its own log file), the
/// event bus, and the audit log for admin actions.
struct FeatureContext: Sendable {
    let database: SafeDatabase
    let logger: Logger
    let audit: Logger
    let events: EventBus
    /// Group commit, for the writes events cause at a high rate.
    let writes: WriteBatcher
    /// Where it registers its slash commands and component handlers.
    let commands: CommandRouter
    /// What it may ask of Discord (roles, messages, members), checked before it goes out.
    let discord: DiscordAccess
    /// Where it starts work that must not hold up an event or a command (never a bare `Task {}`):
    /// run by the core for the worker's lifetime and cancelled when it stops.
    var background = BackgroundWork()
    /// Where it raises an alert for the operator (the supervisor's status, log and webhook).
    var alerts = FeatureAlerts.none
}

/// Raises alerts in the supervisor (`WorkerMessage.alert`), for what an operator must see and no
/// member will report (rules that loop, say). The supervisor drops only exact repeats within its
/// window: a feature rate-limits its own.
struct FeatureAlerts: Sendable {
    private let send: @Sendable (AlertSeverity, String) async -> Void

    init(_ send: @escaping @Sendable (AlertSeverity, String) async -> Void) {
        self.send = send
    }

    /// Raises nothing: for tests, and features built without a supervisor.
    static let none = FeatureAlerts { _, _ in }

    func raise(_ severity: AlertSeverity, _ message: String) async {
        await send(severity, message)
    }
}

/// One feature of the bot (verification, role connections, XP…), following one template; see
/// docs/feature-template.md. A feature owns its tables and migrations, logs to its own file,
/// and talks to the others only through `BotEvent`s.
protocol Feature: Sendable {
    /// Its name: its log file (`<name>.log`), its migrations' prefix, its tables' `feature` in
    /// `bot_tables`.
    static var name: String { get }

    /// The log system its `context.logger` writes to, and so its log file (`<system>.log`):
    /// by default its name. The worker announces every feature's system in its hello, and the
    /// supervisor refuses a worker whose system is not `^[a-z][a-z0-9_]{0,31}$` or is reserved
    /// (`supervisor`, `errors`, and the core's `bot`, `database`, `audit`, `sandbox`).
    static var logSystem: String { get }

    /// Its migrations, applied after the core's. Identifiers start with the feature's name and
    /// are never edited once released; a change is a new migration.
    static func registerMigrations(in migrator: inout DatabaseMigrator)

    /// Whether it reads message text, which needs the privileged MESSAGE_CONTENT intent (to be
    /// enabled in the Developer Portal). Default: no.
    static var needsMessageContent: Bool { get }

    init(context: FeatureContext)

    /// Registers its event handlers (and, with the Discord client, its slash commands).
    func setup() async throws

    /// Problems with its tables and critical rows; empty when all is there.
    func verifyDatabase(_ db: Database) throws -> [String]

    /// Reads its settings (per-guild configuration) from the database.
    func loadSettings() async throws

    /// Releases what it holds before the worker stops.
    func cleanup() async
}

extension Feature {
    static var needsMessageContent: Bool { false }
    static var logSystem: String { name }
}

/// Every feature of this build, in start order. Adding a feature is adding its module and one
/// line here.
enum FeatureCatalog {
    static let all: [any Feature.Type] = [
        VerificationFeature.self,
        RoleConnectionsFeature.self,
        XPFeature.self,
    ]

    /// The log systems of `features`, for the worker's hello.
    static func logSystems(of features: [any Feature.Type] = all) -> [String] {
        features.map { $0.logSystem }
    }
}
