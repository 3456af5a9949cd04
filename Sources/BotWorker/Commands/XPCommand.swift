import ArgumentParser
import BotData
import FoundationEssentials
import GRDB
import Glibc
import IPC
import Logging

/// `bot-worker xp import|export`: XP from MEE6's leaderboard or a CSV into a guild, and a guild's
/// XP out as CSV (`XPTransfer`).
///
/// While the supervisor runs, the worker does the work (it is the only process that may write
/// the live database then): the command goes over the status socket. With the bot stopped, the
/// command opens the database itself, holding the supervisor's lock so that none starts
/// meanwhile, and writes through the same safe layer and change journal as the worker.
///
/// Exit status: 0 done; 1 failed (nothing written); 65 the file is malformed (nothing written).
struct XPCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "xp",
        abstract: "Import XP from MEE6's leaderboard or a CSV, or export a guild's XP as CSV.",
        subcommands: [Import.self, Export.self]
    )

    /// The file is malformed (`EX_DATAERR` from sysexits.h).
    static let malformedExitCode: Int32 = 65

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Set the XP of the members a file lists (others are left as they are).",
            discussion: """
                FILE is MEE6's leaderboard JSON (https://mee6.xyz/api/plugins/levels/leaderboard/<guild id>) \
                or a CSV with the header user_id,xp[,level,messages,voice_minutes]. A malformed file is refused \
                whole, naming its line and field. Levels are derived from the XP.
                """
        )

        @OptionGroup var place: XPPlace

        @Option(name: .long, help: "mee6 or csv.")
        var format: XPTransfer.Format

        @Flag(name: .long, help: "Report what the import would change; write nothing.")
        var dryRun = false

        @Argument(help: "The file to import.")
        var file: String

        func run() async throws {
            var info = stat()
            guard stat(file, &info) == 0 else { throw XPCommand.fail("cannot read \(file): \(String(cString: strerror(errno)))") }
            guard Int(info.st_size) <= XPTransfer.maximumBytes else {
                throw XPCommand.fail("\(file): the file is \(info.st_size) bytes, over the \(XPTransfer.maximumBytes >> 20) MB limit; split it (members not in a file are left as they are). Nothing was imported.", code: XPCommand.malformedExitCode)
            }
            guard let data = FileManager.default.contents(atPath: file) else { throw XPCommand.fail("cannot read \(file)") }
            let entries: [XPTransfer.Entry]
            do {
                entries = try XPTransfer.parse(data, format: format)
            } catch {
                throw XPCommand.fail("\(file): \(error); nothing was imported. Fix the file and run the import again.", code: XPCommand.malformedExitCode)
            }
            let guild = try place.guildID()
            let summary: String
            if let client = try place.runningSupervisor() {
                // Checked here already: the worker gets the compact CSV of the same entries.
                let content = Data(XPTransfer.csv(entries).utf8).base64EncodedString()
                guard content.utf8.count <= LineFrameHandler.defaultMaximumLineLength - 8192 else {
                    throw XPCommand.fail("\(entries.count) members are more than one request through the running supervisor carries (its lines are limited to \(LineFrameHandler.defaultMaximumLineLength >> 20) MiB, about 18,000 members); stop the bot and run the import again, or split the file (members not in a file are left as they are). Nothing was imported.")
                }
                let result = try XPCommand.send(client, ControlRequest(cmd: .xpImport, guild: guild.description, format: XPTransfer.Format.csv.rawValue, dryRun: dryRun, content: content))
                summary = result.summary
            } else {
                summary = try await place.withStoppedDatabase(journaled: !dryRun) { database in
                    dryRun
                        ? try await database.read("xp.import-plan") { db in try XPTransfer.plan(db, guild: guild, entries: entries) }.summary
                        : try await database.write("xp.import") { db in try XPTransfer.apply(db, guild: guild, entries: entries) }.value.summary
                }
            }
            print(summary)
        }
    }

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "export",
            abstract: "Write a guild's XP as CSV (user_id,xp,level,messages,voice_minutes), highest XP first."
        )

        @OptionGroup var place: XPPlace

        @Option(name: .long, help: "Write the CSV to this file instead of standard output.")
        var output: String?

        func run() async throws {
            let guild = try place.guildID()
            let csv: String
            if let client = try place.runningSupervisor() {
                csv = try XPCommand.send(client, ControlRequest(cmd: .xpExport, guild: guild.description)).csv ?? ""
            } else {
                csv = try await place.withStoppedDatabase(journaled: false) { database in
                    try await database.read("xp.export") { db -> String in try XPTransfer.export(db, guild: guild) }
                }
            }
            guard let output else {
                print(csv, terminator: "")
                return
            }
            do {
                try Data(csv.utf8).write(to: URL(fileURLWithPath: output), options: .atomic)
            } catch {
                throw XPCommand.fail("cannot write \(output): \(error)")
            }
            StandardError.write("\(csv.utf8.count(where: { $0 == 0x0A }) - 1) members written to \(output)\n")
        }
    }

    /// Sends `request` to the supervisor and returns the worker's result, or fails with its reason.
    static func send(_ client: ControlClient, _ request: ControlRequest) throws -> XPTransferResult {
        do {
            return try client.send(request, expecting: XPTransferResult.self)
        } catch ControlClient.ClientError.refused(let error) {
            throw fail(error.message, code: error.code == "malformed" ? malformedExitCode : 1)
        } catch {
            throw fail("\(error)")
        }
    }

    static func fail(_ message: String, code: Int32 = 1) -> ExitCode {
        StandardError.write("bot-worker: \(message)\n")
        return ExitCode(code)
    }
}

/// Which bot and guild: the data directory (from `--data-dir`, or the supervisor's `--config`,
/// or `data`), its status socket, and the journal locations (the backup locations).
struct XPPlace: ParsableArguments {
    @Option(name: .long, help: "The guild's id.")
    var guild: String

    @Option(name: .long, help: "The supervisor's config file: its dataDir, runtimeDir, statusSocket, backup.locations and journal.*.")
    var config: String?

    @Option(name: .long, help: "The data directory (overrides --config).")
    var dataDir: String?

    @Option(name: .long, help: "The status socket (overrides --config).")
    var socket: String?

    /// What the supervisor's config says about where things are (the rest of it is not read).
    private struct ConfigFile: Decodable {
        struct Backup: Decodable { var locations: [String]? }
        struct Journal: Decodable {
            var enabled: Bool?
            var segmentMaxBytes: Int?
        }
        var dataDir: String?
        var runtimeDir: String?
        var statusSocket: String?
        var backup: Backup?
        var journal: Journal?
    }

    func guildID() throws -> GuildID {
        guard let id = GuildID(guild), id.rawValue > 0, guild.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw ValidationError("--guild \(guild) is not a Discord guild id (a number such as 1187654321098765432)")
        }
        return id
    }

    private func loadConfig() throws -> ConfigFile {
        guard let config else { return ConfigFile() }
        guard let data = FileManager.default.contents(atPath: config) else {
            throw ValidationError("cannot read the config file \(config)")
        }
        do {
            return try JSONDecoder().decode(ConfigFile.self, from: data)
        } catch {
            throw ValidationError("the config file \(config) is not the supervisor's JSON config: \(error)")
        }
    }

    private struct Paths {
        var dataDir: String
        var runtimeDir: String
        var statusSocket: String
        var journal: JournalSettings
    }

    /// As the supervisor's ConfigLoader resolves them: relative paths from the working directory,
    /// the environment over the file.
    private func paths() throws -> Paths {
        let file = try loadConfig()
        let environment = ProcessInfo.processInfo.environment
        let here = FileManager.default.currentDirectoryPath
        func absolute(_ path: String) -> String {
            URL(fileURLWithPath: path.hasPrefix("/") ? path : here + "/" + path).standardizedFileURL.path
        }
        let dataDir = absolute(dataDir ?? environment["DATA_DIR"] ?? file.dataDir ?? "data")
        let runtimeDir = absolute(environment["RUNTIME_DIR"] ?? file.runtimeDir ?? dataDir + "/run")
        return Paths(
            dataDir: dataDir,
            runtimeDir: runtimeDir,
            statusSocket: absolute(socket ?? environment["STATUS_SOCKET"] ?? file.statusSocket ?? runtimeDir + "/supervisor.sock"),
            journal: JournalSettings(
                enabled: file.journal?.enabled ?? true,
                locations: (file.backup?.locations ?? [dataDir + "/backups"]).map(absolute),
                segmentMaxBytes: file.journal?.segmentMaxBytes ?? 64 << 20
            )
        )
    }

    /// A client of the supervisor when one answers on the status socket; nil when none does.
    func runningSupervisor() throws -> ControlClient? {
        let client = ControlClient(socketPath: try paths().statusSocket, timeoutSeconds: Double(XPTransferLimits.timeoutSeconds))
        do {
            close(try client.connectOnly())
            return client
        } catch {
            return nil
        }
    }

    /// Runs `body` on the live database of a stopped bot, through the safe layer (and, when it
    /// writes, the change journal), holding the supervisor's lock so that no supervisor starts
    /// meanwhile; the database is checkpointed and closed after.
    func withStoppedDatabase<Value: Sendable>(journaled: Bool, _ body: (SafeDatabase) async throws -> Value) async throws -> Value {
        let paths = try paths()
        let databasePath = paths.dataDir + "/" + BotDatabase.fileName
        var owner = stat()
        guard stat(databasePath, &owner) == 0 else {
            throw XPCommand.fail("there is no database at \(databasePath); pass the bot's --data-dir or --config")
        }
        // Files made here (the WAL index, journal segments) must stay readable and writable by
        // the bot: root's would lock it out of its own data.
        guard owner.st_uid == geteuid() else {
            throw XPCommand.fail("\(databasePath) belongs to uid \(owner.st_uid), not to you (uid \(geteuid())): run this as the bot's user, e.g. `sudo -u bot bot-worker xp …`")
        }
        let lockFile = paths.runtimeDir + "/supervisor.lock"
        let lock = FileManager.default.fileExists(atPath: paths.runtimeDir) ? open(lockFile, O_RDWR | O_CREAT | O_CLOEXEC, 0o600) : -1
        defer { if lock >= 0 { close(lock) } }
        if lock >= 0, flock(lock, LOCK_EX | LOCK_NB) != 0 {
            throw XPCommand.fail("a bot-supervisor holds \(lockFile) but does not answer on \(paths.statusSocket) (starting or stopping?); try again once `bot-supervisor status` answers")
        }
        var logger = Logger(label: "database")
        logger.logLevel = .warning
        let pool: DatabasePool
        let journal: JournalWriter?
        do {
            pool = try AppDatabase.openPool(path: databasePath)
            let plan = try AppDatabase.plan(AppDatabase.migrator(), pool, path: databasePath)
            guard plan.pending.isEmpty else {
                try pool.close()
                throw XPCommand.fail("the database needs migrations (\(plan.pending.joined(separator: ", "))) that the worker applies after the supervisor's pre-migration backup: start the bot once, then import through it")
            }
            journal = journaled ? try await Self.openJournal(pool, settings: paths.journal, logger: logger) : nil
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw XPCommand.fail("cannot open \(databasePath): \(error)")
        }
        let database = SafeDatabase(writer: pool, logger: logger, journal: journal) { _ in }
        defer { database.close() }
        do {
            return try await body(database)
        } catch let exit as ExitCode {
            throw exit
        } catch {
            throw XPCommand.fail("\(error)")
        }
    }

    /// The change journal after the database's position, as the worker opens it: every write
    /// made here is in every backup location's journal, so restores and replicas have it.
    private static func openJournal(_ pool: DatabasePool, settings: JournalSettings, logger: Logger) async throws -> JournalWriter? {
        guard settings.enabled else { return nil }
        let (position, databaseID) = try await pool.read { db in
            (try JournalState.read(db), try String.fetchOne(db, sql: "SELECT value FROM \(BotDatabase.metaTable) WHERE key = 'database_id'"))
        }
        guard let position, let databaseID else {
            throw XPCommand.fail("the database has no journal_state row or database_id: restore a backup (`bot-supervisor restore`)")
        }
        return JournalWriter(settings: settings, databaseID: databaseID, position: position, logger: logger) { _ in }
    }
}

extension XPTransfer.Format: ExpressibleByArgument {}

enum XPTransferLimits {
    /// How long the command waits for the supervisor (which waits for the worker).
    static let timeoutSeconds = 330
}
