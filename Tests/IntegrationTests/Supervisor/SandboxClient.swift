import AsyncHTTPClient
import Foundation
import IPC
import NIOCore

/// Drives a `discord-sandbox` through its control API (`/sandbox/...`), as tests and benchmarks do.
struct SandboxClient: Sendable {
    let baseURL: String

    func get(_ path: String) async throws -> JSONValue {
        try await send("GET", path, body: nil)
    }

    @discardableResult
    func post(_ path: String, _ body: JSONValue = .object([:])) async throws -> JSONValue {
        try await send("POST", path, body: body)
    }

    private func send(_ method: String, _ path: String, body: JSONValue?) async throws -> JSONValue {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .init(rawValue: method)
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return try JSONDecoder().decode(JSONValue.self, from: Data(bytes.readableBytesView))
    }
}

/// A `discord-sandbox` started by the test itself, for the worker to reach in `discord` mode
/// (a rejected token, refused intents): the production path against the local Discord.
final class SandboxServer {
    let process = Process()
    let listening: JSONValue
    private let input = Pipe()

    init(arguments: [String], timeout: TimeInterval = 15) throws {
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: SupervisorHarness.binDir + "/discord-sandbox")
        process.arguments = ["--port", "0", "--activity-per-minute", "0", "--exit-on-stdin-eof"] + arguments
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let lines = LineReader(output.fileHandleForReading)
        guard let line = lines.firstLine(timeout: timeout),
              let value = try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8)) else {
            process.terminate()
            throw SupervisorHarness.Timeout(description: "discord-sandbox did not say where it listens")
        }
        listening = value
    }

    var apiBaseURL: String { listening["apiBaseURL"]?.stringValue ?? "" }
    var gatewayURL: String { listening["gatewayURL"]?.stringValue ?? "" }
    var control: SandboxClient { SandboxClient(baseURL: "http://127.0.0.1:\(listening["port"]?.intValue ?? 0)") }

    deinit {
        try? input.fileHandleForWriting.close()
        if process.isRunning { process.terminate() }
    }
}

/// Reads the first line of a pipe on a thread of its own, with a deadline.
final class LineReader: @unchecked Sendable {  // `line` is written before the semaphore is signalled
    private let done = DispatchSemaphore(value: 0)
    private var line: String?

    init(_ handle: FileHandle) {
        Thread.detachNewThread { [self] in
            var data = Data()
            while !data.contains(UInt8(ascii: "\n")) {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                data += chunk
            }
            line = String(decoding: data.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            done.signal()
        }
    }

    func firstLine(timeout: TimeInterval) -> String? {
        done.wait(timeout: .now() + timeout) == .success ? line : nil
    }
}
