import Testing

@testable import BotWorker

@Suite struct WorkerFaultsTests {
    @Test(arguments: WorkerFaults.Fault.allCases)
    func everyKnownFaultParses(_ fault: WorkerFaults.Fault) throws {
        #expect(try WorkerFaults(value: fault.rawValue) == WorkerFaults(fault: fault))
    }

    @Test func noValueIsNoFault() throws {
        #expect(try WorkerFaults(value: nil) == .none)
        #expect(try WorkerFaults(value: "") == .none)
        #expect(WorkerFaults.Fault(rawValue: "crash-on-sigusr1") == .crashOnSIGUSR1)
    }

    @Test func anUnknownFaultIsRefusedNamingTheKnownOnes() {
        #expect {
            try WorkerFaults(value: "crash-on-sigusr2")
        } throws: { error in
            let text = "\(error)"
            return text.contains("BOT_WORKER_FAULT=crash-on-sigusr2") && text.contains("crash-on-sigusr1") && text.contains("command-throws")
        }
    }
}
