import IPC

/// An error answer as Discord gives it: an HTTP status and `{"message": …, "code": …}`, with
/// Discord's JSON error codes (developers/topics/opcodes-and-status-codes#json).
struct DiscordError: Error, Sendable, Equatable {
    var status: Int
    var code: Int
    var message: String
    var errors: JSONValue?

    var json: JSONValue {
        var object: [String: JSONValue] = ["message": .string(message), "code": .integer(code)]
        if let errors { object["errors"] = errors }
        return .object(object)
    }

    static let unauthorized = DiscordError(status: 401, code: 0, message: "401: Unauthorized")
    static let notFound = DiscordError(status: 404, code: 0, message: "404: Not Found")
    static let methodNotAllowed = DiscordError(status: 405, code: 0, message: "405: Method Not Allowed")
    static let unknownChannel = DiscordError(status: 404, code: 10003, message: "Unknown Channel")
    static let unknownGuild = DiscordError(status: 404, code: 10004, message: "Unknown Guild")
    static let unknownMember = DiscordError(status: 404, code: 10007, message: "Unknown Member")
    static let unknownMessage = DiscordError(status: 404, code: 10008, message: "Unknown Message")
    static let unknownRole = DiscordError(status: 404, code: 10011, message: "Unknown Role")
    static let unknownUser = DiscordError(status: 404, code: 10013, message: "Unknown User")
    static let unknownWebhook = DiscordError(status: 404, code: 10015, message: "Unknown Webhook")
    static let unknownInteraction = DiscordError(status: 404, code: 10062, message: "Unknown interaction")
    static let alreadyAcknowledged = DiscordError(status: 400, code: 40060, message: "Interaction has already been acknowledged.")
    static let missingPermissions = DiscordError(status: 403, code: 50013, message: "Missing Permissions")
    static let invalidWebhookToken = DiscordError(status: 401, code: 50027, message: "Invalid Webhook Token")
    static let invalidJSON = DiscordError(status: 400, code: 50109, message: "The request body contains invalid JSON.")

    /// 50035 with Discord's nested `errors` object naming the field.
    static func invalidForm(field: String, code: String, message: String) -> DiscordError {
        DiscordError(
            status: 400, code: 50035, message: "Invalid Form Body",
            errors: .object([field: .object(["_errors": .array([.object(["code": .string(code), "message": .string(message)])])])])
        )
    }
}
