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
        let envelope = try await options.requestShowingProgress(ControlRequest(cmd: .backup))
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
        let envelope = try await options.requestShowingProgress(ControlRequest(cmd: .verify))
        try options.finish(envelope, as: DataKeeper.VerifyReport.self) { report in
            ([report.live] + report.backups).map { "\($0.ok ? "ok    " : "FAILED") \($0.name)\($0.ok ? "" : ": " + $0.detail)\n" }.joined()
        }
    }
}

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Stop the worker, restore a backup (the newest verified one by default), start it again.",
        discussion: "By default the newest verified backup is restored and the change journal after it replayed: nothing committed is lost. --at TIME brings back the state as of TIME; --backup ID one backup exactly. The replaced database, with its -wal and -shm, is kept in <dataDir>/quarantine/. --from-replica NAME is disaster recovery: with the supervisor stopped, it rebuilds the data dir from an off-host replica (needs only the config and the replica key)."
    )

    @OptionGroup var options: OperatorOptions

    @Option(name: .long, help: "The backup to restore exactly as it was taken (see `bot-supervisor backups`); the journal after it is not replayed.")
    var backup: String?

    @Option(name: .long, help: "A point in time (ISO 8601, e.g. 2026-12-01T18:30:00Z): the state as it was then, from the newest backup before it and the journal up to it.")
    var at: String?

    @Option(name: .customLong("from-replica"), help: "Rebuild the data dir from this off-host replica (replicas.targets name), with the supervisor stopped; the other replicas stand in for damaged objects.")
    var fromReplica: String?

    func validate() throws {
        if fromReplica != nil, backup != nil {
            throw ValidationError("--from-replica restores the newest snapshot on the replica (or the state at --at); --backup names a local backup")
        }
        if backup != nil, at != nil {
            throw ValidationError("--backup and --at exclude each other: a backup as it was taken, or the state at a point in time")
        }
        if let at, Timestamp.parse(at) == nil {
            throw ValidationError("--at must be an ISO 8601 time in UTC or with an offset, e.g. 2026-12-01T18:30:00Z; got \"\(at)\"")
        }
    }

    @Flag(name: .long, help: "Do not ask for confirmation.")
    var yes = false

    func run() async throws {
        if let fromReplica {
            try await restore(fromReplica: fromReplica)
            return
        }
        if !yes {
            guard isatty(STDIN_FILENO) == 1 else {
                StandardError.write("bot-supervisor: restore replaces the live database; pass --yes to confirm when not at a terminal\n")
                throw ExitCode(2)
            }
            let what = if let backup {
                "backup \(backup) as it was taken; what was written since that backup is not replayed"
            } else if let at {
                "its state as of \(at); what was written after that is not replayed"
            } else {
                "the newest verified backup and every journaled transaction after it"
            }
            print("This stops the bot and replaces its database with \(what) (the current file is kept in quarantine/). Continue? [y/N] ", terminator: "")
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                print("nothing done")
                return
            }
        }
        let envelope = try await options.requestShowingProgress(ControlRequest(cmd: .restore, backup: backup, at: at))
        try options.finish(envelope, as: ActionResult.self) { result in
            result.message + (result.workerPid.map { "\nworker ready, pid \($0)" } ?? "") + "\n"
        }
    }

    /// Disaster recovery, in this process: the supervisor is not running (its lock is taken).
    private func restore(fromReplica name: String) async throws {
        let config = try await ConfigLoader.load(file: options.config).config
        let key = try ReplicaKey.load(config.replicas.keyFile)
        if !yes {
            guard isatty(STDIN_FILENO) == 1 else {
                StandardError.write("bot-supervisor: restore --from-replica rebuilds \(config.dataDir); pass --yes to confirm when not at a terminal\n")
                throw ExitCode(2)
            }
            print("This rebuilds the database in \(config.dataDir) from replica \(name)\(at.map { " as of \($0)" } ?? "") (a database already there is kept in quarantine/). Continue? [y/N] ", terminator: "")
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                print("nothing done")
                return
            }
        }
        let target: RestoreEngine.Target = at.flatMap { Timestamp.parse($0) }.map { .pointInTime($0) } ?? .latest
        let showProgress = isatty(STDERR_FILENO) == 1 && !options.json
        let report: ReplicaRestore.Report
        do {
            report = try await ReplicaRestore(config: config, key: key, name: name).run(target) { phase in
                if showProgress { StandardError.write("\r\u{1B}[2K\(phase)") }
            }
            if showProgress { StandardError.write("\r\u{1B}[2K") }
        } catch {
            if showProgress { StandardError.write("\r\u{1B}[2K") }
            StandardError.write("bot-supervisor: restore from replica \(name) failed: \(error); the database in \(config.dataDir) was not changed\n")
            throw ExitCode(error is ConfigError ? 2 : 1)
        }
        if options.json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            print(report.message)
            print("took \(report.durationMs) ms; \(config.dataDir) is ready: start the supervisor (systemctl start bot-supervisor, or make run)")
        }
    }
}

struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Restore every replica into a scratch dir now and compare it with the live database; exit 1 if one fails."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.request(ControlRequest(cmd: .drill))
        try options.finish(envelope, as: [ReplicaDrill.Report].self) { reports in
            reports.map { "\($0.ok ? "ok    " : "FAILED") \($0.replica): \($0.detail) (\($0.durationMs) ms)\n" }.joined()
        }
    }
}

extension OperatorOptions {
    /// `request`, showing the supervisor's operation on stderr while waiting for the answer: the
    /// status is polled on a second connection every 200 ms and drawn by `OperationProgress`, as
    /// a bar at a terminal, else as one line per phase. With `--json` and no terminal, nothing is
    /// shown; stdout only ever gets the result.
    func requestShowingProgress(_ request: ControlRequest) async throws -> JSONValue {
        let terminal = isatty(STDERR_FILENO) == 1
        guard terminal || !json else { return try await self.request(request, showsProgress: false) }
        let socketPath = try await client().socketPath
        return try await withThrowingTaskGroup(of: JSONValue?.self) { group in
            group.addTask { try await self.request(request, showsProgress: false) }
            group.addTask {
                var display = OperationProgress(style: terminal ? .bar : .lines)
                defer { if let text = display.finish() { StandardError.write(text) } }
                let probe = ControlClient(socketPath: socketPath, timeoutSeconds: 2)
                let started = ContinuousClock.now
                while (try? await Task.sleep(for: .milliseconds(200))) != nil {
                    let operation = try? probe.send(ControlRequest(cmd: .status), expecting: StatusSnapshot.self).operation
                    let elapsed = ContinuousClock.now - started
                    let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                    if let text = display.observe(operation, at: seconds) { StandardError.write(text) }
                }
                return nil
            }
            defer { group.cancelAll() }
            while let result = try await group.next() {
                if let result { return result }
            }
            throw ExitCode(1)
        }
    }
}
