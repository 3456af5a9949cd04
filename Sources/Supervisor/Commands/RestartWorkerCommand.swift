import ArgumentParser
import FoundationEssentials
import IPC

struct RestartWorkerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart-worker",
        abstract: "Restart the worker gracefully and wait until the new one is ready."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.request(ControlRequest(cmd: .restartWorker), timeoutSeconds: 120, showsProgress: false)
        try options.finish(envelope, as: ActionResult.self) { $0.message + "\n" }
    }
}

struct DeployCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "deploy",
        abstract: "Switch to a new release: checks, a pre-deploy backup, the switch, then a probation that rolls back by itself."
    )

    @Argument(help: "The release directory (bin/bot-supervisor, bin/bot-worker, bin/discord-sandbox, VERSION).")
    var release: String

    @Flag(name: .long, help: "Run the staging rehearsal of the release and print its report; change nothing.")
    var rehearseOnly = false

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let absolute = release.hasPrefix("/") ? release : FileManager.default.currentDirectoryPath + "/" + release
        let envelope = try await options.request(ControlRequest(cmd: .deploy, release: absolute, rehearseOnly: rehearseOnly ? true : nil), timeoutSeconds: 900, showsProgress: false)
        try options.finish(envelope, as: ActionResult.self) { $0.message + "\n" }
    }
}

struct RollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Go back to the previous release (restoring the pre-deploy backup if the database was migrated)."
    )

    @OptionGroup var options: OperatorOptions

    func run() async throws {
        let envelope = try await options.request(ControlRequest(cmd: .rollback), timeoutSeconds: 900, showsProgress: false)
        try options.finish(envelope, as: ActionResult.self) { $0.message + "\n" }
    }
}
