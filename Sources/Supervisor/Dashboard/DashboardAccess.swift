import Crypto
import FoundationEssentials
import Glibc
import IPC
import Synchronization

/// Who may see the dashboard, without I/O beyond the token file: the dashboard token, one-time
/// login codes, browser sessions with their CSRF tokens, and the per-address failure limit.
///
/// - The token (`<dataDir>/dashboard.token`, 0600, made at first start) is the credential. Its
///   holder logs in with it, or asks `bot-supervisor dashboard-url` for a one-time link.
/// - A login creates a session: a random id in an HttpOnly, SameSite=Strict cookie, and a CSRF
///   token that every POST must carry. Sessions live 12 hours, in memory only (a supervisor
///   restart logs everyone out).
/// - 10 failed attempts in a minute from one address (a wrong login code or token, a wrong
///   bearer token): that address is refused (429) until the minute has passed. Failures say
///   nothing about why.
final class DashboardAccess: Sendable {
    struct Session: Sendable, Equatable {
        var id: String
        var csrf: String
        var expires: Date
    }

    private struct State {
        var codes: [String: Date] = [:]
        var sessions: [String: Session] = [:]
        var failures: [String: [Date]] = [:]
    }

    let token: String
    private let state = Mutex(State())
    static let codeLifetime: TimeInterval = 600
    static let sessionLifetime: TimeInterval = 12 * 3600
    static let failureWindow: TimeInterval = 60
    static let failureLimit = 10
    static let maxSessions = 200
    static let cookieName = "bot_dashboard"

    init(token: String) {
        self.token = token
    }

    // MARK: - The token file

    /// The token in `path`, made (32 random bytes, hex, mode 0600) when the file does not exist.
    /// A file others can read is narrowed to 0600 (its token may have leaked: the caller says so).
    static func loadOrCreateToken(_ path: String) throws -> (token: String, widened: Bool) {
        if let data = FileManager.default.contents(atPath: path) {
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard token.count >= 32 else {
                throw ConfigError(description: "the dashboard token file \(path) holds no token (under 32 characters); delete it and a new one is made at the next start")
            }
            var info = stat()
            var widened = false
            if stat(path, &info) == 0, info.st_mode & 0o077 != 0 {
                chmod(path, 0o600)
                widened = true
            }
            return (token, widened)
        }
        let token = randomHex(32)
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw ConfigError(description: "cannot create the dashboard token file \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let line = token + "\n"
        guard line.utf8.count == line.withCString({ write(fd, $0, strlen($0)) }), fsync(fd) == 0 else {
            unlink(path)
            throw ConfigError(description: "cannot write the dashboard token file \(path): \(String(cString: strerror(errno)))")
        }
        return (token, false)
    }

    static func randomHex(_ bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            return String(byte, radix: 16).leftPadded(2)
        }.joined()
    }

    // MARK: - Logging in

    /// A one-time login code, valid for 10 minutes.
    func mintCode(now: Date = Date()) -> String {
        let code = Self.randomHex(24)
        state.withLock { state in
            state.codes = state.codes.filter { $0.value > now }
            state.codes[code] = now.addingTimeInterval(Self.codeLifetime)
        }
        return code
    }

    /// A session for a valid, unused code (used up by this call), or for the token itself.
    /// Nil, and a failure counted against `address`, otherwise.
    func login(code: String? = nil, token candidate: String? = nil, address: String, now: Date = Date()) -> Session? {
        state.withLock { state in
            var valid = false
            if let code, let expires = state.codes.removeValue(forKey: code), expires > now { valid = true }
            if let candidate, Self.equal(candidate, token) { valid = true }
            guard valid else {
                Self.fail(&state, address: address, now: now)
                return nil
            }
            state.sessions = state.sessions.filter { $0.value.expires > now }
            if state.sessions.count >= Self.maxSessions, let oldest = state.sessions.values.min(by: { $0.expires < $1.expires }) {
                state.sessions[oldest.id] = nil
            }
            let session = Session(id: Self.randomHex(32), csrf: Self.randomHex(24), expires: now.addingTimeInterval(Self.sessionLifetime))
            state.sessions[session.id] = session
            return session
        }
    }

    /// The live session with this cookie value, or a session for a script's
    /// `Authorization: Bearer <token>`; nil otherwise.
    ///
    /// Only a wrong bearer token counts as a failure. A missing or unknown cookie does not: a
    /// session id is 256 random bits (guessing is hopeless either way), and an open tab whose
    /// session ended with a supervisor restart retries its event stream every few seconds, which
    /// would otherwise lock its operator out of the login page.
    func authenticate(cookie: String?, bearer: String?, address: String, now: Date = Date()) -> Session? {
        state.withLock { state in
            if let cookie, let session = state.sessions[cookie], session.expires > now { return session }
            if let bearer {
                if Self.equal(bearer, token) { return Session(id: "", csrf: "", expires: now.addingTimeInterval(60)) }
                Self.fail(&state, address: address, now: now)
            }
            return nil
        }
    }

    func logout(_ session: Session) {
        _ = state.withLock { $0.sessions.removeValue(forKey: session.id) }
    }

    /// Whether a POST's CSRF token is the session's (a bearer-token script needs none).
    func csrfValid(_ candidate: String?, for session: Session) -> Bool {
        if session.id.isEmpty { return true }
        guard let candidate else { return false }
        return Self.equal(candidate, session.csrf)
    }

    /// Whether `address` failed 10 times in the last minute.
    func isLimited(_ address: String, now: Date = Date()) -> Bool {
        state.withLock { state in
            let recent = (state.failures[address] ?? []).filter { now.timeIntervalSince($0) < Self.failureWindow }
            state.failures[address] = recent.isEmpty ? nil : recent
            return recent.count >= Self.failureLimit
        }
    }

    private static func fail(_ state: inout State, address: String, now: Date) {
        var recent = (state.failures[address] ?? []).filter { now.timeIntervalSince($0) < failureWindow }
        recent.append(now)
        state.failures[address] = recent
        if state.failures.count > 10_000 { state.failures = state.failures.filter { $0.value.contains { now.timeIntervalSince($0) < failureWindow } } }
    }

    /// Compares in time independent of where the strings differ (by their SHA-256).
    static func equal(_ a: String, _ b: String) -> Bool {
        let x = Array(SHA256.hash(data: Array(a.utf8))), y = Array(SHA256.hash(data: Array(b.utf8)))
        var difference: UInt8 = 0
        for index in x.indices { difference |= x[index] ^ y[index] }
        return difference == 0
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
