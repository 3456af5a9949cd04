import FoundationEssentials

/// Fault injection for the tests of what happens when the supervisor is killed mid-operation
/// (never set in production), from `BOT_SUPERVISOR_FAULT`, parsed once at start:
/// - `slow-maintenance:MS`: each step of a backup or restore takes MS milliseconds longer, so
///   that the fault-injection suite (Tests/Fault) can kill the supervisor in the middle of one,
///   at a phase it chooses.
///
/// An unknown value is refused at start: a misspelt fault must not pass as a test that ran.
struct SupervisorFaults: Sendable, Equatable {
    static let environmentKey = "BOT_SUPERVISOR_FAULT"

    struct Unknown: Error, CustomStringConvertible {
        var value: String
        var description: String {
            "\(SupervisorFaults.environmentKey)=\(value) is not a fault this supervisor knows; known: slow-maintenance:MS (a number of milliseconds), or unset"
        }
    }

    /// Added to each step of a backup or restore; nil without the fault.
    var maintenanceStepDelay: Duration?

    static let none = SupervisorFaults()

    init(maintenanceStepDelay: Duration? = nil) {
        self.maintenanceStepDelay = maintenanceStepDelay
    }

    /// Parses the variable's value; nil or empty is no fault.
    init(value: String?) throws(Unknown) {
        guard let value, !value.isEmpty else { self.init(); return }
        let prefix = "slow-maintenance:"
        guard value.hasPrefix(prefix), let ms = UInt32(value.dropFirst(prefix.count)) else { throw Unknown(value: value) }
        self.init(maintenanceStepDelay: .milliseconds(ms))
    }

    /// This process's faults, parsed from its environment once (the environment does not change
    /// after start). `RunCommand` reads it first, refuses to start on an unknown value, and hands
    /// the delay to the `DataKeeper`'s `OperationTracker`.
    static let fromEnvironment: Result<SupervisorFaults, Unknown> = Result { () throws(Unknown) in
        try SupervisorFaults(value: ProcessInfo.processInfo.environment[environmentKey])
    }
}
