import IPC
import Testing

@testable import BotWorker

@Suite struct GatewaySessionTests {
    let t0 = ContinuousClock.now
    let identity = GatewaySession.Identity(token: Secret("token-value"), intents: 515, shard: (0, 1))

    func hello(_ ms: Int = 45_000) -> GatewayPayload { GatewayPayload(op: 10, d: .object(["heartbeat_interval": .integer(ms)])) }
    func dispatch(_ type: String, _ seq: Int, _ data: JSONValue = .object([:])) -> GatewayPayload { GatewayPayload(op: 0, d: data, s: seq, t: type) }
    let ready: JSONValue = .object(["session_id": .string("s1"), "resume_gateway_url": .string("wss://resume.example"), "v": .integer(10)])

    /// A session that identified and received READY (sequence 1).
    func connected() -> GatewaySession {
        var session = GatewaySession(identity: identity, gatewayURL: "wss://gateway.example")
        _ = session.start()
        _ = session.opened()
        _ = session.received(hello(), at: t0, jitter: 0.5)
        _ = session.received(dispatch("READY", 1, ready), at: t0, jitter: 0)
        return session
    }

    @Test func helloSchedulesAJitteredFirstHeartbeatAndIdentifies() {
        var session = GatewaySession(identity: identity, gatewayURL: "wss://gateway.example")
        #expect(session.start() == [.connect(url: "wss://gateway.example")])
        _ = session.opened()
        let actions = session.received(hello(40_000), at: t0, jitter: 0.25)
        #expect(actions.first == .scheduleHeartbeat(after: .seconds(10), generation: 1))
        guard case .send(let identify) = actions.last, case .object(let d) = identify.d else {
            Issue.record("no identify")
            return
        }
        #expect(identify.op == 2)
        #expect(d["token"] == .string("token-value"))
        #expect(d["intents"] == .integer(515))
        #expect(d["shard"] == .array([.integer(0), .integer(1)]))
        #expect(session.phase == .identifying)
    }

    @Test func heartbeatsCarryTheLastSequenceAndAZombieIsClosedToResume() {
        var session = connected()
        _ = session.received(dispatch("MESSAGE_CREATE", 7), at: t0, jitter: 0)
        #expect(session.heartbeatDue(generation: 1, at: t0) == [
            .send(GatewayPayload(op: 1, d: .integer(7))), .scheduleHeartbeat(after: .seconds(45), generation: 1),
        ])
        _ = session.received(GatewayPayload(op: 11), at: t0 + .milliseconds(80), jitter: 0)
        #expect(session.latency == .milliseconds(80))
        _ = session.heartbeatDue(generation: 1, at: t0 + .seconds(45))
        // No ACK for that one: the next beat finds a zombie.
        #expect(session.heartbeatDue(generation: 1, at: t0 + .seconds(90)) == [.close(code: 4000)])
        #expect(session.closed(code: nil, jitter: 0) == [.scheduleReconnect(after: .milliseconds(500))])
        #expect(session.reconnectDue() == [.connect(url: "wss://resume.example")])
        _ = session.opened()
        let actions = session.received(hello(), at: t0, jitter: 0)
        #expect(actions.last == .send(GatewayPayload(op: 6, d: .object([
            "token": .string("token-value"), "session_id": .string("s1"), "seq": .integer(7),
        ]))))
        #expect(session.phase == .resuming)
    }

    @Test func aServerHeartbeatRequestIsAnsweredAtOnce() {
        var session = connected()
        #expect(session.received(GatewayPayload(op: 1), at: t0, jitter: 0) == [.send(GatewayPayload(op: 1, d: .integer(1)))])
    }

    @Test func staleHeartbeatTimersAreIgnored() {
        var session = connected()
        _ = session.closed(code: 1006, jitter: 0)
        #expect(session.heartbeatDue(generation: 1, at: t0) == [])
    }

    @Test func reconnectOpcodeResumes() {
        var session = connected()
        #expect(session.received(GatewayPayload(op: 7), at: t0, jitter: 0) == [.close(code: 4000)])
        _ = session.closed(code: 4000, jitter: 0)
        #expect(session.canResume)
    }

    @Test func invalidSessionFalseIdentifiesAfresh() {
        var session = connected()
        #expect(session.received(GatewayPayload(op: 9, d: .bool(false)), at: t0, jitter: 0) == [.close(code: 4000)])
        _ = session.closed(code: 4000, jitter: 0)
        #expect(!session.canResume)
        #expect(session.reconnectDue() == [.connect(url: "wss://gateway.example")])
        _ = session.opened()
        guard case .send(let payload) = session.received(hello(), at: t0, jitter: 0).last else { return }
        #expect(payload.op == 2)
        #expect(session.identifies == 2)
    }

    @Test func invalidSessionTrueResumes() {
        var session = connected()
        _ = session.received(GatewayPayload(op: 9, d: .bool(true)), at: t0, jitter: 0)
        _ = session.closed(code: 4000, jitter: 0)
        #expect(session.canResume)
    }

    @Test(arguments: [4007, 4009])
    func sessionEndingCloseCodesIdentifyAfresh(_ code: Int) {
        var session = connected()
        _ = session.closed(code: code, jitter: 0)
        #expect(!session.canResume)
    }

    @Test(arguments: [4004, 4010, 4011, 4012, 4013, 4014])
    func fatalCloseCodesStopReconnecting(_ code: Int) {
        var session = connected()
        let actions = session.closed(code: code, jitter: 0)
        guard case .fatal(let message) = actions.first else {
            Issue.record("not fatal: \(actions)")
            return
        }
        #expect(message.contains("\(code)"))
        #expect(session.reconnectDue() == [])
    }

    @Test func reconnectsBackOffExponentiallyWithJitterUpToAMinute() {
        var session = connected()
        var delays: [Duration] = []
        for _ in 0..<8 {
            guard case .scheduleReconnect(let delay) = session.closed(code: 1006, jitter: 0.999).first else { return }
            delays.append(delay)
            _ = session.reconnectDue()
            _ = session.opened()
        }
        #expect(delays.map { $0 <= .seconds(60) }.allSatisfy { $0 })
        #expect(delays[0] < delays[1] && delays[1] < delays[2])
        #expect(delays.last! > .seconds(55))
        // READY resets the count.
        _ = session.received(dispatch("READY", 1, ready), at: t0, jitter: 0)
        #expect(session.failedAttempts == 0)
    }

    @Test func unknownEventsAndOpcodesAreHandedOnOrSkipped() {
        var session = connected()
        #expect(session.received(dispatch("SOMETHING_NEW", 2, .object(["x": .integer(1)])), at: t0, jitter: 0)
            == [.dispatch(type: "SOMETHING_NEW", data: .object(["x": .integer(1)]))])
        #expect(session.received(GatewayPayload(op: 99), at: t0, jitter: 0) == [])
        #expect(session.sequence == 2)
    }

    @Test func theTokenNeverShowsInTheSessionsDescription() {
        let session = connected()
        #expect(!String(describing: session).contains("token-value"))
        #expect(!String(reflecting: session.identity).contains("token-value"))
    }

    // MARK: - A session that outlives its worker

    let stored = GatewaySession.StoredSession(sessionID: "s1", resumeURL: "wss://resume.example", sequence: 10)

    @Test func aStoredSessionIsResumedAndWhatWasCommittedIsSkipped() {
        var session = GatewaySession(identity: identity, gatewayURL: "wss://gateway.example", stored: stored)
        #expect(session.start() == [.connect(url: "wss://resume.example")])
        _ = session.opened()
        let hello = session.received(hello(), at: t0, jitter: 0)
        #expect(hello.last == .send(GatewayPayload(op: 6, d: .object([
            "token": .string("token-value"), "session_id": .string("s1"), "seq": .integer(10),
        ]))))
        // Discord replays from the sequence given; one at or below it was handled already.
        #expect(session.received(dispatch("MESSAGE_CREATE", 10), at: t0, jitter: 0).isEmpty)
        #expect(session.received(dispatch("MESSAGE_CREATE", 11), at: t0, jitter: 0) == [.dispatch(type: "MESSAGE_CREATE", data: .object([:]))])
        #expect(session.received(dispatch("MESSAGE_CREATE", 12), at: t0, jitter: 0).count == 1)
        _ = session.received(dispatch("RESUMED", 13), at: t0, jitter: 0)
        #expect(session.phase == .connected)
        #expect(session.counters == .init(resumes: 1, identifies: 0, eventsReplayed: 2, duplicatesSkipped: 1))
        #expect(session.sequence == 13)
        var copy = session
        #expect(copy.takeLostSession() == nil)
    }

    @Test func aRefusedResumeIsALostSessionAndANewOneIsNotFiltered() {
        var session = GatewaySession(identity: identity, gatewayURL: "wss://gateway.example", stored: stored)
        _ = session.start()
        _ = session.opened()
        _ = session.received(hello(), at: t0, jitter: 0)
        // The session expired on Discord's side: op 9 false.
        #expect(session.received(GatewayPayload(op: 9, d: .bool(false)), at: t0, jitter: 0) == [.close(code: 4000)])
        _ = session.closed(code: nil, jitter: 0)
        #expect(session.reconnectDue() == [.connect(url: "wss://gateway.example")])
        _ = session.opened()
        guard case .send(let identify) = session.received(hello(), at: t0, jitter: 0).last else {
            Issue.record("no identify")
            return
        }
        #expect(identify.op == 2)
        // The new session numbers from 1: nothing of it is skipped.
        #expect(session.received(dispatch("READY", 1, ready), at: t0, jitter: 0).count == 1)
        #expect(session.received(dispatch("MESSAGE_CREATE", 2), at: t0, jitter: 0).count == 1)
        #expect(session.counters.identifies == 1 && session.counters.duplicatesSkipped == 0)
        #expect(session.takeLostSession() == GatewaySession.LostSession(sessionID: "s1", sequence: 10))
        #expect(session.takeLostSession() == nil)
    }
}

@Suite struct RateLimiterTests {
    let t0 = ContinuousClock.now
    let addRole = RateLimiter.Route(method: "PUT", template: "/guilds/{guild}/members/{user}/roles/{role}", major: "1")
    func headers(bucket: String = "abc", remaining: Int, resetAfter: Double) -> [String: String] {
        ["x-ratelimit-bucket": bucket, "x-ratelimit-remaining": "\(remaining)", "x-ratelimit-reset-after": "\(resetAfter)"]
    }

    @Test func anEmptyBucketWaitsForItsReset() {
        var limiter = RateLimiter()
        #expect(limiter.decide(addRole, at: t0) == .go)
        limiter.willSend(addRole, at: t0)
        limiter.didReceive(addRole, status: 204, headers: headers(remaining: 0, resetAfter: 1.5), at: t0)
        #expect(limiter.decide(addRole, at: t0 + .milliseconds(500)) == .wait(.seconds(1)))
        #expect(limiter.decide(addRole, at: t0 + .seconds(2)) == .go)
    }

    @Test func bucketsAreSeparatePerMajorParameter() {
        var limiter = RateLimiter()
        limiter.didReceive(addRole, status: 204, headers: headers(remaining: 0, resetAfter: 5), at: t0)
        var otherGuild = addRole
        otherGuild.major = "2"
        #expect(limiter.decide(otherGuild, at: t0) == .go)
        #expect(limiter.decide(addRole, at: t0) != .go)
    }

    @Test func remainingCountsDownBetweenResponses() {
        var limiter = RateLimiter()
        limiter.didReceive(addRole, status: 204, headers: headers(remaining: 2, resetAfter: 10), at: t0)
        limiter.willSend(addRole, at: t0)
        limiter.willSend(addRole, at: t0)
        #expect(limiter.decide(addRole, at: t0) == .wait(.seconds(10)))
    }

    @Test func a429WaitsRetryAfterAndCountsAsInvalid() {
        var limiter = RateLimiter()
        limiter.didReceive(addRole, status: 429, headers: ["x-ratelimit-bucket": "abc", "x-ratelimit-scope": "user"], retryAfter: 2.5, at: t0)
        #expect(limiter.decide(addRole, at: t0) == .wait(.milliseconds(2500)))
        #expect(limiter.invalidRequestCount(at: t0) == 1)
    }

    @Test func aGlobal429HoldsEveryRoute() {
        var limiter = RateLimiter()
        limiter.didReceive(addRole, status: 429, headers: ["x-ratelimit-global": "true", "x-ratelimit-scope": "global"], retryAfter: 1, global: true, at: t0)
        let message = RateLimiter.Route(method: "POST", template: "/channels/{channel}/messages", major: "9")
        #expect(limiter.decide(message, at: t0) == .wait(.seconds(1)))
    }

    @Test func sharedScope429sAreNotInvalid() {
        var limiter = RateLimiter()
        limiter.didReceive(addRole, status: 429, headers: ["x-ratelimit-scope": "shared"], retryAfter: 1, at: t0)
        #expect(limiter.invalidRequestCount(at: t0) == 0)
    }

    @Test func theGlobalLimitIsFiftyPerSecondExceptInteractionCallbacks() {
        var limiter = RateLimiter()
        let message = RateLimiter.Route(method: "POST", template: "/channels/{channel}/messages", major: "9")
        for i in 0..<50 { limiter.willSend(message, at: t0 + .milliseconds(i)) }
        #expect(limiter.decide(message, at: t0 + .milliseconds(100)) == .wait(.milliseconds(900)))
        #expect(limiter.globalHeadroom(at: t0 + .milliseconds(100)) == 0)
        let callback = RateLimiter.Route(method: "POST", template: "/interactions/{interaction}/{token}/callback", major: nil, exemptFromGlobal: true)
        #expect(limiter.decide(callback, at: t0 + .milliseconds(100)) == .go)
    }

    @Test func tooManyInvalidRequestsRefuseFurtherOnes() {
        var limiter = RateLimiter()
        limiter.invalidRequestBudget = 3
        for _ in 0..<3 { limiter.didReceive(addRole, status: 403, headers: [:], at: t0) }
        guard case .refuse = limiter.decide(addRole, at: t0) else {
            Issue.record("not refused")
            return
        }
        #expect(limiter.decide(addRole, at: t0 + .seconds(601)) == .go)
    }

    @Test func theGatewaySendLimitKeepsRoomForHeartbeats() {
        var limiter = GatewaySendLimiter()
        for i in 0..<117 { limiter.record(at: t0 + .milliseconds(i)) }
        #expect(limiter.delay(isHeartbeat: false, at: t0 + .seconds(1)) == .milliseconds(59_000))
        #expect(limiter.delay(isHeartbeat: true, at: t0 + .seconds(1)) == .zero)
        #expect(limiter.delay(isHeartbeat: false, at: t0 + .seconds(61)) == .zero)
    }
}

@Suite struct SnowflakeTests {
    @Test func aSnowflakeTellsWhenItWasMade() throws {
        // Discord's documented example: 175928847299117063 → 2016-04-30 11:18:25.796 UTC.
        let id = try #require(UserID("175928847299117063"))
        #expect(Int(id.createdAt.timeIntervalSince1970 * 1000) == 1_462_015_105_796)
        #expect(id.description == "175928847299117063")
    }

    @Test func snowflakesDecodeFromStringsAndEncodeAsStrings() throws {
        let decoded = try JSONLine.decode([GuildID].self, from: #"["41771983423143937", 41771983423143938]"#)
        #expect(decoded.map(\.rawValue) == [41_771_983_423_143_937, 41_771_983_423_143_938])
        #expect(try JSONLine.encode(decoded[0]) == "\"41771983423143937\"\n")
    }
}
