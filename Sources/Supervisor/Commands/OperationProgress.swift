import IPC

/// What `backup`, `verify` and `restore` show on stderr while they wait for the supervisor's
/// answer, from the `operation` of the status snapshots they poll. No I/O and no clock of its
/// own: each observation comes with its time in seconds.
///
/// At a terminal, one line redrawn in place:
/// `backup  [#####-----]  52%  38.1 MB/s  ETA 0:03  copying`
/// (the rate only where the supervisor counts the phase's bytes; the ETA from the bytes, else from
/// the progress so far). Elsewhere (a pipe, CI's log), one plain line per phase: `backup: copying…`.
struct OperationProgress: Sendable {
    enum Style: Sendable { case bar, lines }

    let style: Style
    /// The phase shown last, and where it started (time and bytes) for its rate.
    private var phase: String?
    private var phaseStart: (at: Double, bytes: Int64?) = (0, nil)
    /// The first observation of the operation, for an ETA from the progress alone.
    private var first: (at: Double, progress: Double)?
    private var drawn = false

    init(style: Style) {
        self.style = style
    }

    /// The text to write to stderr for this observation; nil when there is nothing new.
    mutating func observe(_ operation: OperationStatus?, at now: Double) -> String? {
        guard let operation else { return nil }
        let newPhase = operation.phase != phase
        if newPhase || (operation.bytesDone ?? 0) < (phaseStart.bytes ?? 0) {
            phase = operation.phase
            phaseStart = (now, operation.bytesDone)
        } else if phaseStart.bytes == nil, let done = operation.bytesDone {
            phaseStart = (now, done)
        }
        if first == nil { first = (now, operation.progress) }
        switch style {
        case .lines:
            return newPhase ? "\(operation.name): \(operation.phase)…\n" : nil
        case .bar:
            drawn = true
            return "\r\u{1B}[2K" + line(operation, at: now)
        }
    }

    /// What to write once the answer came: the bar is erased, so the result starts a clean line.
    func finish() -> String? {
        style == .bar && drawn ? "\r\u{1B}[2K" : nil
    }

    /// The bar's line, without the terminal's control characters.
    func line(_ operation: OperationStatus, at now: Double) -> String {
        var fields = [operation.name, Self.bar(operation.progress), Self.percent(operation.progress)]
        let rate = bytesPerSecond(operation, at: now)
        if let rate { fields.append(Self.rate(rate)) }
        if let eta = eta(operation, rate: rate, at: now) { fields.append("ETA " + Self.duration(eta)) }
        fields.append(operation.phase)
        return fields.joined(separator: "  ")
    }

    /// The phase's bytes per second since it was first seen; nil until measurable.
    func bytesPerSecond(_ operation: OperationStatus, at now: Double) -> Double? {
        guard let done = operation.bytesDone, let start = phaseStart.bytes, now - phaseStart.at >= 0.1 else { return nil }
        return Double(done - start) / (now - phaseStart.at)
    }

    /// Seconds left: from the bytes when they are counted, else from the progress since the
    /// first observation. Nil while nothing has moved.
    func eta(_ operation: OperationStatus, rate: Double?, at now: Double) -> Double? {
        if let rate, rate > 0, let done = operation.bytesDone, let total = operation.bytesTotal {
            return Double(max(total - done, 0)) / rate
        }
        guard let first, operation.progress > first.progress, now > first.at else { return nil }
        let perUnit = (now - first.at) / (operation.progress - first.progress)
        return perUnit * (1 - operation.progress)
    }

    static func bar(_ fraction: Double, width: Int = 10) -> String {
        let filled = Int((min(max(fraction, 0), 1) * Double(width)).rounded(.down))
        return "[" + String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled) + "]"
    }

    static func percent(_ fraction: Double) -> String {
        let value = Int((min(max(fraction, 0), 1) * 100).rounded(.down))
        return String(repeating: " ", count: 3 - String(value).count) + "\(value)%"
    }

    /// Decimal megabytes per second with one decimal: `38.1 MB/s`.
    static func rate(_ bytesPerSecond: Double) -> String {
        let tenths = Int((max(bytesPerSecond, 0) / 100_000).rounded())
        return "\(tenths / 10).\(tenths % 10) MB/s"
    }

    /// `m:ss`, or `h:mm:ss` from an hour.
    static func duration(_ seconds: Double) -> String {
        let total = Int(max(seconds, 0).rounded())
        let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60)
        let twoDigits = { (n: Int) in n < 10 ? "0\(n)" : "\(n)" }
        return hours > 0 ? "\(hours):\(twoDigits(minutes)):\(twoDigits(secs))" : "\(total / 60):\(twoDigits(secs))"
    }
}
