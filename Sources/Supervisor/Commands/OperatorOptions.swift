import ArgumentParser
import FoundationEssentials
import IPC

/// How an operator subcommand finds the supervisor: `--socket PATH`, or the socket named by
/// `--config FILE` (with the environment over it), or the default `data/run/supervisor.sock`.
struct OperatorOptions: ParsableArguments {
    @Option(name: .long, help: "The supervisor's config file, to find its status socket.")
    var config: String?

    @Option(name: .long, help: "The status socket's path (overrides --config).")
    var socket: String?

    @Flag(name: .long, help: "Print one JSON document instead of text.")
    var json = false

    func client(timeoutSeconds: Double = 30) async throws -> ControlClient {
        if let socket { return ControlClient(socketPath: socket, timeoutSeconds: timeoutSeconds) }
        let loaded = try await ConfigLoader.load(file: config)
        return ControlClient(socketPath: loaded.config.statusSocket, timeoutSeconds: timeoutSeconds)
    }

    /// Runs `body`, turning client errors into CONTRACT.md exit statuses with a message on stderr.
    func perform<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ControlClient.ClientError {
            StandardError.write("bot-supervisor: \(error)\n")
            if case .unreachable = error { throw ExitCode(3) }
            throw ExitCode(1)
        }
    }
}
