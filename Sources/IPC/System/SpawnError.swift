#if canImport(Glibc)
import Glibc
#endif

extension ChildProcess {
    /// Why a child could not be started.
    public enum SpawnError: Error, CustomStringConvertible {
        /// The path is missing or not executable (`errno` from access(2)).
        case notExecutable(path: String, errno: Int32)
        case pipe(errno: Int32)
        case spawn(path: String, errno: Int32)
        /// No thread to spawn and wait for the child (thread or memory limit).
        case noThread

        public var description: String {
            switch self {
            case .notExecutable(let path, let errno): "\(path) is not an executable file (\(Self.text(errno)))"
            case .pipe(let errno): "pipe2: \(Self.text(errno))"
            case .spawn(let path, let errno): "posix_spawn \(path): \(Self.text(errno))"
            case .noThread: "no thread could be started to run the child (system thread limit?)"
            }
        }

        static func text(_ errno: Int32) -> String { String(cString: strerror(errno)) }
    }
}
