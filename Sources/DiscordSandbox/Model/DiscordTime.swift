#if canImport(Glibc)
import Glibc
#endif

/// Time as Discord writes it, `2024-05-01T12:34:56.789000+00:00`, and the wall clock in the units
/// the sandbox uses. Formatting is by hand: the flood stamps tens of thousands of messages a second.
enum DiscordTime {
    static let dayMilliseconds: UInt64 = 86_400_000

    static func nowMilliseconds() -> UInt64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return UInt64(spec.tv_sec) * 1000 + UInt64(spec.tv_nsec) / 1_000_000
    }

    static func nowSeconds() -> Double {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }

    static func iso(_ unixMilliseconds: UInt64) -> String {
        let days = Int64(unixMilliseconds / dayMilliseconds)
        let inDay = Int(unixMilliseconds % dayMilliseconds)
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = Int(doy - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        let year = Int(yoe + era * 400 + (month <= 2 ? 1 : 0))
        let hour = inDay / 3_600_000, minute = inDay / 60000 % 60, second = inDay / 1000 % 60, milli = inDay % 1000
        return "\(year)-\(pad(month, 2))-\(pad(day, 2))T\(pad(hour, 2)):\(pad(minute, 2)):\(pad(second, 2)).\(pad(milli, 3))000+00:00"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }
}
