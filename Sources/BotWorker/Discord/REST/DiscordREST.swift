import AsyncHTTPClient
import FoundationEssentials
import IPC
import Logging
import NIOCore
import NIOHTTP1

/// Discord's REST API v10, for the calls the features make, within Discord's rate limits.
///
/// Every request carries `Authorization: Bot <token>` and a `User-Agent: DiscordBot (url,
/// version)`, and goes to `<apiBaseURL>` (Discord's `/api/v10`, or the sandbox's). `RateLimiter`
/// decides when each may go; a 429 is waited out and retried.
actor DiscordREST {
    struct Failure: Error, CustomStringConvertible, Equatable {
        var route: String
        var status: Int
        /// Discord's JSON error code (10007 unknown member, 50013 missing permissions, …).
        var code: Int?
        var message: String

        var description: String {
            "\(route): Discord answered \(status)\(code.map { " (code \($0))" } ?? ""): \(message)"
        }
    }

    static let discordAPI = "https://discord.com/api/v10"
    static let userAgent = "DiscordBot (https://github.com/discord-bot-supervisor, \(BotVersion.current))"

    let baseURL: String
    private let token: Secret
    private let http: HTTPClient
    private let logger: Logger
    private var limiter = RateLimiter()
    let maximumAttempts = 3

    init(baseURL: String = DiscordREST.discordAPI, token: Secret, http: HTTPClient = .shared, logger: Logger) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.token = token
        self.http = http
        self.logger = logger
    }

    /// 401/403/429 responses in the last 10 minutes, and requests left in this second.
    func headroom() -> (invalidRequests: Int, globalRemaining: Int) {
        let now = ContinuousClock.now
        return (limiter.invalidRequestCount(at: now), limiter.globalHeadroom(at: now))
    }

    /// Sends one request on `endpoint` (rate-limited per `major`) and returns the decoded JSON
    /// body (nil for 204).
    @discardableResult
    func send(_ endpoint: Endpoint, major: String?, path: String, body: JSONValue? = nil, files: [Upload] = [], auditReason: String? = nil) async throws -> JSONValue? {
        let route = endpoint.route(major: major)
        var attempt = 0
        while true {
            switch limiter.decide(route, at: .now) {
            case .go: break
            case .wait(let delay):
                try await Task.sleep(for: delay)
                continue
            case .refuse(let why):
                throw Failure(route: route.description, status: 0, code: nil, message: why)
            }
            attempt += 1
            limiter.willSend(route, at: .now)
            var request = HTTPClientRequest(url: baseURL + path)
            request.method = HTTPMethod(rawValue: route.method)
            request.headers.add(name: "Authorization", value: "Bot " + token.reveal())
            request.headers.add(name: "User-Agent", value: Self.userAgent)
            if let auditReason {
                request.headers.add(name: "X-Audit-Log-Reason", value: Self.percentEncoded(String(auditReason.prefix(512))))
            }
            if !files.isEmpty {
                // Files go as multipart/form-data: the JSON as `payload_json`, each file as `files[n]`.
                let boundary = "bot-" + String(UInt64.random(in: 0...UInt64.max), radix: 36)
                request.headers.add(name: "Content-Type", value: "multipart/form-data; boundary=\(boundary)")
                request.body = .bytes(ByteBuffer(bytes: try Self.multipart(body, files, boundary: boundary)))
            } else if let body {
                request.headers.add(name: "Content-Type", value: "application/json")
                request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
            }
            let response = try await http.execute(request, timeout: .seconds(15))
            let bytes = try await response.body.collect(upTo: 8 << 20)
            let status = Int(response.status.code)
            let headers = Dictionary(response.headers.map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { $1 })
            let json = bytes.readableBytes == 0 ? nil : try? JSONLine.decode(JSONValue.self, from: Data(bytes.readableBytesView))

            if status == 429 {
                let retryAfter = json?["retry_after"]?.doubleValue ?? headers["retry-after"].flatMap(Double.init) ?? 1
                let global = json?["global"] == .bool(true) || headers["x-ratelimit-global"] == "true"
                limiter.didReceive(route, status: status, headers: headers, retryAfter: retryAfter, global: global, at: .now)
                logger.warning("rate limited by Discord", metadata: ["route": "\(route)", "retry_after": "\(retryAfter)", "global": "\(global)"])
                if attempt < maximumAttempts { continue }
            } else {
                limiter.didReceive(route, status: status, headers: headers, at: .now)
            }
            guard (200..<300).contains(status) else {
                throw Failure(
                    route: route.description, status: status, code: json?["code"]?.intValue,
                    message: json?["message"]?.stringValue ?? HTTPResponseStatus(statusCode: status).reasonPhrase
                )
            }
            return json
        }
    }

    // MARK: - The calls the features make

    /// Where to connect and how many identifies are left today (`GET /gateway/bot`).
    func gatewayBot() async throws -> GatewayBot {
        let json = try await send(.gatewayBot, major: nil, path: "/gateway/bot")
        guard let url = json?["url"]?.stringValue, case .object(let limit)? = json?["session_start_limit"] else {
            throw Failure(route: "GET /gateway/bot", status: 200, code: nil, message: "the answer has no url or session_start_limit")
        }
        return GatewayBot(
            url: url,
            shards: json?["shards"]?.intValue ?? 1,
            limit: SessionStartLimit(
                total: limit["total"]?.intValue ?? 1000,
                remaining: limit["remaining"]?.intValue ?? 1000,
                resetAfter: .milliseconds(limit["reset_after"]?.intValue ?? 0),
                maxConcurrency: limit["max_concurrency"]?.intValue ?? 1
            )
        )
    }

    func addRole(guild: GuildID, user: UserID, role: RoleID, reason: String?) async throws {
        try await send(.addMemberRole, major: "\(guild)",
                       path: "/guilds/\(guild)/members/\(user)/roles/\(role)", auditReason: reason)
    }

    func removeRole(guild: GuildID, user: UserID, role: RoleID, reason: String?) async throws {
        try await send(.removeMemberRole, major: "\(guild)",
                       path: "/guilds/\(guild)/members/\(user)/roles/\(role)", auditReason: reason)
    }

    /// The guild (its roles and owner), for a worker that resumed a session and got no GUILD_CREATE.
    func guild(_ guild: GuildID) async throws -> JSONValue? {
        try await send(.getGuild, major: "\(guild)", path: "/guilds/\(guild)")
    }

    func member(guild: GuildID, user: UserID) async throws -> JSONValue? {
        try await send(.getMember, major: "\(guild)",
                       path: "/guilds/\(guild)/members/\(user)")
    }

    /// One page of members (1 to 1000), after `after`; page on with the last user id.
    func members(guild: GuildID, after: UserID?, limit: Int = 1000) async throws -> [JSONValue] {
        let page = try await send(.listMembers, major: "\(guild)",
                                  path: "/guilds/\(guild)/members?limit=\(min(max(limit, 1), 1000))&after=\(after?.description ?? "0")")
        if case .array(let members) = page { return members }
        return []
    }

    @discardableResult
    func createMessage(channel: ChannelID, _ message: JSONValue) async throws -> JSONValue? {
        try await send(.createMessage, major: "\(channel)",
                       path: "/channels/\(channel)/messages", body: message)
    }

    /// The first answer to an interaction (within 3 s); not bound by the global limit. `files`
    /// are attached to the answer's message (its `data.attachments` names them by index).
    func respond(to interaction: InteractionID, token: String, _ response: JSONValue, files: [Upload] = []) async throws {
        try await send(.interactionCallback, major: nil,
                       path: "/interactions/\(interaction)/\(token)/callback", body: response, files: files)
    }

    @discardableResult
    func followUp(application: ApplicationID, token: String, _ message: JSONValue, files: [Upload] = []) async throws -> JSONValue? {
        try await send(.followUpMessage, major: "\(application)",
                       path: "/webhooks/\(application)/\(token)", body: message, files: files)
    }

    /// Edits the first answer to an interaction (a deferred one, or one that shows progress).
    @discardableResult
    func editOriginal(application: ApplicationID, token: String, _ message: JSONValue) async throws -> JSONValue? {
        try await send(.editOriginalResponse, major: "\(application)",
                       path: "/webhooks/\(application)/\(token)/messages/@original", body: message)
    }

    /// Reads an attachment a member uploaded (its CDN `url`, no token sent), refusing more than
    /// `limit` bytes.
    func download(_ url: String, limit: Int) async throws -> [UInt8] {
        var request = HTTPClientRequest(url: url)
        request.headers.add(name: "User-Agent", value: Self.userAgent)
        let response = try await http.execute(request, timeout: .seconds(30))
        guard response.status == .ok else {
            throw Failure(route: "GET attachment", status: Int(response.status.code), code: nil, message: "the file could not be downloaded")
        }
        if let length = response.headers.first(name: "Content-Length").flatMap(Int.init), length > limit {
            throw Failure(route: "GET attachment", status: 413, code: nil, message: "the file is \(length) bytes, over the \(limit)-byte limit")
        }
        do {
            let bytes = try await response.body.collect(upTo: limit)
            return Array(bytes.readableBytesView)
        } catch is NIOTooManyBytesError {
            throw Failure(route: "GET attachment", status: 413, code: nil, message: "the file is over the \(limit)-byte limit")
        }
    }

    /// A file sent with a message.
    struct Upload: Sendable, Equatable {
        var filename: String
        var contentType: String
        var bytes: [UInt8]
    }

    /// A multipart/form-data body: `payload_json`, then `files[0]`, `files[1]`…
    static func multipart(_ json: JSONValue?, _ files: [Upload], boundary: String) throws -> [UInt8] {
        var body: [UInt8] = []
        func line(_ text: String) { body += Array((text + "\r\n").utf8) }
        if let json {
            line("--\(boundary)")
            line("Content-Disposition: form-data; name=\"payload_json\"")
            line("Content-Type: application/json")
            line("")
            body += Array(try JSONEncoder().encode(json))
            line("")
        }
        for (index, file) in files.enumerated() {
            let name = file.filename.filter { $0 != "\"" && $0 != "\r" && $0 != "\n" }
            line("--\(boundary)")
            line("Content-Disposition: form-data; name=\"files[\(index)]\"; filename=\"\(name)\"")
            line("Content-Type: \(file.contentType)")
            line("")
            body += file.bytes
            line("")
        }
        line("--\(boundary)--")
        return body
    }

    func overwriteGuildCommands(application: ApplicationID, guild: GuildID, _ commands: JSONValue) async throws {
        try await send(.overwriteGuildCommands, major: "\(guild)",
                       path: "/applications/\(application)/guilds/\(guild)/commands", body: commands)
    }

    func executeWebhook(id: String, token: Secret, _ message: JSONValue) async throws {
        try await send(.executeWebhook, major: id,
                       path: "/webhooks/\(id)/\(token.reveal())?wait=true", body: message)
    }

    /// RFC 3986 percent-encoding, as Discord wants the audit-log reason.
    static func percentEncoded(_ text: String) -> String {
        let unreserved = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~".utf8)
        let digits = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        for byte in text.utf8 {
            if unreserved.contains(byte) {
                bytes.append(byte)
            } else {
                bytes += [UInt8(ascii: "%"), digits[Int(byte >> 4)], digits[Int(byte & 0xf)]]
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

extension DiscordREST {
    /// Every route the bot calls, and the only way to name one to `send`: `allCases` is the list
    /// a test checks against Discord's OpenAPI description, so no route escapes the check.
    enum Endpoint: String, CaseIterable, Sendable {
        case gatewayBot
        case getGuild
        case addMemberRole
        case removeMemberRole
        case getMember
        case listMembers
        case createMessage
        case interactionCallback
        case followUpMessage
        case editOriginalResponse
        case overwriteGuildCommands
        case executeWebhook

        var method: String {
            switch self {
            case .gatewayBot, .getGuild, .getMember, .listMembers: "GET"
            case .addMemberRole, .overwriteGuildCommands: "PUT"
            case .removeMemberRole: "DELETE"
            case .editOriginalResponse: "PATCH"
            case .createMessage, .interactionCallback, .followUpMessage, .executeWebhook: "POST"
            }
        }

        /// The path with its ids as placeholders.
        var template: String {
            switch self {
            case .gatewayBot: "/gateway/bot"
            case .getGuild: "/guilds/{guild}"
            case .addMemberRole, .removeMemberRole: "/guilds/{guild}/members/{user}/roles/{role}"
            case .getMember: "/guilds/{guild}/members/{user}"
            case .listMembers: "/guilds/{guild}/members"
            case .createMessage: "/channels/{channel}/messages"
            case .interactionCallback: "/interactions/{interaction}/{token}/callback"
            case .followUpMessage: "/webhooks/{application}/{token}"
            case .editOriginalResponse: "/webhooks/{application}/{token}/messages/@original"
            case .overwriteGuildCommands: "/applications/{application}/guilds/{guild}/commands"
            case .executeWebhook: "/webhooks/{webhook}/{token}"
            }
        }

        /// Interaction callbacks are not bound by the global limit.
        var exemptFromGlobal: Bool { self == .interactionCallback }

        func route(major: String?) -> RateLimiter.Route {
            RateLimiter.Route(method: method, template: template, major: major, exemptFromGlobal: exemptFromGlobal)
        }
    }
}

struct GatewayBot: Sendable, Equatable {
    var url: String
    var shards: Int
    var limit: SessionStartLimit
}

/// Discord's daily allowance of Identifies (`session_start_limit`).
struct SessionStartLimit: Sendable, Equatable {
    var total: Int
    var remaining: Int
    var resetAfter: Duration
    var maxConcurrency: Int
}
