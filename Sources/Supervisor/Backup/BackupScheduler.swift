import FoundationEssentials
import Glibc
import Logging
import ServiceLifecycle

/// Takes the daily backup at `backup.dailyAt` local time. Once the worker is first ready, it takes
/// one at once when the newest verified backup is more than a day old (a new installation, or the
/// supervisor was down at the usual time).
struct BackupScheduler: Service {
    let dailyAt: (hour: Int, minute: Int)
    let keeper: DataKeeper
    let store: StatusStore
    let logger: Logger

    func run() async throws {
        await cancelWhenGracefulShutdown {
            // After the first start, so that a database the worker just created is included.
            _ = await store.waitForReady(excluding: nil, timeout: .seconds(600))
            if keeper.isWorthBackingUp(), keeper.newestVerifiedBackupDate().map({ Date().timeIntervalSince($0) > 86_400 }) ?? true {
                logger.info("no verified backup from the last 24 hours; taking one now")
                _ = await keeper.backup(reason: .daily)
            }
            var wall = Date()
            var steady = ContinuousClock.now
            while !Task.isCancelled {
                let next = Self.nextRun(after: Date(), hour: dailyAt.hour, minute: dailyAt.minute)
                // Sleep in steps of at most `step`, so that a wall clock that jumps (NTP after a
                // suspend, an operator's `date -s`) is noticed within one: the backup then follows
                // the new time, once, not one per missed day.
                while Date() < next {
                    let wait = min(next.timeIntervalSince(Date()), Self.step)
                    guard (try? await Task.sleep(for: .milliseconds(Int64(wait * 1000) + 1))) != nil else { return }
                    if let jump = Self.jump(wallFrom: wall, to: Date(), steadyFrom: steady, to: ContinuousClock.now) {
                        logger.warning("the wall clock jumped", metadata: ["seconds": "\(Int(jump))"])
                        await store.raise(.warning, "the system clock jumped \(jump > 0 ? "forward" : "back") by \(Self.describe(abs(jump))); backups and log rotation follow the new time")
                    }
                    (wall, steady) = (Date(), ContinuousClock.now)
                }
                if keeper.isWorthBackingUp() {
                    _ = await keeper.backup(reason: .daily)
                }
                (wall, steady) = (Date(), ContinuousClock.now)
            }
        }
    }

    static let step: TimeInterval = 10

    /// How far the wall clock moved beyond the time that passed (seconds), when that is over a
    /// minute: a jump.
    static func jump(wallFrom: Date, to wallTo: Date, steadyFrom: ContinuousClock.Instant, to steadyTo: ContinuousClock.Instant) -> Double? {
        let elapsed = steadyTo - steadyFrom
        let steadySeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let difference = wallTo.timeIntervalSince(wallFrom) - steadySeconds
        return abs(difference) > 60 ? difference : nil
    }

    static func describe(_ seconds: Double) -> String {
        let minutes = Int(seconds / 60)
        if minutes < 60 { return "\(minutes) min" }
        let hours = minutes / 60
        if hours < 48 { return "\(hours) h \(minutes % 60) min" }
        return "\(hours / 24) days \(hours % 24) h"
    }

    /// The next time the local clock shows `hour:minute`, strictly after `date` (mktime handles
    /// daylight saving changes).
    static func nextRun(after date: Date, hour: Int, minute: Int) -> Date {
        var now = time_t(date.timeIntervalSince1970)
        var local = tm()
        localtime_r(&now, &local)
        local.tm_hour = Int32(hour)
        local.tm_min = Int32(minute)
        local.tm_sec = 0
        local.tm_isdst = -1
        var candidate = mktime(&local)
        if candidate <= now {
            local.tm_mday += 1
            local.tm_hour = Int32(hour)
            local.tm_min = Int32(minute)
            local.tm_isdst = -1
            candidate = mktime(&local)
        }
        return Date(timeIntervalSince1970: TimeInterval(candidate))
    }
}
