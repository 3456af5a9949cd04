import IPC
import NIOCore

/// A file a request carried (multipart/form-data `files[n]`), as Discord takes message attachments.
struct UploadedFile: Sendable {
    var field: String
    var filename: String
    var contentType: String
    var bytes: [UInt8]
}

extension HTTPRequest {
    /// The JSON body and the files of a request: a JSON body, or multipart/form-data with the JSON
    /// as `payload_json` and the files as `files[n]`, as Discord's message routes take them.
    func payload() throws(DiscordError) -> (json: JSONValue?, files: [UploadedFile]) {
        let type = headers.first(name: "Content-Type") ?? ""
        guard type.lowercased().hasPrefix("multipart/form-data") else { return (try json(), []) }
        guard let boundary = type.split(separator: ";").lazy.map({ Self.trimmed($0) })
            .first(where: { $0.hasPrefix("boundary=") }).map({ Self.trimmed($0.dropFirst("boundary=".count), quotes: true) })
        else { throw .invalidForm(field: "Content-Type", code: "MULTIPART_BOUNDARY", message: "multipart/form-data without a boundary") }
        var json: JSONValue?
        var files: [UploadedFile] = []
        for part in Self.parts(Array(body.readableBytesView), boundary: boundary) {
            let name = part.parameter("name") ?? ""
            if name == "payload_json" {
                guard let value = JSONValue.parse(ByteBuffer(bytes: part.body)) else { throw .invalidJSON }
                json = value
            } else if name.hasPrefix("files[") {
                files.append(UploadedFile(field: name, filename: part.parameter("filename") ?? "file", contentType: part.contentType, bytes: part.body))
            }
        }
        return (json, files)
    }

    struct Part {
        var disposition: String
        var contentType: String
        var body: [UInt8]

        func parameter(_ key: String) -> String? {
            for item in disposition.split(separator: ";") {
                let pair = HTTPRequest.trimmed(item).split(separator: "=", maxSplits: 1)
                if pair.count == 2, pair[0] == key { return HTTPRequest.trimmed(pair[1], quotes: true) }
            }
            return nil
        }
    }

    /// `text` without surrounding spaces (and double quotes when `quotes`).
    static func trimmed(_ text: Substring, quotes: Bool = false) -> String {
        let drop: (Character) -> Bool = { $0 == " " || $0 == "\t" || (quotes && $0 == "\"") }
        return String(text.drop(while: drop).reversed().drop(while: drop).reversed())
    }

    /// The parts between `--boundary` lines, each with its headers split off.
    static func parts(_ bytes: [UInt8], boundary: String) -> [Part] {
        let delimiter = Array("--\(boundary)".utf8)
        var starts: [Int] = []
        var index = 0
        while index + delimiter.count <= bytes.count {
            if bytes[index] == delimiter[0], Array(bytes[index..<index + delimiter.count]) == delimiter {
                starts.append(index)
                index += delimiter.count
            } else {
                index += 1
            }
        }
        var parts: [Part] = []
        for (start, end) in zip(starts, starts.dropFirst()) {
            var content = Array(bytes[(start + delimiter.count)..<end])
            if content.starts(with: [13, 10]) { content.removeFirst(2) }
            if content.suffix(2) == [13, 10] { content.removeLast(2) }
            let separator: [UInt8] = [13, 10, 13, 10]
            guard let split = (0...max(0, content.count - 4)).first(where: { content.count >= 4 && Array(content[$0..<$0 + 4]) == separator }) else { continue }
            let head = String(decoding: content[..<split], as: UTF8.self)
            var part = Part(disposition: "", contentType: "application/octet-stream", body: Array(content[(split + 4)...]))
            for line in head.split(separator: "\r\n") {
                let pair = line.split(separator: ":", maxSplits: 1)
                guard pair.count == 2 else { continue }
                let value = Self.trimmed(pair[1])
                switch pair[0].lowercased() {
                case "content-disposition": part.disposition = value
                case "content-type": part.contentType = value
                default: break
                }
            }
            parts.append(part)
        }
        return parts
    }
}
