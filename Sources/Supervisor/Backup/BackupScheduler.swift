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
            if await keeper.isWorthBackingUp(), (await keeper.newestVerifiedBackupDate()).map({ Date().timeIntervalSince($0) > 86_400 }) ?? true {
                logger.info("no verified backup from the last 24 hours; taking one now")
                _ = await keeper.backup(reason: .daily)
            }
            while !Task.isCancelled {
                let next = Self.nextRun(after: Date(), hour: dailyAt.hour, minute: dailyAt.minute)
                // Sleep in steps of at most an hour, so that a clock that jumps is noticed.
                while Date() < next {
                    let wait = min(next.timeIntervalSince(Date()), 3600)
                    guard (try? await Task.sleep(for: .milliseconds(Int64(wait * 1000) + 1))) != nil else { return }
                }
                if await keeper.isWorthBackingUp() {
                    _ = await keeper.backup(reason: .daily)
                }
            }
        }
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
