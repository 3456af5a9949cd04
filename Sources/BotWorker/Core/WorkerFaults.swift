import Glibc
import Logging

/// Fault injection, for the tests of what happens when a release misbehaves (never set in
/// production): `BOT_WORKER_FAULT` in the worker's environment, parsed once by `RunCommand` and
/// handed to what it affects. Feature code never reads it.
/// - `crash-after-ready`: the worker traps once ready (a real crash, with a backtrace);
/// - `error-burst`: it logs 60 errors once ready (a health check goes critical);
/// - `command-throws`: every slash command throws (`CommandRouter` wraps its handlers);
/// - `crash-on-sigusr1`: it traps when it receives SIGUSR1 (`SignalFaultService`), so that a test
///   crashes a running worker at the moment it chooses, with the Swift runtime's backtrace (a
///   `kill -SEGV` is not reliably a crash of a Swift process);
/// - `log-flood`: once ready, about 1,000,000 error lines a minute for 2 minutes (rate and length
///   from the environment, `floodLog`), for `logs.maxBytes`;
/// - `memory-grow`: once ready, it allocates and touches 8 MiB every 250 ms, up to 512 MiB (a
///   leak, for `worker.memoryMaxBytes`).
///
/// An unknown value is refused at start: a misspelt fault must not pass as a test that ran.
struct WorkerFaults: Sendable, Equatable {
    static let environmentKey = "BOT_WORKER_FAULT"

    enum Fault: String, Sendable, CaseIterable {
        case crashAfterReady = "crash-after-ready"
        case errorBurst = "error-burst"
        case commandThrows = "command-throws"
        case crashOnSIGUSR1 = "crash-on-sigusr1"
        case memoryGrow = "memory-grow"
        case logFlood = "log-flood"
    }

    struct Unknown: Error, CustomStringConvertible {
        var value: String
        var description: String {
            "\(WorkerFaults.environmentKey)=\(value) is not a fault this worker knows; known: \(Fault.allCases.map(\.rawValue).joined(separator: ", ")), or unset"
        }
    }

    /// The error every slash command throws under `command-throws`.
    struct InjectedFault: Error, CustomStringConvertible {
        var description: String { "injected fault: \(WorkerFaults.environmentKey)=\(Fault.commandThrows.rawValue)" }
    }

    var fault: Fault?

    static let none = WorkerFaults(fault: nil)

    init(fault: Fault?) {
        self.fault = fault
    }

    /// Parses the variable's value; nil or empty is no fault.
    init(value: String?) throws(Unknown) {
        guard let value, !value.isEmpty else { self.init(fault: nil); return }
        guard let fault = Fault(rawValue: value) else { throw Unknown(value: value) }
        self.init(fault: fault)
    }

    /// A command's handler as this worker runs it: under `command-throws`, one that throws.
    func command(_ handler: @escaping CommandRouter.Handler) -> CommandRouter.Handler {
        fault == .commandThrows ? { @Sendable _ in throw InjectedFault() } : handler
    }

    /// Once the worker reported ready.
    func afterReady(logger: Logger) {
        switch fault {
        case .crashAfterReady:
            fatalError("injected fault: BOT_WORKER_FAULT=crash-after-ready")
        case .errorBurst:
            for i in 0..<60 { logger.error("injected error", metadata: ["error": "BOT_WORKER_FAULT=error-burst #\(i)"]) }
        case .memoryGrow:
            logger.warning("injected fault: the worker's memory grows", metadata: ["error": "BOT_WORKER_FAULT=memory-grow"])
            // A leak lives as long as the process: nothing waits for this task or cancels it.
            Task.detached { await Self.growMemory() }
        case .logFlood:
            // Runs beside the worker for its whole length: nothing waits for it.
            Task.detached { await Self.floodLog(logger) }
        case .commandThrows, .crashOnSIGUSR1, nil:
            break
        }
    }

    /// `log-flood`: once ready, error lines as fast as `BOT_WORKER_FAULT_FLOOD_PER_MINUTE` says
    /// (default 1,000,000 a minute) for `BOT_WORKER_FAULT_FLOOD_SECONDS` (default 120), through
    /// the ordinary logger (stderr, filed by the supervisor). Each line carries `flood_seq`, a
    /// sequence number from 0, so a missing or torn line is seen; the last says how many went.
    /// It ends when the time is up: when the supervisor files lines slower than the rate, the
    /// writes wait on the full stderr pipe and fewer go.
    private static func floodLog(_ logger: Logger) async {
        func setting(_ name: String, _ fallback: Double) -> Double {
            getenv(name).flatMap { Double(String(cString: $0)) }.flatMap { $0 > 0 ? $0 : nil } ?? fallback
        }
        let perSecond = setting("BOT_WORKER_FAULT_FLOOD_PER_MINUTE", 1_000_000) / 60
        let seconds = setting("BOT_WORKER_FAULT_FLOOD_SECONDS", 120)
        logger.warning("injected fault: log flood", metadata: ["error": "BOT_WORKER_FAULT=log-flood", "seconds": "\(seconds)", "per_second": "\(Int(perSecond))"])
        let clock = ContinuousClock(), start = clock.now, end = start + .seconds(seconds)
        var sequence = 0
        while true {
            logger.error("command failed", metadata: [
                "error": "Discord REST 403 on PUT /guilds/{guild.id}/members/{user.id}/roles/{role.id}: Missing Permissions (50013)",
                "error_type": "discord-rest", "guild_id": "1180000000000000001", "user_id": "\(1_190_000_000_000_000_000 + sequence % 5000)",
                "command": "rank", "flood_seq": "\(sequence)",
            ])
            sequence += 1
            // Paced to the rate: ahead of it, wait; behind it (stderr full), go on at once.
            if sequence % 100 == 0 {
                if clock.now >= end { break }
                let due = start + .seconds(Double(sequence) / perSecond)
                if clock.now < due, (try? await Task.sleep(until: due, clock: clock)) == nil { return }
            }
        }
        logger.warning("injected fault: log flood finished", metadata: ["lines": "\(sequence)", "seconds": "\((clock.now - start).milliseconds / 1000)"])
    }

    /// `memory-grow`: 8 MiB more resident memory every 250 ms, never freed, up to 512 MiB.
    private static func growMemory() async {
        let chunk = 8 << 20
        for _ in 0..<64 {
            guard let block = malloc(chunk) else { return }
            memset(block, 0xA5, chunk)
            guard (try? await Task.sleep(for: .milliseconds(250))) != nil else { return }
        }
    }
}
