import IPC
import Testing

@testable import Supervisor

/// The progress display of `backup`, `verify` and `restore`.
@Suite struct OperationProgressTests {
    func operation(_ phase: String, _ progress: Double, done: Int64? = nil, total: Int64? = nil) -> OperationStatus {
        OperationStatus(name: "backup", startedAt: "2026-12-05T12:00:00Z", phase: phase, progress: progress, bytesDone: done, bytesTotal: total)
    }

    @Test func theBarWithRateAndETAFromTheBytes() {
        var display = OperationProgress(style: .bar)
        #expect(display.observe(operation("copying", 0.1, done: 10_000_000, total: 100_000_000), at: 0) == "\r\u{1B}[2Kbackup  [#---------]   10%  copying")
        // 38.1 MB in one second: 51.9 MB left at 38.1 MB/s.
        let text = display.observe(operation("copying", 0.52, done: 48_100_000, total: 100_000_000), at: 1)
        #expect(text == "\r\u{1B}[2Kbackup  [#####-----]   52%  38.1 MB/s  ETA 0:01  copying")
        #expect(display.finish() == "\r\u{1B}[2K")
    }

    @Test func withoutBytesTheETAComesFromTheProgress() {
        var display = OperationProgress(style: .bar)
        _ = display.observe(operation("replaying the journal", 0.5), at: 10)
        let text = display.observe(operation("replaying the journal", 0.6), at: 12)
        // 0.1 in 2 s: 0.4 left takes 8 s.
        #expect(text == "\r\u{1B}[2Kbackup  [######----]   60%  ETA 0:08  replaying the journal")
    }

    @Test func aNewPhaseMeasuresItsRateAfresh() {
        var display = OperationProgress(style: .bar)
        _ = display.observe(operation("copying", 0.4, done: 40_000_000, total: 100_000_000), at: 0)
        _ = display.observe(operation("copying", 0.8, done: 80_000_000, total: 100_000_000), at: 1)
        let verifying = operation("verifying", 0.9, done: 0, total: 100_000_000)
        #expect(display.observe(verifying, at: 1.05)?.contains("MB/s") == false)
        #expect(display.observe(operation("verifying", 0.95, done: 50_000_000, total: 100_000_000), at: 2.05)?.contains("50.0 MB/s  ETA 0:01") == true)
    }

    @Test func linesOnlyWhenThePhaseChanges() {
        var display = OperationProgress(style: .lines)
        #expect(display.observe(nil, at: 0) == nil)
        #expect(display.observe(operation("starting", 0), at: 0.2) == "backup: starting…\n")
        #expect(display.observe(operation("copying", 0.1), at: 0.4) == "backup: copying…\n")
        #expect(display.observe(operation("copying", 0.5), at: 0.6) == nil)
        #expect(display.observe(operation("verifying", 0.9), at: 0.8) == "backup: verifying…\n")
        #expect(display.finish() == nil)
    }

    @Test func nothingDrawnNothingToErase() {
        #expect(OperationProgress(style: .bar).finish() == nil)
    }

    @Test func formatting() {
        #expect(OperationProgress.bar(0) == "[----------]")
        #expect(OperationProgress.bar(0.52) == "[#####-----]")
        #expect(OperationProgress.bar(1.5) == "[##########]")
        #expect(OperationProgress.percent(0.07) == "  7%")
        #expect(OperationProgress.percent(1) == "100%")
        #expect(OperationProgress.rate(38_149_000) == "38.1 MB/s")
        #expect(OperationProgress.rate(0) == "0.0 MB/s")
        #expect(OperationProgress.duration(3) == "0:03")
        #expect(OperationProgress.duration(2.4) == "0:02")
        #expect(OperationProgress.duration(75) == "1:15")
        #expect(OperationProgress.duration(3_725) == "1:02:05")
    }

    @Test func unknownByteCountsAreNullInTheJSON() throws {
        let text = try JSONLine.encode(operation("starting", 0))
        #expect(text.contains("\"bytesDone\":null"))
        #expect(text.contains("\"bytesTotal\":null"))
        let decoded = try JSONLine.decode(OperationStatus.self, from: #"{"name":"verify","startedAt":"x","phase":"p","progress":0.5}"#)
        #expect(decoded.bytesDone == nil)
    }
}
