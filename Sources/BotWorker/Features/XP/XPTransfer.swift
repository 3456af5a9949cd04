import FoundationEssentials
import GRDB
import IPC

/// XP brought in from another bot or a spreadsheet, and taken out again: the format-independent
/// core of `bot-worker xp import|export`, of the supervisor's `xp-import`/`xp-export` and of the
/// `/levels import|export` commands.
///
/// ```swift
/// let entries = try XPTransfer.parse(bytes, format: .mee6)      // refused whole when malformed
/// let plan = try await database.write("xp.import") { db in
///     try XPTransfer.apply(db, guild: guild, entries: entries)   // one transaction
/// }.value
/// print(plan.summary)   // "1000 members in the file: 998 added, 2 updated, 0 unchanged; …"
/// ```
///
/// Import semantics: each listed member's XP, messages and voice minutes become the file's, and
/// the level the one the XP gives on `XPCurve` (a level in the file that disagrees is not an
/// error: it is counted in `Plan.levelsRecomputed` and said in the summary). Members the file
/// does not list are left as they are, so a large guild can be imported page by page. A member's
/// name, `hidden` and `left_at` are kept. Level rewards and announcements are not replayed: a
/// member's roles follow at their next level change.
///
/// - Warning: a malformed file is refused whole, before anything is written; `parse` names the
///   line (and field) it fails on.
enum XPTransfer {
    enum Format: String, Sendable, CaseIterable { case mee6, csv }

    /// A larger file is refused before it is read.
    static let maximumBytes = 50 << 20
    /// XP, messages or voice minutes above this are refused as a mistake: MEE6's busiest members
    /// have around 10⁸ XP.
    static let maximumCount = 1_000_000_000_000
    /// The CSV columns, in the order `export` writes them.
    static let csvColumns = ["user_id", "xp", "level", "messages", "voice_minutes"]

    struct Entry: Sendable, Equatable {
        var user: UserID
        var xp: Int
        /// As the file gives it (derived from `xp` when it gives none); the import stores the
        /// level `xp` gives.
        var level: Int
        var messages: Int
        var voiceMinutes: Int
    }

    /// Why a file is refused: `line 17: field "xp": "12a" is not a whole number ≥ 0`.
    struct Malformed: Error, Sendable, Equatable, CustomStringConvertible {
        /// The CSV line, or for MEE6's JSON the line of the offending value (or syntax error).
        var line: Int?
        var field: String?
        var reason: String

        var description: String {
            (line.map { "line \($0): " } ?? "") + (field.map { "field \"\($0)\": " } ?? "") + reason
        }
    }

    /// What an import changes (or would change): the members it adds, changes and leaves.
    struct Plan: Sendable, Equatable {
        var entries: Int
        var added: Int
        var updated: Int
        var unchanged: Int
        /// Members whose level in the file disagreed with their XP: stored with the XP's level.
        var levelsRecomputed: Int
        /// True for `plan` (nothing written), false for `apply`.
        var dryRun: Bool

        var summary: String {
            var text = "\(entries) member\(entries == 1 ? "" : "s") in the file: \(added) added, \(updated) updated, \(unchanged) unchanged"
            if levelsRecomputed > 0 {
                text += "; \(levelsRecomputed) level\(levelsRecomputed == 1 ? "" : "s") in the file disagreed with the XP and \(dryRun ? "would be" : "were") recomputed from it"
            }
            text += dryRun ? ". Dry run: nothing was written." : ". Written in one transaction; members not in the file were left as they were."
            return text
        }
    }

    // MARK: - Parsing

    /// The members a file lists, checked whole: any problem refuses the file.
    static func parse(_ bytes: some Collection<UInt8>, format: Format) throws(Malformed) -> [Entry] {
        guard bytes.count <= maximumBytes else {
            throw Malformed(reason: "the file is \(bytes.count) bytes, over the \(maximumBytes >> 20) MB limit; split it (members not in a file are left as they are, so the parts can be imported one after another)")
        }
        let bytes = Array(bytes)
        guard bytes.contains(where: { !Self.isSpace($0) }) else {
            throw Malformed(reason: "the file is empty")
        }
        let entries = switch format {
        case .mee6: try parseMEE6(bytes)
        case .csv: try parseCSV(bytes)
        }
        return entries
    }

    /// MEE6's public leaderboard (`/api/plugins/levels/leaderboard/<guild>`): an object whose
    /// `players` are `{"id": "…", "xp": N, "level": N, "message_count": N, …}`; other keys ignored.
    private static func parseMEE6(_ bytes: [UInt8]) throws(Malformed) -> [Entry] {
        var scanner = JSONScanner(bytes: bytes)
        let root = try scanner.document()
        guard case .object(let members) = root.value else {
            throw Malformed(line: root.line, reason: "this is not MEE6's leaderboard JSON: it must be an object with \"players\"")
        }
        guard let players = members.first(where: { $0.key == "players" })?.value else {
            throw Malformed(line: root.line, field: "players", reason: "missing: this is not MEE6's leaderboard JSON (save the page of https://mee6.xyz/api/plugins/levels/leaderboard/<guild id>)")
        }
        guard case .array(let list) = players.value else {
            throw Malformed(line: players.line, field: "players", reason: "is not a list")
        }
        guard !list.isEmpty else { throw Malformed(line: players.line, field: "players", reason: "the list is empty: there is nothing to import") }
        var checker = DuplicateCheck(field: "id")
        return try list.map { player throws(Malformed) in
            guard case .object(let fields) = player.value else {
                throw Malformed(line: player.line, field: "players", reason: "an entry is not an object")
            }
            func field(_ name: String) -> JSONNode? { fields.last { $0.key == name }?.value }
            func number(_ name: String, required: Bool = false) throws(Malformed) -> Int? {
                guard let node = field(name), !node.isNull else {
                    if required { throw Malformed(line: player.line, field: name, reason: "missing") }
                    return nil
                }
                return try count(node.scalar, line: node.line, field: name)
            }
            guard let idNode = field("id") else { throw Malformed(line: player.line, field: "id", reason: "missing") }
            let user = try userID(idNode.scalar, line: idNode.line, field: "id")
            try checker.check(user, line: idNode.line)
            let xp = try number("xp", required: true)!
            return Entry(
                user: user, xp: xp, level: try number("level") ?? XPCurve.level(forXP: xp),
                messages: try number("message_count") ?? 0, voiceMinutes: 0
            )
        }
    }

    /// A header line naming the columns (any order; `user_id` and `xp` required, `level`,
    /// `messages`, `voice_minutes` optional, others ignored), then one member a line.
    private static func parseCSV(_ bytes: [UInt8]) throws(Malformed) -> [Entry] {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw Malformed(reason: "the file is not UTF-8 text")
        }
        // "\r\n" is one Character in Swift.
        let lines = text.split(omittingEmptySubsequences: false) { $0 == "\n" || $0 == "\r\n" }
        let header = cells(lines[0].drop { $0 == "\u{FEFF}" }).map { $0.lowercased() }
        var columns: [String: Int] = [:]
        for (index, name) in header.enumerated() where csvColumns.contains(name) {
            guard columns.updateValue(index, forKey: name) == nil else {
                throw Malformed(line: 1, field: name, reason: "the column is named twice in the header")
            }
        }
        for required in ["user_id", "xp"] where columns[required] == nil {
            throw Malformed(line: 1, field: required, reason: "missing from the header: the first line names the columns, e.g. \(csvColumns.joined(separator: ","))")
        }
        var checker = DuplicateCheck(field: "user_id")
        var entries: [Entry] = []
        for (offset, line) in lines.enumerated().dropFirst() where line.contains(where: { !$0.isWhitespace }) {
            let number = offset + 1
            let row = cells(line)
            guard row.count == header.count else {
                throw Malformed(line: number, reason: "\(row.count) field\(row.count == 1 ? "" : "s"), but the header names \(header.count)")
            }
            func value(_ name: String) throws(Malformed) -> Int? {
                guard let index = columns[name] else { return nil }
                return try count(row[index], line: number, field: name)
            }
            let user = try userID(row[columns["user_id"]!], line: number, field: "user_id")
            try checker.check(user, line: number)
            let xp = try value("xp")!
            entries.append(Entry(
                user: user, xp: xp, level: try value("level") ?? XPCurve.level(forXP: xp),
                messages: try value("messages") ?? 0, voiceMinutes: try value("voice_minutes") ?? 0
            ))
        }
        guard !entries.isEmpty else { throw Malformed(line: 2, reason: "no member after the header: there is nothing to import") }
        return entries
    }

    /// The cells of one line: split at commas outside double quotes (`""` in quotes is a quote),
    /// each without its surrounding spaces and quotes. A name column such as `"Smith, Jo"` is one cell.
    private static func cells(_ line: Substring) -> [String] {
        var cells: [String] = []
        var cell = ""
        var quoted = false
        var characters = line[...]
        while let character = characters.popFirst() {
            switch character {
            case "\"" where quoted && characters.first == "\"":
                cell.append("\"")
                characters.removeFirst()
            case "\"":
                quoted.toggle()
            case "," where !quoted:
                cells.append(cell.trimmed())
                cell = ""
            default:
                cell.append(character)
            }
        }
        cells.append(cell.trimmed())
        return cells
    }

    private static func count(_ text: String, line: Int, field: String) throws(Malformed) -> Int {
        guard !text.isEmpty, text.utf8.allSatisfy({ (0x30...0x39).contains($0) }) else {
            throw Malformed(line: line, field: field, reason: "\(quoted(text)) is not a whole number ≥ 0")
        }
        guard text.utf8.count <= 13, let value = Int(text), value <= maximumCount else {
            throw Malformed(line: line, field: field, reason: "\(text) is over \(maximumCount): is the column right?")
        }
        return value
    }

    private static func userID(_ text: String, line: Int, field: String) throws(Malformed) -> UserID {
        guard text.utf8.allSatisfy({ (0x30...0x39).contains($0) }), let id = UserID(text), id.rawValue > 0 else {
            throw Malformed(line: line, field: field, reason: "\(quoted(text)) is not a Discord user id (a number such as 172002275412279296)")
        }
        return id
    }

    private static func quoted(_ text: String) -> String {
        "\"" + (text.count > 40 ? text.prefix(40) + "…" : text) + "\""
    }

    private static func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }

    /// Refuses a member listed twice, naming both lines.
    private struct DuplicateCheck {
        let field: String
        var seen: [UserID: Int] = [:]

        mutating func check(_ user: UserID, line: Int) throws(Malformed) {
            if let first = seen.updateValue(line, forKey: user) {
                throw Malformed(line: line, field: field, reason: "user \(user) is listed twice (first on line \(first)); keep one of the two")
            }
        }
    }

    // MARK: - Database

    /// What importing `entries` into `guild` would change; writes nothing.
    static func plan(_ db: Database, guild: GuildID, entries: [Entry]) throws -> Plan {
        try compare(db, guild: guild, entries: entries).plan
    }

    /// Imports `entries` into `guild`, inside the caller's transaction (`SafeDatabase.write`):
    /// only the members that change are written.
    @discardableResult
    static func apply(_ db: Database, guild: GuildID, entries: [Entry]) throws -> Plan {
        var (plan, changed) = try compare(db, guild: guild, entries: entries)
        let statement = try db.cachedStatement(sql: """
            INSERT INTO xp_members (guild_id, user_id, xp, level, messages, voice_minutes) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (guild_id, user_id) DO UPDATE SET
                xp = excluded.xp, level = excluded.level, messages = excluded.messages, voice_minutes = excluded.voice_minutes
            """)
        for entry in changed {
            try statement.execute(arguments: [
                guild.description, entry.user.description, entry.xp, XPCurve.level(forXP: entry.xp), entry.messages, entry.voiceMinutes,
            ])
        }
        plan.dryRun = false
        return plan
    }

    private static func compare(_ db: Database, guild: GuildID, entries: [Entry]) throws -> (plan: Plan, changed: [Entry]) {
        var stored: [String: [Int]] = [:]
        let rows = try Row.fetchCursor(db, sql: "SELECT user_id, xp, level, messages, voice_minutes FROM xp_members WHERE guild_id = ?", arguments: [guild.description])
        while let row = try rows.next() {
            stored[row["user_id"]] = [row["xp"], row["level"], row["messages"], row["voice_minutes"]]
        }
        var plan = Plan(entries: entries.count, added: 0, updated: 0, unchanged: 0, levelsRecomputed: 0, dryRun: true)
        var changed: [Entry] = []
        for entry in entries {
            let level = XPCurve.level(forXP: entry.xp)
            if entry.level != level { plan.levelsRecomputed += 1 }
            if let row = stored[entry.user.description] {
                if row == [entry.xp, level, entry.messages, entry.voiceMinutes] {
                    plan.unchanged += 1
                } else {
                    plan.updated += 1
                    changed.append(entry)
                }
            } else {
                plan.added += 1
                changed.append(entry)
            }
        }
        return (plan, changed)
    }

    /// `guild`'s members as CSV (`csvColumns`), by XP, highest first, then by user id: every
    /// member, hidden or gone too. Importing it gives the same rows.
    static func export(_ db: Database, guild: GuildID) throws -> String {
        let rows = try Row.fetchAll(db, sql: "SELECT user_id, xp, level, messages, voice_minutes FROM xp_members WHERE guild_id = ?", arguments: [guild.description])
        let entries = rows.compactMap { row -> Entry? in
            guard let user = UserID(row["user_id"] as String) else { return nil }
            return Entry(user: user, xp: row["xp"], level: row["level"], messages: row["messages"], voiceMinutes: row["voice_minutes"])
        }
        return csv(entries.sorted { ($0.xp, $1.user) > ($1.xp, $0.user) })
    }

    /// `entries` as CSV, in their order, header first.
    static func csv(_ entries: [Entry]) -> String {
        var csv = csvColumns.joined(separator: ",") + "\n"
        for entry in entries {
            csv += "\(entry.user),\(entry.xp),\(entry.level),\(entry.messages),\(entry.voiceMinutes)\n"
        }
        return csv
    }

    // MARK: - Through the supervisor

    /// Runs an `xpTransfer` request the supervisor relays: an import in one `SafeDatabase.write`
    /// (or, dry, in a read), an export in a read.
    static func serve(_ request: XPTransferRequest, database: SafeDatabase) async -> XPTransferReply {
        guard let guild = GuildID(request.guild), guild.rawValue > 0 else {
            return XPTransferReply(id: request.id, error: .badRequest("guild \"\(request.guild)\" is not a Discord guild id"))
        }
        do {
            switch request.action {
            case .export:
                let csv = try await database.read("xp.export") { db -> String in try export(db, guild: guild) }
                let members = csv.utf8.count(where: { $0 == 0x0A }) - 1
                // JSON writes each line break as two bytes; the rest of the reply is small.
                guard csv.utf8.count + members + 4096 <= LineFrameHandler.defaultMaximumLineLength else {
                    return XPTransferReply(id: request.id, error: ErrorBody(code: "too-large", message: "the export of \(members) members is more than the worker link carries (\(LineFrameHandler.defaultMaximumLineLength >> 20) MiB); stop the bot and run `bot-worker xp export` on its data directory"))
                }
                return XPTransferReply(id: request.id, result: XPTransferResult(guild: request.guild, summary: "\(members) member\(members == 1 ? "" : "s") exported", entries: members, csv: csv))
            case .import:
                guard let format = request.format.flatMap(Format.init(rawValue:)) else {
                    return XPTransferReply(id: request.id, error: .badRequest("format must be one of \(Format.allCases.map(\.rawValue).joined(separator: ", ")); got \"\(request.format ?? "")\""))
                }
                guard let content = request.content, let bytes = Data(base64Encoded: content) else {
                    return XPTransferReply(id: request.id, error: .badRequest("content must be the file, base64"))
                }
                let entries: [Entry]
                do {
                    entries = try parse(bytes, format: format)
                } catch {
                    return XPTransferReply(id: request.id, error: ErrorBody(code: "malformed", message: "\(error); nothing was imported"))
                }
                let plan = request.dryRun
                    ? try await database.read("xp.import-plan") { db in try XPTransfer.plan(db, guild: guild, entries: entries) }
                    : try await database.write("xp.import") { db in try apply(db, guild: guild, entries: entries) }.value
                return XPTransferReply(id: request.id, result: plan.result(guild: request.guild))
            }
        } catch {
            return XPTransferReply(id: request.id, error: ErrorBody(code: "failed", message: "\(error)"))
        }
    }
}

extension String {
    fileprivate func trimmed() -> String {
        var text = self[...].drop { $0 == " " || $0 == "\t" }
        while text.last == " " || text.last == "\t" { text = text.dropLast() }
        return String(text)
    }
}

extension XPTransfer.Plan {
    func result(guild: String) -> XPTransferResult {
        XPTransferResult(
            guild: guild, summary: summary, dryRun: dryRun, entries: entries, added: added, updated: updated,
            unchanged: unchanged, levelsRecomputed: levelsRecomputed
        )
    }
}
