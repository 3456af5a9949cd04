// What the test targets share besides the fuzzer: temporary directories, deadline waits and
// process liveness. Every wait in a test has a deadline; none is a sleep standing in for an event.

import FoundationEssentials
import Glibc

/// A wait that reached its deadline, or a set-up step that failed; the description says which.
package struct TestFailure: Error, CustomStringConvertible {
    package var description: String
    package init(description: String) { self.description = description }
}

/// A fresh directory under /tmp (short: socket paths inside it are limited to ~108 bytes).
package func makeTemporaryDirectory(_ prefix: String = "bot-test") throws -> String {
    var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw TestFailure(description: "mkdtemp failed: errno \(errno)") }
    return String(cString: made)
}

/// Whether a process exists and runs code: a zombie (state Z in /proc/PID/stat, exited but not
/// yet reaped) counts as gone.
package func processIsAlive(_ pid: Int32) -> Bool {
    guard kill(pid, 0) == 0 else { return false }
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")"), stat.distance(from: close, to: stat.endIndex) > 2
    else { return false }
    return stat[stat.index(close, offsetBy: 2)] != "Z"
}

/// Polls `condition` every 10 ms until it holds; throws once `timeout` has passed.
package func waitUntil(timeout: Duration, _ what: String, _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + timeout
    while try !condition() {
        guard ContinuousClock.now < deadline else { throw TestFailure(description: "\(what) did not happen within \(timeout)") }
        usleep(10_000)
    }
}
