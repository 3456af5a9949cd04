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
        let client = try await options.client(timeoutSeconds: 120)
        let result = try options.perform {
            try client.send(ControlRequest(cmd: .restartWorker), expecting: ActionResult.self)
        }
        print(options.json ? String(try JSONLine.encode(result).dropLast()) : result.message)
    }
}
