import ArgumentParser
import FoundationEssentials
import Glibc
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
        let loaded = try await ConfigLoader.load(file: config, needsToken: false)
        return ControlClient(socketPath: loaded.config.statusSocket, timeoutSeconds: timeoutSeconds)
    }

    /// Writes the client error to stderr and returns its docs/contract.md exit status: 3 when the
    /// supervisor is unreachable, 1 otherwise.
    func exitCode(for error: ControlClient.ClientError) -> ExitCode {
        StandardError.write("bot-supervisor: \(error)\n")
        if case .unreachable = error { return ExitCode(3) }
        return ExitCode(1)
    }
}

extension OperatorOptions {
    /// Sends `request` and returns the response's envelope, decoded loosely so that the fields
    /// of a newer supervisor are kept. With `showsProgress`, a long operation's progress (backup,
    /// verify, restore) is shown on the terminal while it runs.
    func request(_ request: ControlRequest, timeoutSeconds: Double = 6 * 3600, showsProgress: Bool = true) async throws -> JSONValue {
        let client = try await client(timeoutSeconds: timeoutSeconds)
        let line = try JSONLine.encode(request)
        let showProgress = showsProgress && isatty(STDERR_FILENO) == 1 && !json
        let response: String
        do {
            response = try await withThrowingTaskGroup(of: String?.self) { group in
                // The client's own socket timeout ends the exchange; the pool's deadline is a backstop.
                group.addTask { try await BlockingPool.shared.run("the request", deadline: .seconds(timeoutSeconds + 60)) { try client.exchange(line) } }
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
            throw exitCode(for: error)
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
        let result = try? JSONLine.decode(Result.self, from: try encoder.encode(envelope["result"] ?? .null))
        if json, let value = envelope["result"], value != .null {
            print(String(decoding: try encoder.encode(value), as: UTF8.self))
        } else if let result {
            print(text(result), terminator: "")
        }
        guard envelope["ok"] == .bool(true) else {
            let error = (try? JSONLine.decode(ErrorBody.self, from: try encoder.encode(envelope["error"] ?? .null)))
                ?? ErrorBody(code: "unknown", message: "the supervisor refused without saying why")
            StandardError.write("bot-supervisor: \(error)\n")
            throw ExitCode(1)
        }
    }
}
