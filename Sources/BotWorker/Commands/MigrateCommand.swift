import ArgumentParser
import BotData
import FoundationEssentials
import GRDB
import Glibc
import IPC

/// `bot-worker migrate --dry-run --database FILE`: applies this release's pending migrations to a
/// copy of FILE and reports what they did and the integrity of the result. This is how an
/// operator tests a migration on a copy of production first; FILE itself is only read.
struct MigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Test this release's migrations on a copy of a database (--dry-run)."
    )

    struct Report: Codable, Sendable {
        var database: String
        var alreadyApplied: [String]
        var applied: [String]
        var durationMs: Int
        var integrity: String
        var problems: [String]
        var ok: Bool { problems.isEmpty }
    }

    @Flag(name: .long, help: "Apply the migrations to a temporary copy, never to the file itself.")
    var dryRun = false

    @Option(name: .long, help: "The database to test the migrations on (read only).")
    var database: String

    @Flag(name: .long, help: "Print the report as one JSON document.")
    var json = false

    func validate() throws {
        guard dryRun else {
            throw ValidationError("the worker applies migrations itself when it starts, after the supervisor's pre-migration backup; use --dry-run to test them on a copy")
        }
        guard FileManager.default.fileExists(atPath: database) else {
            throw ValidationError("\(database) does not exist")
        }
    }

    func run() async throws {
        let report = try Self.dryRun(database: database)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print("database:        \(report.database)")
            print("already applied: \(report.alreadyApplied.isEmpty ? "none" : report.alreadyApplied.joined(separator: ", "))")
            print("applied:         \(report.applied.isEmpty ? "none (up to date)" : report.applied.joined(separator: ", ")) in \(report.durationMs) ms")
            print("integrity:       \(report.integrity)")
            for problem in report.problems { print("PROBLEM:         \(problem)") }
        }
        if !report.ok { throw ExitCode(1) }
    }

    static func dryRun(database: String) throws -> Report {
        var template = Array("/tmp/bot-migrate-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ValidationError("cannot create a temporary directory") }
        let directory = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let copy = directory + "/" + BotDatabase.fileName

        var readOnly = Configuration()
        readOnly.readonly = true
        let source = try DatabaseQueue(path: database, configuration: readOnly)
        let destination = try DatabaseQueue(path: copy)
        try source.backup(to: destination)
        try source.close()
        try destination.close()

        var report = Report(database: database, alreadyApplied: [], applied: [], durationMs: 0, integrity: "not checked", problems: [])
        do {
            let pool = try AppDatabase.openPool(path: copy)
            let migrator = AppDatabase.migrator()
            let plan = try AppDatabase.plan(migrator, pool, path: database)
            report.alreadyApplied = plan.applied
            let started = ContinuousClock.now
            try AppDatabase.migrate(migrator, pool)
            let elapsed = ContinuousClock.now - started
            report.durationMs = elapsed.milliseconds
            report.applied = plan.pending
            try pool.close()
        } catch {
            report.problems.append("migration failed: \(error)")
        }
        let inspection = DatabaseInspector.inspect(path: copy, check: .integrity)
        report.integrity = inspection.check ?? "not checked"
        report.problems += inspection.problems
        return report
    }
}
