import IPC
import NIOCore

/// The supervisor's end of the worker's IPC connection: who is connected, and a way to reach it.
actor WorkerLink {
    private var connection: (pid: Int32, writer: NIOAsyncChannelOutboundWriter<ByteBuffer>)?

    func attach(pid: Int32, writer: NIOAsyncChannelOutboundWriter<ByteBuffer>) {
        connection = (pid, writer)
    }

    func detach(pid: Int32) {
        if connection?.pid == pid { connection = nil }
    }

    /// Sends `message` to whichever worker is connected; false when none is.
    func sendToCurrent(_ message: SupervisorMessage) async -> Bool {
        guard let connection else { return false }
        return await send(message, to: connection.pid)
    }

    /// Sends `message` to worker `pid`; false when that worker has no open connection.
    func send(_ message: SupervisorMessage, to pid: Int32) async -> Bool {
        guard let connection, connection.pid == pid else { return false }
        do {
            try await connection.writer.writeLine(message)
            return true
        } catch {
            return false
        }
    }
}
