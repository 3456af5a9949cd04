import FoundationEssentials
import IPC

/// The question a member answers in a modal before the verified role (`/verification setup
/// challenge:`): no website and no DM (which fails for members who have DMs off).
enum ChallengeKind: String, Sendable, CaseIterable {
    /// The button alone gives the role.
    case none
    /// A short sum: "What is 7 + 5?".
    case sum
    /// A word to type back: "Type the word: lantern".
    case word

    static let words = [
        "anchor", "basket", "candle", "garden", "harbor", "island", "jacket", "kettle", "lantern", "meadow",
        "orange", "pepper", "rabbit", "saddle", "timber", "violet", "walnut", "window", "yellow", "zipper",
    ]

    /// A new question, or nil for `none`. `random` is injected so tests can fix it.
    func question(using random: inout some RandomNumberGenerator) -> ChallengeQuestion? {
        switch self {
        case .none:
            return nil
        case .sum:
            let a = Int.random(in: 2...9, using: &random), b = Int.random(in: 2...9, using: &random)
            return ChallengeQuestion(prompt: "What is \(a) + \(b)?", answer: String(a + b))
        case .word:
            let word = Self.words[Int.random(in: 0..<Self.words.count, using: &random)]
            return ChallengeQuestion(prompt: "Type the word: \(word)", answer: word)
        }
    }
}

struct ChallengeQuestion: Sendable, Equatable {
    /// The text input's label (Discord allows 45 characters).
    var prompt: String
    var answer: String

    /// Whether `given` is the answer: compared trimmed and case-insensitively ("  Lantern " is
    /// "lantern").
    static func matches(_ given: String, _ expected: String) -> Bool {
        normalized(given) == normalized(expected)
    }

    private static func normalized(_ text: String) -> String {
        let trimmed = text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed()
        return String(trimmed).lowercased()
    }
}

/// One member's challenge as stored in `verification_challenges`: the question, the wrong answers
/// so far and the cooldown they earned. A pure state machine: `press` and `submit` take the clock
/// and return what to tell the member; the feature stores the new state and performs the answer.
///
/// Three wrong answers start a cooldown (`/verification setup challenge_cooldown_seconds:`);
/// pressing Verify during it says when it ends, and after it asks a new question. An unanswered
/// question expires after `lifetime`; the next press asks a new one with the count reset.
struct VerificationChallenge: Sendable, Equatable {
    static let allowedWrongAnswers = 3
    static let lifetime: TimeInterval = 600

    /// Its number in the modal's `custom_id` (the issue time in milliseconds): an answer to a
    /// question that was replaced since is not counted.
    var id: Int64
    var question: ChallengeQuestion
    var wrongAnswers = 0
    var cooldownUntil: Date?
    var issuedAt: Date
    var expiresAt: Date

    init(id: Int64, question: ChallengeQuestion, wrongAnswers: Int = 0, cooldownUntil: Date? = nil, issuedAt: Date, expiresAt: Date) {
        self.id = id
        self.question = question
        self.wrongAnswers = wrongAnswers
        self.cooldownUntil = cooldownUntil
        self.issuedAt = issuedAt
        self.expiresAt = expiresAt
    }

    init(question: ChallengeQuestion, now: Date) {
        self.init(id: Timestamp.milliseconds(now), question: question, issuedAt: now, expiresAt: now.addingTimeInterval(Self.lifetime))
    }

    enum PressAnswer: Sendable, Equatable {
        /// Show the question in a modal (a new one, or the one still open).
        case ask(VerificationChallenge, new: Bool)
        /// Three wrong answers: nothing until then.
        case coolingDown(until: Date)
    }

    enum SubmitAnswer: Sendable, Equatable {
        case passed
        /// Wrong; `left` more tries before the cooldown.
        case wrong(left: Int)
        /// The last allowed wrong answer: the cooldown starts now.
        case wrongCoolingDown(until: Date)
        /// Answered during a cooldown.
        case coolingDown(until: Date)
        /// No such question open (expired, replaced, or answered already).
        case expired
    }

    /// Verify pressed with `current` stored: the state to store (nil: delete) and the answer.
    static func press(_ current: VerificationChallenge?, now: Date, newQuestion: () -> ChallengeQuestion) -> (VerificationChallenge?, PressAnswer) {
        if let current, let until = current.cooldownUntil, until > now {
            return (current, .coolingDown(until: until))
        }
        if let current, current.cooldownUntil == nil, current.expiresAt > now {
            return (current, .ask(current, new: false))
        }
        let fresh = VerificationChallenge(question: newQuestion(), now: now)
        return (fresh, .ask(fresh, new: true))
    }

    /// The modal for challenge `id` submitted with `answer`: the state to store and the answer.
    static func submit(_ current: VerificationChallenge?, id: Int64?, answer: String, now: Date, cooldown: TimeInterval) -> (VerificationChallenge?, SubmitAnswer) {
        guard var current else { return (nil, .expired) }
        if let until = current.cooldownUntil {
            return until > now ? (current, .coolingDown(until: until)) : (current, .expired)
        }
        guard current.id == id, current.expiresAt > now else { return (current, .expired) }
        if ChallengeQuestion.matches(answer, current.question.answer) { return (nil, .passed) }
        current.wrongAnswers += 1
        if current.wrongAnswers >= allowedWrongAnswers {
            let until = now.addingTimeInterval(max(cooldown, 0))
            current.cooldownUntil = until
            return (current, .wrongCoolingDown(until: until))
        }
        return (current, .wrong(left: allowedWrongAnswers - current.wrongAnswers))
    }

    /// The modal's `custom_id` prefix; the challenge's id follows it.
    static let modalPrefix = "verification:challenge:"
    static let inputID = "answer"

    /// The modal (interaction callback type 9's `data`): one short text input, labelled with the
    /// question.
    var modal: JSONValue {
        let input: [String: JSONValue] = [
            "type": .integer(4), "custom_id": .string(Self.inputID), "style": .integer(1),
            "label": .string(String(question.prompt.prefix(45))), "min_length": .integer(1), "max_length": .integer(40),
            "required": .bool(true), "placeholder": .string("Your answer"),
        ]
        let row: [String: JSONValue] = ["type": .integer(1), "components": .array([.object(input)])]
        return .object([
            "custom_id": .string(Self.modalPrefix + String(id)),
            "title": .string("Verification"),
            "components": .array([.object(row)]),
        ])
    }

    /// The challenge id in a modal's `custom_id`.
    static func id(fromCustomID customID: String?) -> Int64? {
        guard let customID, customID.hasPrefix(modalPrefix) else { return nil }
        return Int64(customID.dropFirst(modalPrefix.count))
    }
}
