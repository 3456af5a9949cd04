import FoundationEssentials
import Glibc
import IPC

/// The installed releases: `<root>/releases/<version>/bin/{bot-supervisor,bot-worker,
/// discord-sandbox}`, the `current` link the unit starts, and `previous`, what `rollback` goes
/// back to. Links are switched atomically (a new link renamed over the old one).
struct ReleaseLinks: Sendable {
    let root: String

    var current: String { root + "/current" }
    var previous: String { root + "/previous" }
    var releases: String { root + "/releases" }

    /// Where a link points (absolute), or nil.
    func target(of link: String) -> String? {
        guard let value = try? FileManager.default.destinationOfSymbolicLink(atPath: link) else { return nil }
        return value.hasPrefix("/") ? value : root + "/" + value
    }

    /// Points `link` at `target`, atomically.
    func point(_ link: String, at target: String) throws {
        let temporary = link + ".new"
        unlink(temporary)
        guard symlink(target, temporary) == 0, rename(temporary, link) == 0 else {
            throw DeployError("cannot switch \(link) to \(target): \(String(cString: strerror(errno)))")
        }
        let directory = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }

    /// The release's name: its `VERSION` file, else its directory's name.
    static func version(of release: String) -> String {
        let text = (try? String(contentsOfFile: release + "/VERSION", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        let name = text.flatMap { $0.isEmpty ? nil : $0 } ?? String(release.split(separator: "/").last ?? "release")
        return String(name.map { $0.isLetter || $0.isNumber || "._-".contains($0) ? $0 : "-" })
    }

    /// `release` itself when it is already under `releases/`, else a copy of it there.
    func install(_ release: String) throws -> String {
        let resolved = URL(fileURLWithPath: release).resolvingSymlinksInPath().path
        if resolved.hasPrefix(URL(fileURLWithPath: releases).resolvingSymlinksInPath().path + "/") { return resolved }
        try FileManager.default.createDirectory(atPath: releases, withIntermediateDirectories: true)
        var target = releases + "/" + Self.version(of: resolved)
        if FileManager.default.fileExists(atPath: target) { target += "-" + BackupManifest.compactTimestamp(Date()) }
        try FileManager.default.copyItem(atPath: resolved, toPath: target)
        return target
    }

    /// True when `release`'s supervisor is another binary than the one running.
    static func supervisorDiffers(in release: String) -> Bool {
        let mine = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? ""
        let theirs = URL(fileURLWithPath: release + "/bin/bot-supervisor").resolvingSymlinksInPath().path
        return mine != theirs
    }
}

struct DeployError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
