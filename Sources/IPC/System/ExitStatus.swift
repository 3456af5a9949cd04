#if canImport(Glibc)
import Glibc
#endif

/// How a child process ended, decoded from waitpid(2).
public enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
    case exited(code: Int32)
    case signaled(signal: Int32)

    public init(waitStatus status: Int32) {
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as functions.
        if status & 0x7f == 0 {
            self = .exited(code: (status >> 8) & 0xff)
        } else {
            self = .signaled(signal: status & 0x7f)
        }
    }

    /// The status in waitpid(2)'s encoding, for code that still wants the raw number.
    public var waitStatus: Int32 {
        switch self {
        case .exited(let code): (code & 0xff) << 8
        case .signaled(let signal): signal & 0x7f
        }
    }

    public var code: Int32? { if case .exited(let code) = self { code } else { nil } }
    public var signal: Int32? { if case .signaled(let signal) = self { signal } else { nil } }

    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal): "killed by signal \(signal) (\(Self.signalName(signal)))"
        }
    }

    public static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGHUP: "SIGHUP"
        case SIGINT: "SIGINT"
        case SIGQUIT: "SIGQUIT"
        case SIGILL: "SIGILL"
        case SIGTRAP: "SIGTRAP"
        case SIGABRT: "SIGABRT"
        case SIGBUS: "SIGBUS"
        case SIGFPE: "SIGFPE"
        case SIGKILL: "SIGKILL"
        case SIGSEGV: "SIGSEGV"
        case SIGPIPE: "SIGPIPE"
        case SIGALRM: "SIGALRM"
        case SIGTERM: "SIGTERM"
        case SIGUSR1: "SIGUSR1"
        case SIGUSR2: "SIGUSR2"
        default: "signal \(signal)"
        }
    }
}
