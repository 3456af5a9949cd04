import ArgumentParser
import FoundationEssentials
import Glibc
import IPC

extension OperatorOptions {
    /// Sends a long request (backup, verify, restore) and, while it runs, shows the supervisor's
    /// progress on the terminal. Returns the response's envelope.
    func longRequest(_ request: ControlRequest) async throws -> JSONValue {
        let client = try await client(timeoutSeconds: 6 * 3600)
        let line = try JSONLine.encode(request)
        let showProgress = isatty(STDERR_FILENO) == 1 && !json
        let response: String
        do {
            response = try await withThrowingTaskGroup(of: String?.self) { group in
                group.addTask { try await onOwnThread { try client.exchange(line) } }
                if showProgress {
                    group.addTask {
                        defer { StandardError.write("\r\u{1B}[2K") }
                        let probe = ControlClient(socketPath: client.socketPath, timeoutSeconds: 2)
                        while (try? await Task.sleep(for: .milliseconds(300))) != nil {
                            if let operation = try? probe.send(ControlRequest(cmd: .status), expecting: StatusSnapshot.self).operation {
                                StandardError.write("\r\u{1B}[2K\(operation.name): \(operation.phase) \(Int(operation.progress * 100))%")
                            }
                        }
                        return nil
                    }
                }
                defer { group.cancelAll() }
                while let result = try await group.next() {
                    if let result { return result }
                }
                throw ControlClient.ClientError.io("no answer")
            }
        } catch let error as ControlClient.ClientError {
            _ = try perform { throw error }
            throw ExitCode(1)
        }
        guard let envelope = try? JSONLine.decode(JSONValue.self, from: response) else {
            StandardError.write("bot-supervisor: unreadable answer from the supervisor\n")
            throw ExitCode(1)
        }
        return envelope
    }

    /// Prints the result as JSON (with `--json`) or through `text`; a failure's message goes to
    /// stderr and exits 1.
    func finish<Result: Decodable>(_ envelope: JSONValue, as type: Result.Type, text: (Result) -> String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let result = try? JSONDecoder().decode(Result.self, from: try encoder.encode(envelope["result"] ?? .null))
        if json, let value = envelope["result"], value != .null {
            print(String(decoding: try encoder.encode(value), as: UTF8.self))
        } else if let result {
            print(text(result), terminator: "")
        }
        guard envelope["ok"] == .bool(true) else {
            let message = if case .string(let text) = envelope["error"]?["message"] { text } else { "the supervisor refused" }
            StandardError.write("bot-supervisor: \(message)\n")
            throw ExitCode(1)
        }
    }
}

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Take a verified backup now, into every backup location."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.longRequest(ControlRequest(cmd: .backup))
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
        let envelope = try await options.longRequest(ControlRequest(cmd: .backups))
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
        let envelope = try await options.longRequest(ControlRequest(cmd: .verify))
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
        let envelope = try await options.longRequest(ControlRequest(cmd: .restore, backup: backup))
        try options.finish(envelope, as: ActionResult.self) { result in
            result.message + (result.workerPid.map { "\nworker ready, pid \($0)" } ?? "") + "\n"
        }
    }
}
