import BotData
import FoundationEssentials
import HTTPTypes
import Hummingbird
import IPC
import Logging
import NIOCore

/// The dashboard's pages and APIs (`DashboardServer` serves them).
///
/// Pages are one embedded shell (`DashboardAssets`) that draws itself from `/api/*` and stays
/// current through `/api/events` (server-sent events). Buttons are POSTs carrying the session's
/// CSRF token, run through the same `ControlCommands` as the status socket and audited there.
struct DashboardRoutes: Sendable {
    let access: DashboardAccess
    let parts: DashboardServer.Parts
    let stopping: @Sendable () -> Bool
    let logger: Logger

    static let pages = ["overview", "health", "backups", "alerts", "restarts", "logs", "charts"]
    /// A guild id: digits only (also what keeps the leaderboard's path safe).
    static func isSnowflake(_ text: String) -> Bool { !text.isEmpty && text.count <= 20 && text.allSatisfy(\.isASCII) && text.allSatisfy(\.isNumber) }

    func add(to router: Router<DashboardContext>) {
        router.get("/assets/app.css") { _, _ in Self.asset(DashboardAssets.css, type: "text/css; charset=utf-8") }
        router.get("/assets/app.js") { _, _ in Self.asset(DashboardAssets.script, type: "text/javascript; charset=utf-8") }
        router.get("/login") { request, context in self.login(code: request.uri.queryParameters.get("code"), token: nil, context) }
        router.post("/login") { request, context in
            let form = try await Self.form(request)
            return self.login(code: nil, token: form["token"], context)
        }
        router.post("/logout") { request, context in
            try await self.authenticated(request, context, post: true) { session in
                self.access.logout(session)
                var response = Self.redirect("/login")
                response.headers[.setCookie] = "\(DashboardAccess.cookieName)=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict"
                return response
            }
        }
        router.get("/") { request, context in try await self.page("overview", request, context) }
        for page in Self.pages where page != "overview" {
            router.get(RouterPath(stringLiteral: "/" + page)) { request, context in try await self.page(page, request, context) }
        }
        router.get("/api/status") { request, context in
            try await self.authenticated(request, context) { _ in Self.json(await self.statusJSON()) }
        }
        router.get("/api/events") { request, context in
            try await self.authenticated(request, context) { _ in self.statusEvents() }
        }
        router.get("/api/backups") { request, context in
            try await self.authenticated(request, context) { _ in Self.json(Self.encode(await self.parts.keeper.backupList())) }
        }
        router.get("/api/restarts") { request, context in
            try await self.authenticated(request, context) { _ in Self.json(Self.encode(await self.restarts())) }
        }
        router.get("/api/samples") { request, context in
            try await self.authenticated(request, context) { _ in
                let since = request.uri.queryParameters.get("since").flatMap(Double.init) ?? 0
                return Self.json(Self.encode(self.parts.samples.samples(since: since)))
            }
        }
        router.get("/api/logs") { request, context in
            try await self.authenticated(request, context) { _ in
                let filter = try DashboardLogs.Filter(query: request.uri.queryParameters)
                return Self.json(Self.encode(await self.parts.logs.history(filter, limit: 500)))
            }
        }
        router.get("/api/logs/stream") { request, context in
            try await self.authenticated(request, context) { _ in
                let filter = try DashboardLogs.Filter(query: request.uri.queryParameters)
                return self.logEvents(filter)
            }
        }
        for (action, command) in [("backup", ControlCommand.backup), ("restart-worker", .restartWorker), ("health", .health)] {
            router.post(RouterPath(stringLiteral: "/api/actions/" + action)) { request, context in
                try await self.authenticated(request, context, post: true) { _ in
                    let line = await self.parts.commands.handle(ControlRequest(cmd: command), as: .init(
                        mayChange: true, description: "dashboard \(context.address)",
                        audit: ["via": "dashboard", "address": "\(context.address)"]
                    ))
                    return Self.json(ByteBuffer(string: line))
                }
            }
        }
        router.get("/leaderboard/:guild") { _, context in
            let guild = context.parameters.get("guild") ?? ""
            return try await self.leaderboard(guild)
        }
    }

    // MARK: - Access

    private func login(code: String?, token: String?, _ context: DashboardContext) -> Response {
        if access.isLimited(context.address) { return Self.tooMany() }
        guard code != nil || token != nil else { return Self.unauthorized() }
        guard let session = access.login(code: code, token: token, address: context.address) else {
            logger.warning("dashboard login refused", metadata: ["address": "\(context.address)"])
            return Self.unauthorized()
        }
        logger.info("dashboard login", metadata: ["address": "\(context.address)"])
        var response = Self.redirect("/")
        response.headers[.setCookie] = "\(DashboardAccess.cookieName)=\(session.id); Path=/; Max-Age=\(Int(DashboardAccess.sessionLifetime)); HttpOnly; SameSite=Strict"
        return response
    }

    /// Runs `body` for a request with a live session (or the token as a bearer); otherwise a
    /// 401 (429 once the address failed 10 times in a minute) that says nothing more.
    /// `post`: the request changes something and must carry the session's CSRF token.
    private func authenticated(_ request: Request, _ context: DashboardContext, post: Bool = false, _ body: (DashboardAccess.Session) async throws -> Response) async throws -> Response {
        if access.isLimited(context.address) { return Self.tooMany() }
        let bearer = request.headers[.authorization].flatMap { $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : nil }
        guard let session = access.authenticate(cookie: request.cookies[DashboardAccess.cookieName]?.value, bearer: bearer, address: context.address) else {
            return Self.unauthorized()
        }
        if post {
            let field = HTTPField.Name("X-CSRF-Token")!
            guard access.csrfValid(request.headers[field], for: session) else { return Self.unauthorized() }
        }
        return try await body(session)
    }

    private func page(_ name: String, _ request: Request, _ context: DashboardContext) async throws -> Response {
        try await authenticated(request, context) { session in
            Self.html(DashboardAssets.shell(page: name, csrf: session.csrf))
        }
    }

    // MARK: - Data

    private func statusJSON() async -> ByteBuffer {
        let line = await parts.store.statusLine(.init(database: parts.keeper.databaseStatus(), backups: parts.keeper.backupsStatus(), operation: parts.keeper.tracker.status))
        return ByteBuffer(string: line)
    }

    /// The worker's exits, newest first, each with its backtrace and last output from errors.log.
    private func restarts() async -> [DashboardLogs.Restart] {
        let exits = await parts.store.exitHistory()
        let crashes = await parts.logs.crashReports()
        return exits.map { record in
            let crash = record.pid.flatMap { pid in crashes.last { $0.pid == pid } }
            return DashboardLogs.Restart(pid: record.pid, at: record.exit.at, code: record.exit.code, signal: record.exit.signal, reason: record.exit.reason,
                                         restarts: record.restarts, backtrace: crash?.backtrace ?? [], lastOutput: crash?.lastOutput ?? [])
        }
    }

    /// The status line every second while it changes (and a comment every 15 s to keep proxies
    /// from closing the stream), until the client leaves or the supervisor stops.
    private func statusEvents() -> Response {
        Self.eventStream { writer in
            var last = ""
            var quiet = 0
            while !self.stopping() {
                let line = String(buffer: await self.statusJSON()).trimmingCharacters(in: .newlines)
                // Sent when the text changed (while a worker runs, its heartbeat age changes it
                // every second); a comment every 15 s of silence keeps proxies from closing it.
                if line != last {
                    try await writer.write(ByteBuffer(string: "event: status\ndata: \(line)\n\n"))
                    last = line
                    quiet = 0
                } else {
                    quiet += 1
                    if quiet % 15 == 0 { try await writer.write(ByteBuffer(string: ": keep-alive\n\n")) }
                }
                try await Task.sleep(for: .seconds(1))
            }
        }
    }

    /// New log lines that pass `filter`, as they are written.
    private func logEvents(_ filter: DashboardLogs.Filter) -> Response {
        Self.eventStream { writer in
            let (id, lines) = self.parts.logs.subscribe()
            defer { self.parts.logs.unsubscribe(id) }
            try await writer.write(ByteBuffer(string: ": tail\n\n"))
            // Ends when the client leaves (a write fails) or the supervisor stops (`endAll`).
            for await line in lines where filter.matches(line) {
                try await writer.write(ByteBuffer(string: "event: log\ndata: \(Self.encodeLine(line))\n\n"))
            }
        }
    }

    static func encodeLine(_ line: DashboardLogs.Line) -> String {
        ((try? JSONLine.encode(line)) ?? "{}").trimmingCharacters(in: .newlines)
    }

    private func leaderboard(_ guild: String) async throws -> Response {
        guard Self.isSnowflake(guild) else { return Self.notPublic() }
        let path = parts.databasePath
        let page = try? await BlockingPool.shared.run("reading a public leaderboard", deadline: .seconds(10)) {
            try PublicLeaderboard.read(databasePath: path, guildID: guild)
        }
        guard let page = page ?? nil else { return Self.notPublic() }
        return Self.html(DashboardAssets.leaderboard(guild: guild, rows: page.rows))
    }

    // MARK: - Responses

    static func headers(_ type: String) -> HTTPFields {
        var headers = HTTPFields()
        headers[.contentType] = type
        headers[.cacheControl] = "no-store"
        headers[HTTPField.Name("Content-Security-Policy")!] = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
        headers[HTTPField.Name("X-Content-Type-Options")!] = "nosniff"
        headers[HTTPField.Name("Referrer-Policy")!] = "no-referrer"
        return headers
    }

    static func html(_ text: String, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: headers("text/html; charset=utf-8"), body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func asset(_ text: String, type: String) -> Response {
        var headers = headers(type)
        headers[.cacheControl] = "no-cache"
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(string: text)))
    }

    static func json(_ buffer: ByteBuffer) -> Response {
        Response(status: .ok, headers: headers("application/json"), body: .init(byteBuffer: buffer))
    }

    static func encode(_ value: some Encodable) -> ByteBuffer {
        ByteBuffer(string: (try? JSONLine.encode(value)) ?? "null\n")
    }

    static func redirect(_ location: String) -> Response {
        var headers = headers("text/plain")
        headers[.location] = location
        return Response(status: .seeOther, headers: headers)
    }

    /// The 401: a login form, and not a word on what was wrong.
    static func unauthorized() -> Response { html(DashboardAssets.login, status: .unauthorized) }

    static func tooMany() -> Response {
        var response = html(DashboardAssets.tooMany, status: .tooManyRequests)
        response.headers[.retryAfter] = "60"
        return response
    }

    static func notPublic() -> Response { html(DashboardAssets.notPublic, status: .notFound) }

    static func eventStream(_ body: @escaping @Sendable (inout any ResponseBodyWriter) async throws -> Void) -> Response {
        var headers = headers("text/event-stream")
        headers[HTTPField.Name("X-Accel-Buffering")!] = "no"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            do {
                try await body(&writer)
            } catch {
                // The client went away, or the supervisor is stopping: the stream just ends.
            }
            try? await writer.finish(nil)
        })
    }

    /// A small urlencoded form (the login).
    static func form(_ request: Request) async throws -> [String: String] {
        var body = try await request.body.collect(upTo: 16 << 10)
        let text = body.readString(length: body.readableBytes) ?? ""
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1).map { String($0).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? "" }
            if parts.count == 2 { fields[parts[0]] = parts[1] }
        }
        return fields
    }
}
