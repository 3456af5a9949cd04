import Logging

/// Fault injection, for the tests of what happens when a release misbehaves (never set in
/// production): `BOT_WORKER_FAULT` in the worker's environment, parsed once by `RunCommand` and
/// handed to what it affects. Feature code never reads it.
/// - `crash-after-ready`: the worker traps once ready (a real crash, with a backtrace);
/// - `error-burst`: it logs 60 errors once ready (a health check goes critical);
/// - `command-throws`: every slash command throws (`CommandRouter` wraps its handlers);
/// - `crash-on-sigusr1`: it traps when it receives SIGUSR1 (`SignalFaultService`), so that a test
///   crashes a running worker at the moment it chooses, with the Swift runtime's backtrace (a
///   `kill -SEGV` is not reliably a crash of a Swift process).
///
/// An unknown value is refused at start: a misspelt fault must not pass as a test that ran.
struct WorkerFaults: Sendable, Equatable {
    static let environmentKey = "BOT_WORKER_FAULT"

    enum Fault: String, Sendable, CaseIterable {
        case crashAfterReady = "crash-after-ready"
        case errorBurst = "error-burst"
        case commandThrows = "command-throws"
        case crashOnSIGUSR1 = "crash-on-sigusr1"
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
        case .commandThrows, .crashOnSIGUSR1, nil:
            break
        }
    }
}
