import Testing

@testable import Supervisor

@Suite struct SupervisorFaultsTests {
    @Test func slowMaintenanceIsADelayPerStep() throws {
        #expect(try SupervisorFaults(value: "slow-maintenance:250") == SupervisorFaults(maintenanceStepDelay: .milliseconds(250)))
        #expect(try SupervisorFaults(value: nil) == .none)
        #expect(try SupervisorFaults(value: "") == .none)
    }

    @Test(arguments: ["slow-maintenance", "slow-maintenance:", "slow-maintenance:-3", "slow-maintenance:fast", "crash-after-ready"])
    func anUnknownValueIsRefusedNamingIt(_ value: String) {
        #expect {
            try SupervisorFaults(value: value)
        } throws: { error in
            "\(error)".contains("BOT_SUPERVISOR_FAULT=\(value) is not a fault") && "\(error)".contains("slow-maintenance:MS")
        }
    }

    @Test func theTrackerTakesItsDelayFromItsInitializer() {
        // No delay by default: a step is only an update. (Said by the setting, not timed: the
        // unit tests run in parallel, and any call may be descheduled for a while.)
        let tracker = OperationTracker()
        #expect(tracker.stepDelayMicroseconds == nil)
        tracker.begin("backup")
        tracker.step("copying", 0.5)
        #expect(tracker.status?.phase == "copying")
        let slow = OperationTracker(stepDelay: .milliseconds(60))
        slow.begin("backup")
        let before = ContinuousClock.now
        slow.step("copying", 0.5)
        #expect(ContinuousClock.now - before >= .milliseconds(60))
        #expect(slow.status?.phase == "copying")
    }
}
