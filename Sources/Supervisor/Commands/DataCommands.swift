import ArgumentParser
import FoundationEssentials
import Glibc
import IPC

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Take a verified backup now, into every backup location."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.request(ControlRequest(cmd: .backup))
        try options.finish(envelope, as: BackupEngine.Report.self) { report in
            var text = "backup \(report.id): \(StatusTable.megabytes(report.sizeBytes)) in \(report.durationMs) ms\n"
            for result in report.results {
                text += "  \(result.ok ? "ok    " : "FAILED") \(result.location): \(result.message)\n"
            }
            return text
        }
    }
}

struct BackupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backups",
        abstract: "List the backups: id, time, reason, size, locations, verification."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.request(ControlRequest(cmd: .backups))
        try options.finish(envelope, as: [BackupCatalog.Summary].self) { backups in
            guard !backups.isEmpty else { return "no backups yet (`bot-supervisor backup` takes one)\n" }
            let rows = [["ID", "TIME", "REASON", "SIZE", "VERIFIED", "LOCATIONS"]] + backups.map {
                [$0.id, $0.createdAt, $0.reason, StatusTable.megabytes($0.sizeBytes), $0.verified ? "yes" : "NO", $0.locations.joined(separator: ", ")]
            }
            return StatusTable.columns(rows)
        }
    }
}

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the integrity of the live database and of every backup."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.request(ControlRequest(cmd: .verify))
        try options.finish(envelope, as: DataKeeper.VerifyReport.self) { report in
            ([report.live] + report.backups).map { "\($0.ok ? "ok    " : "FAILED") \($0.name)\($0.ok ? "" : ": " + $0.detail)\n" }.joined()
        }
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Stop the worker, restore a backup (the newest verified one by default), start it again.",
        discussion: "The replaced database, with its -wal and -shm, is kept in <dataDir>/quarantine/."
    )

    @OptionGroup var options: OperatorOptions

    @Option(name: .long, help: "The backup to restore (see `bot-supervisor backups`).")
    var backup: String?

    @Flag(name: .long, help: "Do not ask for confirmation.")
    var yes = false

    func run() async throws {
        if !yes {
            guard isatty(STDIN_FILENO) == 1 else {
                StandardError.write("bot-supervisor: restore replaces the live database; pass --yes to confirm when not at a terminal\n")
                throw ExitCode(2)
            }
            print("This stops the bot and replaces its database with \(backup.map { "backup \($0)" } ?? "the newest verified backup"); what was written since that backup is lost (the current file is kept in quarantine/). Continue? [y/N] ", terminator: "")
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                print("nothing done")
                return
            }
        }
        let envelope = try await options.request(ControlRequest(cmd: .restore, backup: backup))
        try options.finish(envelope, as: ActionResult.self) { result in
            result.message + (result.workerPid.map { "\nworker ready, pid \($0)" } ?? "") + "\n"
        }
    }
}
