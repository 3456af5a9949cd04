import Foundation
import Glibc
import IPC
import TestSupport
import Testing

/// Runs the real `bot-supervisor` (and through it the real `bot-worker`) in a temporary data
/// directory, with a NOTIFY_SOCKET the test reads, and talks to it as an operator would.
/// Every wait has a deadline.
final class SupervisorHarness {
    typealias Timeout = TestFailure

    static let binDir: String = {
        if let dir = ProcessInfo.processInfo.environment["BOT_BIN_DIR"] { return dir }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug").path
    }()
    static var supervisorBinary: String { binDir + "/bot-supervisor" }

    let dir: String
    let dataDir: String
    let configPath: String
    var statusSocket: String { dataDir + "/run/supervisor.sock" }
    var workerSocket: String { dataDir + "/run/worker.sock" }
    var logsDir: String { dataDir + "/logs" }
    let notify: NotifyListener
    private(set) var process: Process?
    /// The dashboard's port: every supervisor of the tests gets its own.
    let dashboardPort: Int

    /// `config` is merged over fast test defaults (short heartbeat timings).
    /// - Parameter drainNotify: false leaves NOTIFY_SOCKET unread, like a stalled systemd.
    init(config: [String: Any] = [:], drainNotify: Bool = true) throws {
        dir = try makeTemporaryDirectory("bs")
        chmod(dir, 0o755)
        dataDir = dir + "/data"
        configPath = dir + "/config.json"
        notify = try NotifyListener(path: dir + "/notify.sock", drain: drainNotify)
        dashboardPort = try freePort()
        var merged: [String: Any] = [
            "dashboard": ["listen": "127.0.0.1:\(dashboardPort)"],
            "dataDir": dataDir,
            "worker": ["heartbeatIntervalSeconds": 0.2, "heartbeatTimeoutSeconds": 1.5, "stopGraceSeconds": 1, "restartDelaySeconds": 0.1],
            "control": ["readTimeoutSeconds": 1],
            // The simulated members stay quiet unless a test asks for traffic.
            "sandbox": ["activityPerMinute": 0, "members": 20],
        ]
        for (key, value) in config {
            if let nested = value as? [String: Any], let existing = merged[key] as? [String: Any] {
                merged[key] = existing.merging(nested) { $1 }
            } else {
                merged[key] = value
            }
        }
        try JSONSerialization.data(withJSONObject: merged).write(to: URL(fileURLWithPath: configPath))
    }

    deinit {
        if let process, process.isRunning { kill(process.processIdentifier, SIGKILL) }
        if getenv("KEEP_HARNESS_DIR") == nil { try? FileManager.default.removeItem(atPath: dir) }
    }

    /// Writes an executable shell script into the test directory and returns its path.
    func script(_ name: String, _ body: String) throws -> String {
        let path = dir + "/" + name
        try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    func start(environment extra: [String: String] = [:], arguments: [String] = []) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.supervisorBinary)
        process.arguments = ["run", "--config", configPath] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["NOTIFY_SOCKET"] = notify.path
        environment.merge(extra) { $1 }
        process.environment = environment
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        FileManager.default.createFile(atPath: dir + "/stderr.txt", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: dir + "/stderr.txt")
        try process.run()
        self.process = process
    }

    /// Starts the supervisor and waits for READY=1.
    func startReady(timeout: Duration = .seconds(30)) throws {
        let seen = notify.all.count
        try start()
        _ = try waitForNotification(timeout: timeout, after: seen) { $0.contains("READY=1") }
    }

    /// Waits for a notify datagram matching `predicate`, received at any time so far.
    func waitForNotification(timeout: Duration, after index: Int = 0, _ predicate: (String) -> Bool) throws -> String {
        guard let message = notify.first(timeout: timeout, after: index, where: predicate) else {
            throw Timeout(description: "no notification matched within \(timeout); got \(notify.all); stderr: \(stderr)")
        }
        return message
    }

    var allNotifications: [String] { notify.all }

    func status() throws -> StatusSnapshot {
        try ControlClient(socketPath: statusSocket, timeoutSeconds: 10).send(ControlRequest(cmd: .status), expecting: StatusSnapshot.self)
    }

    /// Polls the status socket until `predicate` holds.
    @discardableResult
    func waitForStatus(timeout: Duration, _ what: String, _ predicate: (StatusSnapshot) -> Bool) throws -> StatusSnapshot {
        let deadline = ContinuousClock.now + timeout
        var last: StatusSnapshot?
        while ContinuousClock.now < deadline {
            if let snapshot = try? status() {
                if predicate(snapshot) { return snapshot }
                last = snapshot
            }
            usleep(20_000)
        }
        throw Timeout(description: "status never showed \(what) within \(timeout); last: \(String(describing: last?.worker))")
    }

    /// Sends SIGTERM and waits for the supervisor to exit; returns its exit status.
    func terminate(timeout: Duration = .seconds(20)) throws -> Int32 {
        guard let process else { throw Timeout(description: "not started") }
        kill(process.processIdentifier, SIGTERM)
        return try waitForExit(timeout: timeout)
    }

    func waitForExit(timeout: Duration) throws -> Int32 {
        guard let process else { throw Timeout(description: "not started") }
        let deadline = ContinuousClock.now + timeout
        while process.isRunning {
            guard ContinuousClock.now < deadline else { throw Timeout(description: "the supervisor did not exit within \(timeout)") }
            usleep(10_000)
        }
        return process.terminationStatus
    }

    var stderr: String { (try? String(contentsOfFile: dir + "/stderr.txt", encoding: .utf8)) ?? "" }

    func log(_ system: String) -> [[String: Any]] {
        guard let text = try? String(contentsOfFile: "\(logsDir)/\(system).log", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
    }

    /// Runs `bot-supervisor ARGS` as a client and returns its exit status and output.
    static func cli(_ arguments: [String], prefix: [String] = [], binary: String = supervisorBinary, environment extra: [String: String] = [:]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        let launcher = prefix.first ?? binary
        process.executableURL = URL(fileURLWithPath: launcher)
        process.arguments = Array(prefix.dropFirst()) + (prefix.isEmpty ? [] : [binary]) + arguments
        if !extra.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 } }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }
}

/// The receiving end of NOTIFY_SOCKET: a Unix datagram socket, drained at once by a thread of
/// its own (like systemd, which never lets a service block on sd_notify).
final class NotifyListener: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var received: [String] = []
    private var consumed = 0

    init(path: String, drain: Bool = true) throws {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.fd = fd
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8)) }
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0 else { throw SupervisorHarness.Timeout(description: "bind \(path): \(String(cString: strerror(errno)))") }
        guard drain else { return }
        Thread { [weak self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                guard count > 0, let self else { return }
                let message = String(decoding: buffer[..<count], as: UTF8.self)
                self.lock.withLock { self.received.append(message) }
            }
        }.start()
    }

    deinit {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    /// Every message received so far.
    var all: [String] { lock.withLock { received } }

    /// Waits for a message matching `predicate`.
    func first(timeout: Duration, after index: Int = 0, where predicate: (String) -> Bool) -> String? {
        let deadline = ContinuousClock.now + timeout
        repeat {
            if let match = all.dropFirst(index).first(where: predicate) { return match }
            usleep(10_000)
        } while ContinuousClock.now < deadline
        return nil
    }
}

/// A raw client for feeding bad input to a socket.
final class RawSocket {
    private let fd: Int32

    init(path: String, drain: Bool = true) throws {
        fd = try ControlClient(socketPath: path, timeoutSeconds: 5).connectOnly()
    }

    deinit { close(fd) }

    /// Sends bytes; a peer that already closed is not an error here.
    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if sent <= 0 { return }
            offset += sent
        }
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    /// Reads one line, or nil at end of file or after `timeout`.
    func readLine(timeout: Duration) -> String? {
        var line = [UInt8]()
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollfd, 1, 50) == 1 else { continue }
            var byte: UInt8 = 0
            let count = recv(fd, &byte, 1, 0)
            if count <= 0 { return nil }
            if byte == UInt8(ascii: "\n") { return String(decoding: line, as: UTF8.self) }
            line.append(byte)
        }
        return nil
    }

    /// Whether the peer closed the connection within `timeout` (reads and drops anything else).
    func isClosedByPeer(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 4096)
        while ContinuousClock.now < deadline {
            var pollfd = Glibc.pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&pollfd, 1, 50) == 1 else { continue }
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count <= 0 { return true }
        }
        return false
    }
}

extension SupervisorHarness {
    /// Edits the config file (the JSON written at init) as text.
    func rewriteConfig(_ edit: (String) -> String) throws {
        let text = try String(contentsOfFile: configPath, encoding: .utf8)
        try edit(text).write(toFile: configPath, atomically: true, encoding: .utf8)
    }
}

/// A Python helper process (a concurrent SQLite writer, a fixture maker), read line by line.
final class PythonScript {
    private let process: Process
    private let output: FileHandle
    private var buffer = Data()

    private init(process: Process, output: FileHandle) {
        self.process = process
        self.output = output
    }

    /// SIGKILL, not SIGTERM: the child inherits the test process's ignored signals (SIGTERM is
    /// one under the test runner), and a server left behind holds the runner's output pipe open,
    /// so that `swift test` never ends.
    deinit {
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
    }

    static func start(_ source: String, arguments: [String]) throws -> PythonScript {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let lines = source.split(separator: "\n", omittingEmptySubsequences: false)
        let indent = lines.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
            .map { $0.prefix(while: { $0 == " " }).count }.min() ?? 0
        let dedented = lines.map { String($0.dropFirst(min(indent, $0.prefix(while: { $0 == " " }).count))) }.joined(separator: "\n")
        process.arguments = ["python3", "-c", dedented] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        return PythonScript(process: process, output: pipe.fileHandleForReading)
    }

    /// The next line of output, or nil at its end (a 60 s deadline guards the test).
    func readLine() -> String? {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<newline], as: UTF8.self)
                buffer.removeSubrange(...newline)
                return line
            }
            let chunk = output.availableData
            if chunk.isEmpty { return nil }
            buffer.append(chunk)
        }
        return nil
    }
}
