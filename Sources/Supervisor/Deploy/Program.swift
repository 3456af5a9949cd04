import Glibc
import IPC

/// Runs a program of a release being checked (its `--help`, its migration dry-run, its
/// supervisor in the rehearsal) as a `ChildProcess`: stdout and stderr merged into one pipe whose
/// first MiB is kept, the worker's environment (nothing of systemd's, no secrets), no backtraces.
enum Program {
    struct Result: Sendable {
        var status: ExitStatus
        var output: String
        var succeeded: Bool { status == .exited(code: 0) }
    }

    /// How long a program stopped by a timeout or by `stop` has between SIGTERM and SIGKILL.
    static let stopGrace: Duration = .seconds(5)

    /// A program started and not waited for yet.
    struct Running: Sendable {
        let process: ChildProcess
        let output: OutputReader.Capture

        /// Its status and output once it has exited and its output pipe has ended.
        func result() async -> Result {
            let bytes = await output.output()
            let status = await process.waitIgnoringCancellation()
            return Result(status: status, output: String(decoding: bytes, as: UTF8.self))
        }

        /// Stops it (SIGTERM to its group, SIGKILL after `grace`) and returns its result.
        func stop(grace: Duration = Program.stopGrace) async -> Result {
            await process.terminate(grace: grace)
            return await result()
        }
    }

    /// Runs `executable` to its end; stopped (TERM, then KILL after `stopGrace`) after `timeout`.
    static func run(_ executable: String, _ arguments: [String], timeout: Duration = .seconds(60)) async throws -> Result {
        let running = try await start(executable, arguments)
        return await withDeadline(timeout, onExpiry: { await running.process.terminate(grace: stopGrace) }) {
            await running.result()
        }
    }

    /// Starts `executable` in a process group of its own, its output collected in the background.
    static func start(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:]) async throws -> Running {
        var environment = WorkerProcess.environment(extra: ["SWIFT_BACKTRACE": "enable=no"])
        environment.merge(extra) { $1 }
        let process: ChildProcess
        do {
            process = try await ChildProcess.spawn(executable, arguments: arguments, environment: environment, stdout: .pipe, stderr: .merged)
        } catch .notExecutable {
            throw DeployError("\(executable) is missing or not executable")
        } catch .spawn(_, let errno) {
            throw DeployError("cannot run \(executable): \(String(cString: strerror(errno)))")
        } catch {
            throw DeployError("cannot run \(executable): \(error)")
        }
        return Running(process: process, output: OutputReader.Capture(process.stdout!))
    }
}
