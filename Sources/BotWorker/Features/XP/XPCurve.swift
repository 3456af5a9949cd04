/// Levels from XP on MEE6's curve, the one members know: going from level `l` to `l + 1` takes
/// `5 l² + 50 l + 100` XP (100 for the first level, 155 for the second). Total XP is stored;
/// the level is always derived from it.
enum XPCurve {
    static func xpToNext(from level: Int) -> Int { 5 * level * level + 50 * level + 100 }

    /// Total XP needed to reach `level` from zero.
    static func totalXP(for level: Int) -> Int {
        (0..<max(0, level)).reduce(0) { $0 + xpToNext(from: $1) }
    }

    static func level(forXP xp: Int) -> Int {
        var level = 0
        var needed = xpToNext(from: 0)
        var left = xp
        while left >= needed {
            left -= needed
            level += 1
            needed = xpToNext(from: level)
        }
        return level
    }
}
