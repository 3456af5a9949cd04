import IPC

/// A file the sandbox keeps, as Discord's CDN does.
struct StoredAttachment: Sendable {
    var id: UInt64
    var filename: String
    var contentType: String
    var bytes: [UInt8]
}

/// Attachments: files a bot sends with a message (multipart/form-data) and files members upload
/// for an ATTACHMENT option, kept (the last 100) and served at `/attachments/{id}/{filename}`.
extension SandboxWorld {
    static let keptAttachments = 100

    /// Stores a file and returns its attachment object.
    mutating func store(_ file: UploadedFile) -> JSONValue {
        let id = nextID()
        attachments[id] = StoredAttachment(id: id, filename: file.filename, contentType: file.contentType, bytes: file.bytes)
        attachmentOrder.append(id)
        if attachmentOrder.count > Self.keptAttachments { attachments[attachmentOrder.removeFirst()] = nil }
        return attachmentJSON(id)
    }

    func attachmentJSON(_ id: UInt64) -> JSONValue {
        guard let file = attachments[id] else { return .null }
        let url = "http://127.0.0.1:\(port)/attachments/\(id)/\(file.filename)"
        return .object([
            "id": .id(id), "filename": .string(file.filename), "size": .integer(file.bytes.count), "url": .string(url),
            "proxy_url": .string(url), "content_type": .string(file.contentType),
        ])
    }

    /// A multipart request's files stored, and the JSON's `attachments` (in `data` for an
    /// interaction callback) replaced by their attachment objects. Each file must be named by an
    /// `attachments` entry whose `id` is its index, as Discord requires.
    mutating func attach(_ files: [UploadedFile], to json: JSONValue?) throws(DiscordError) -> JSONValue {
        var stored: [JSONValue] = []
        for (index, file) in files.enumerated() {
            guard file.field == "files[\(index)]" else {
                throw .invalidForm(field: file.field, code: "ATTACHMENT_NOT_FOUND", message: "Files must be files[0], files[1]… in order.")
            }
            stored.append(store(file))
        }
        let json = json ?? .object([:])
        let isCallback = json["type"] != nil && json["data"] != nil
        let message = isCallback ? json["data"] ?? .object([:]) : json
        let named = message["attachments"]?.array ?? []
        guard named.count == files.count else {
            throw .invalidForm(field: "attachments", code: "ATTACHMENT_NOT_FOUND", message: "Every file needs an attachments entry naming it by index.")
        }
        let merged = message.merging(["attachments": .array(stored)])
        return isCallback ? json.merging(["data": merged]) : merged
    }

    /// `data.resolved.attachments` for the ATTACHMENT options (type 11) among `options`, whose
    /// values are ids of uploaded files; nil when there are none.
    func resolvedAttachments(in options: JSONValue?) -> JSONValue? {
        var found: [String: JSONValue] = [:]
        func scan(_ options: [JSONValue]) {
            for option in options {
                if option["type"]?.int == 11, let id = option["value"]?.snowflake, attachments[id] != nil {
                    found[String(id)] = attachmentJSON(id)
                }
                scan(option["options"]?.array ?? [])
            }
        }
        scan(options?.array ?? [])
        return found.isEmpty ? nil : .object(found)
    }
}
