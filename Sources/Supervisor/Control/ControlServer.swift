import FoundationEssentials
import IPC
import Logging
import NIOCore
import ServiceLifecycle

/// Serves the status socket (docs/contract.md, "The status socket"): one request per line, one
/// response per line, many requests per connection. Bad input gets an error reply and closes
/// that connection only; a peer that stalls mid-line is cut off after the read timeout.
struct ControlServer: Service {
    let path: String
    let readTimeout: Duration
    let commands: ControlCommands
    let group: any EventLoopGroup
    let logger: Logger

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await UnixLineServer.run(path: path, mode: 0o660, group: group, readTimeout: .init(readTimeout)) { connection in
                await self.serve(connection)
            }
        }
    }

    private func serve(_ connection: LineConnection) async {
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                for try await frame in inbound {
                    let request: ControlRequest
                    switch frame {
                    case .failure(let error):
                        try await self.reject(.frame(error), outbound, connection.peer)
                        return
                    case .line(let line):
                        do {
                            request = try JSONLine.decode(ControlRequest.self, from: line)
                        } catch {
                            let body = ErrorBody.badRequest("\(JSONLine.explain(error)); send one JSON object per line, e.g. {\"cmd\":\"status\"}")
                            try await self.reject(body, outbound, connection.peer)
                            return
                        }
                    }
                    let response = await commands.handle(request, from: connection.peer)
                    try await outbound.write(ByteBuffer(string: response))
                }
            }
        } catch {
            logger.debug("status connection ended", metadata: [LogKey.error: "\(error)"])
        }
    }

    private func reject(_ error: ErrorBody, _ outbound: NIOAsyncChannelOutboundWriter<ByteBuffer>, _ peer: PeerCredentials) async throws {
        logger.warning("status socket: bad input, closing the connection", metadata: [LogKey.pid: "\(peer.pid)", LogKey.uid: "\(peer.uid)", LogKey.error: "\(error)"])
        try await outbound.writeLine(ControlResponse<Ignored>.failure(error))
    }
}
