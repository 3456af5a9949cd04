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
