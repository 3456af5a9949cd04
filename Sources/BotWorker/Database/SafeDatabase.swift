import BotData
import FoundationEssentials
import GRDB
import Logging

/// Why a database operation failed, in words an operator can act on.
enum SafeDatabaseError: Error, CustomStringConvertible {
    /// Another connection held the lock through every retry.
    case busy(operation: String, attempts: Int)
    /// A constraint refused the write (unique, foreign key, not null, check): a bug or bad input.
    case constraint(operation: String, message: String)
    /// The file is damaged; the supervisor has been told and will restore it.
    case corrupt(operation: String, message: String)
    /// A write the caller marked critical did not read back as written.
    case verificationFailed(operation: String)
    /// Anything else SQLite reported (disk full, I/O error, …).
    case sqlite(operation: String, message: String)

    var description: String {
        switch self {
        case .busy(let operation, let attempts):
            "\(operation): the database stayed locked through \(attempts) attempts; nothing was written"
        case .constraint(let operation, let message):
            "\(operation): refused by a constraint (\(message)); nothing was written"
        case .corrupt(let operation, let message):
            "\(operation): the database file is damaged (\(message)); the supervisor restores it from a backup"
        case .verificationFailed(let operation):
            "\(operation): the committed write did not read back as written"
        case .sqlite(let operation, let message):
            "\(operation): \(message); nothing was written"
        }
    }
}

/// The one way the worker writes: every feature goes through it.
///
/// - Every write is one transaction (`BEGIN IMMEDIATE`); an error rolls it back and is rethrown
///   as a `SafeDatabaseError`.
/// - SQLITE_BUSY and BUSY_SNAPSHOT retry the whole transaction with bounded backoff; constraint,
///   corruption and I/O errors never retry.
/// - The commit's result is checked and the caller learns how many rows changed; a write marked
///   critical is read back after the commit.
/// - Every operation is logged to `database.log` (name, duration, rows, outcome), never values.
/// - SQLITE_CORRUPT and SQLITE_NOTADB are reported to the supervisor at once.
/// - With a journal, every transaction that changed something is journaled (`JournalWriter`):
///   its changeset is durable in every backup location before it commits.
final class SafeDatabase: Sendable {
    struct WriteResult<Value: Sendable>: Sendable {
        var value: Value
        var rowsChanged: Int
    }

    let writer: any DatabaseWriter
    let logger: Logger
    let onCorruption: @Sendable (String) async -> Void
    let maximumAttempts: Int
    let initialBackoff: Duration
    let journal: JournalWriter?

    init(
        writer: any DatabaseWriter,
        logger: Logger,
        journal: JournalWriter? = nil,
        maximumAttempts: Int = 6,
        initialBackoff: Duration = .milliseconds(10),
        onCorruption: @escaping @Sendable (String) async -> Void
    ) {
        self.journal = journal
        self.writer = writer
        self.logger = logger
        self.maximumAttempts = maximumAttempts
        self.initialBackoff = initialBackoff
        self.onCorruption = onCorruption
    }

    /// Runs `body` in one write transaction.
    ///
    /// ```swift
    /// let result = try await database.write("xp.award", verify: { db in
    ///     try Int.fetchOne(db, sql: "SELECT xp FROM xp_members WHERE user_id = ?", arguments: [user]) == expected
    /// }) { db in
    ///     try db.execute(sql: "UPDATE xp_members SET xp = xp + ? WHERE user_id = ?", arguments: [15, user])
    /// }
    /// ```
    /// - Parameter logLevel: of the line an operation that succeeded at once writes to
    ///   `database.log` (a group commit, many a second, logs at debug); failures always log.
    /// - Parameter verify: for critical writes: checked in a new read after the commit; `false`
    ///   throws `verificationFailed` (the data is committed but not what was meant).
    @discardableResult
    func write<Value: Sendable>(
        _ operation: String,
        logLevel: Logger.Level = .info,
        verify: (@Sendable (Database) throws -> Bool)? = nil,
        _ body: @escaping @Sendable (Database) throws -> Value
    ) async throws -> WriteResult<Value> {
        let started = ContinuousClock.now
        var backoff = initialBackoff
        var attempt = 0
        while true {
            attempt += 1
            do {
                let journal = self.journal
                let result = try await writer.write { db -> WriteResult<Value> in
                    let recorder = try journal.map { _ in try ChangeRecorder(db) }
                    let before = db.totalChangesCount
                    let value = try body(db)
                    let rows = db.totalChangesCount - before
                    if let journal, let recorder, !recorder.isEmpty {
                        try journal.record(db, recorder)
                    }
                    return WriteResult(value: value, rowsChanged: rows)
                }
                if let verify, try await !writer.read(verify) {
                    log(operation, started: started, rows: result.rowsChanged, outcome: "verification-failed", level: .error)
                    throw SafeDatabaseError.verificationFailed(operation: operation)
                }
                log(operation, started: started, rows: result.rowsChanged, outcome: attempt == 1 ? "ok" : "ok-after-\(attempt)-attempts", level: attempt == 1 ? logLevel : .info)
                return result
            } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY && attempt < maximumAttempts {
                logger.debug("database busy, retrying", metadata: ["operation": "\(operation)", "attempt": "\(attempt)"])
                try await Task.sleep(for: backoff)
                backoff *= 2
            } catch let error as DatabaseError {
                throw await failure(operation, error, started: started, attempts: attempt)
            }
        }
    }

    /// On a graceful stop: folds the WAL into the database file (the worker is its only
    /// checkpointer) and closes every connection, so that the file alone is the whole database.
    func close() {
        do {
            try writer.writeWithoutTransaction { db in _ = try db.checkpoint(.truncate) }
            try (writer as? DatabasePool)?.close()
            journal?.close()
            logger.info("database closed", metadata: ["outcome": "checkpointed"])
        } catch {
            journal?.close()
            logger.warning("database not checkpointed at stop; SQLite folds the WAL in at the next open", metadata: ["error": "\(error)"])
        }
    }

    /// Runs `body` in a read transaction (a consistent snapshot).
    func read<Value: Sendable>(_ operation: String, _ body: @escaping @Sendable (Database) throws -> Value) async throws -> Value {
        let started = ContinuousClock.now
        do {
            return try await writer.read(body)
        } catch let error as DatabaseError {
            throw await failure(operation, error, started: started, attempts: 1)
        }
    }

    private func failure(_ operation: String, _ error: DatabaseError, started: ContinuousClock.Instant, attempts: Int) async -> SafeDatabaseError {
        let message = DatabaseInspector.describe(error)
        let failure: SafeDatabaseError
        switch error.resultCode {
        case .SQLITE_BUSY: failure = .busy(operation: operation, attempts: attempts)
        case .SQLITE_CONSTRAINT: failure = .constraint(operation: operation, message: message)
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            failure = .corrupt(operation: operation, message: message)
            await onCorruption("\(operation): \(message)")
        default: failure = .sqlite(operation: operation, message: message)
        }
        log(operation, started: started, rows: 0, outcome: "failed", level: .error, error: failure.description)
        return failure
    }

    private func log(_ operation: String, started: ContinuousClock.Instant, rows: Int, outcome: String, level: Logger.Level, error: String? = nil) {
        let elapsed = ContinuousClock.now - started
        var metadata: Logger.Metadata = [
            "operation": "\(operation)",
            "duration_ms": "\(Double(elapsed.components.attoseconds / 1_000_000_000_000) / 1000 + Double(elapsed.components.seconds) * 1000)",
            "rows": "\(rows)",
            "outcome": "\(outcome)",
        ]
        if let error { metadata["error"] = "\(error)" }
        logger.log(level: level, "database operation", metadata: metadata)
    }
}
