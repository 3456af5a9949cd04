import Testing

@testable import BotWorker

@Suite struct IdentifyPacingTests {
    let plenty = SessionStartLimit(total: 1000, remaining: 990, resetAfter: .seconds(80_000), maxConcurrency: 1)

    @Test func aFirstIdentifyGoesAtOnce() {
        #expect(IdentifyPacing.delay(history: [], limit: plenty, now: 10_000).seconds == 0)
        #expect(IdentifyPacing.delay(history: [], limit: nil, now: 10_000).seconds == 0)
    }

    @Test func identifiesAreFiveSecondsApart() {
        let (wait, reason) = IdentifyPacing.delay(history: [9_998], limit: plenty, now: 10_000)
        #expect(wait == 3)
        #expect(reason?.contains("5.0 s apart") == true)
        #expect(IdentifyPacing.delay(history: [9_990], limit: plenty, now: 10_000).seconds == 0)
    }

    @Test func aCrashLoopIsHeldToFortyAnHour() {
        // 40 identifies in the last hour, the oldest 3000 s ago: wait until it is an hour old.
        let history = (0..<40).map { 7_000 + Double($0) * 70 }
        let (wait, reason) = IdentifyPacing.delay(history: history, limit: plenty, now: 10_000)
        #expect(wait == 600)
        #expect(reason?.contains("40 identifies in the last hour") == true)
        #expect(IdentifyPacing.delay(history: Array(history.dropFirst()), limit: plenty, now: 10_000).seconds == 0)
    }

    @Test func nothingLeftWaitsForTheReset() {
        let none = SessionStartLimit(total: 1000, remaining: 0, resetAfter: .seconds(3_600), maxConcurrency: 1)
        let (wait, reason) = IdentifyPacing.delay(history: [], limit: none, now: 10_000)
        #expect(wait == 3_600)
        #expect(reason?.contains("used up") == true)
    }

    @Test func theLastFewAreSpreadUntilTheReset() {
        let few = SessionStartLimit(total: 1000, remaining: 10, resetAfter: .seconds(5_000), maxConcurrency: 1)
        // 5000 s / 10 left = one per 500 s; the last was 100 s ago.
        #expect(IdentifyPacing.delay(history: [9_900], limit: few, now: 10_000).seconds == 400)
    }
}
