import FoundationEssentials

#if canImport(Glibc)
import Glibc
#endif

/// A small blocking client for the status socket, for command-line tools: one request, one response.
public struct ControlClient: Sendable {
    public enum ClientError: Error, CustomStringConvertible {
        /// Nothing answers at the path: exit status 3.
        case unreachable(path: String, reason: String)
        /// The connection broke or timed out mid-way.
        case io(String)
        /// The supervisor answered with `ok: false`.
        case refused(ErrorBody)

        public var description: String {
            switch self {
            case .unreachable(let path, let reason):
                "cannot reach the supervisor at \(path): \(reason). Is it running? (`systemctl status bot-supervisor`, or start it with `bot-supervisor run`)"
            case .io(let message):
                message
            case .refused(let body):
                body.description
            }
        }
    }

    public let socketPath: String
    public let timeoutSeconds: Double

    public init(socketPath: String, timeoutSeconds: Double = 30) {
        self.socketPath = socketPath
        self.timeoutSeconds = timeoutSeconds
    }

    /// Sends `request` and decodes the `result` of a successful response.
    public func send<Result: Decodable>(_ request: ControlRequest, expecting: Result.Type) throws -> Result {
        let line = try self.exchange(try JSONLine.encode(request))
        let envelope: ResponseEnvelope<Result>
        do {
            envelope = try JSONLine.decode(ResponseEnvelope<Result>.self, from: line)
        } catch {
            throw ClientError.io("unreadable response from the supervisor: \(JSONLine.explain(error))")
        }
        if envelope.ok, let result = envelope.result { return result }
        throw ClientError.refused(envelope.error ?? ErrorBody(code: "unknown", message: "the supervisor gave no reason"))
    }

    /// Sends one raw line (which must end with a newline) and returns the raw response line.
    public func exchange(_ requestLine: String) throws -> String {
        let fd = try connectOnly()
        defer { close(fd) }

        return try sendAndReceive(fd, requestLine)
    }

    /// Connects and returns the descriptor, which the caller closes.
    public func connectOnly() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ClientError.io("socket(): \(Self.errnoText())") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw ClientError.unreachable(path: socketPath, reason: "the path is longer than a Unix socket path may be (107 bytes)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason = Self.errnoText()
            close(fd)
            throw ClientError.unreachable(path: socketPath, reason: reason)
        }
        return fd
    }

    private func sendAndReceive(_ fd: Int32, _ requestLine: String) throws -> String {
        var timeout = timeval(tv_sec: Int(timeoutSeconds), tv_usec: Int((timeoutSeconds - timeoutSeconds.rounded(.down)) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))

        var bytes = Array(requestLine.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                throw ClientError.io("sending the request failed: \(Self.errnoText())")
            }
            bytes = bytes.dropFirst(written)
        }

        var response = [UInt8]()
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK {
                    throw ClientError.io("the supervisor did not answer within \(Int(timeoutSeconds)) s")
                }
                throw ClientError.io("reading the response failed: \(Self.errnoText())")
            }
            if count == 0 { break }
            response.append(contentsOf: chunk[..<count])
            if let newline = response.firstIndex(of: UInt8(ascii: "\n")) {
                response.removeSubrange(newline...)
                return String(decoding: response, as: UTF8.self)
            }
        }
        if response.isEmpty { throw ClientError.io("the supervisor closed the connection without answering") }
        return String(decoding: response, as: UTF8.self)
    }

    private static func errnoText() -> String { String(cString: strerror(errno)) }
}

private struct ResponseEnvelope<Result: Decodable>: Decodable {
    var ok: Bool
    var result: Result?
    var error: ErrorBody?
}
