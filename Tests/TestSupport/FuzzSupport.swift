// The fuzz tests' generator, driver and mutators, shared by the test targets that fuzz decoders
// (IPCTests, BotWorkerTests) through this library.
//
// Longer runs, with a seed of your own: FUZZ_ITERATIONS=1000000 FUZZ_SEED=$RANDOM swift test --filter Fuzz

import IPC
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast, and the same numbers for the same seed
/// on every machine, which is all a fuzz test asks of a generator.
package struct FuzzRandom: RandomNumberGenerator {
    private var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return Self.mix(state)
    }

    package static func mix(_ value: UInt64) -> UInt64 {
        var z = value
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    package mutating func below(_ bound: Int) -> Int { Int.random(in: 0..<bound, using: &self) }
    package mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    package mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

/// Runs one property over generated inputs, and says how to replay a failure.
///
/// Iteration `i` draws from a generator of its own, made from the seed and `i`, so one iteration
/// replays alone. The environment: `FUZZ_SEED` (decimal or 0x-hex, default fixed, so a plain
/// `make test` is reproducible), `FUZZ_ITERATIONS` (overrides every test's default count),
/// `FUZZ_REPLAY=i` (runs iteration `i` only).
package final class Fuzzer {
    package static let seed: UInt64 = environment("FUZZ_SEED").flatMap(parse) ?? 0x5EED_F022
    package static let isLongRun = environment("FUZZ_ITERATIONS") != nil

    package let name: String
    package private(set) var inputsTried = 0
    private let iterations: Range<Int>
    private var iteration: Int?
    private var input: [UInt8] = []
    private var failures = 0
    private let note: CrashNote.Slot

    /// Without `iterations`, for tests that feed fixed inputs and never call `run`.
    package init(_ name: String, iterations defaultIterations: Int = 1) {
        self.name = name
        if let replay = Self.environment("FUZZ_REPLAY").flatMap(Self.parse) {
            iterations = Int(replay)..<Int(replay) + 1
        } else {
            iterations = 0..<(Self.environment("FUZZ_ITERATIONS").flatMap(Self.parse).map(Int.init) ?? defaultIterations)
        }
        note = CrashNote.claim(header: "\(name) FUZZ_SEED=\(Self.seed)")
        CrashNote.ensureAlternateStack()
    }

    deinit { note.release() }

    /// Calls `body` once per iteration; stops after a few failures.
    package func run(_ body: (inout FuzzRandom) throws -> Void) rethrows {
        let started = ContinuousClock.now
        defer { iteration = nil }
        for index in iterations {
            iteration = index
            var random = FuzzRandom(seed: FuzzRandom.mix(Self.seed ^ FuzzRandom.mix(UInt64(index))))
            try body(&random)
            if failures >= 3 { break }
        }
        if Self.isLongRun {
            print("fuzz \(name): \(inputsTried) inputs, seed \(Self.seed), \(ContinuousClock.now - started), \(failures) failing")
        }
    }

    /// What the code under test gets next: shown with a failure, and on stderr if it crashes.
    package func feed(_ bytes: [UInt8]) {
        input = bytes
        inputsTried += 1
        note.update(iteration: iteration ?? -1, input: bytes)
    }

    package func check(_ condition: Bool, _ message: @autoclosure () -> String, sourceLocation: SourceLocation = #_sourceLocation) {
        guard !condition else { return }
        failures += 1
        let replay = iteration.map {
            "seed \(Self.seed), iteration \($0); replay: FUZZ_SEED=\(Self.seed) FUZZ_REPLAY=\($0) swift test --skip-build --filter Fuzz"
        } ?? "a fixed input, the same in every run"
        Issue.record(
            """
            \(name): \(Self.escaped(Array(message().utf8), limit: 600))
            \(replay)
            input (\(input.count) bytes): \(Self.escaped(input))
            """,
            sourceLocation: sourceLocation
        )
    }

    /// Printable ASCII as it is, everything else escaped, cut at `limit` bytes.
    package static func escaped(_ bytes: [UInt8], limit: Int = 400) -> String {
        var text = ""
        for byte in bytes.prefix(limit) {
            switch byte {
            case UInt8(ascii: "\n"): text += "\\n"
            case UInt8(ascii: "\\"): text += "\\\\"
            case 0x20..<0x7F: text.unicodeScalars.append(Unicode.Scalar(byte))
            default: text += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
            }
        }
        return bytes.count > limit ? text + "… (\(bytes.count - limit) more bytes)" : text
    }

    private static func environment(_ name: String) -> String? { getenv(name).map { String(cString: $0) } }

    private static func parse(_ text: String) -> UInt64? {
        text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text)
    }
}

/// A crash ends the test process before any issue is recorded: a signal handler writes what each
/// running fuzz test was feeding to stderr, then lets the signal go on to the handler that was
/// there before (Swift's backtracer), which sees it again when the faulting instruction reruns.
package enum CrashNote {
    private static let slotCount = 16, headerBytes = 200, inputBytes = 240
    private static let slotBytes = 24 + headerBytes + inputBytes
    private static let signals = [SIGILL, SIGTRAP, SIGSEGV, SIGBUS, SIGFPE, SIGABRT]
    private static let nextSlot = Atomic<Int>(0)
    /// Per slot: active, iteration, input length (3 Ints), the header (NUL-ended), the input's start.
    nonisolated(unsafe) private static let slots: UnsafeMutableRawPointer = {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: slotCount * slotBytes, alignment: 8)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: slotCount * slotBytes)
        return memory
    }()
    nonisolated(unsafe) private static let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: 4096)
    nonisolated(unsafe) private static let previous = UnsafeMutablePointer<sigaction>.allocate(capacity: 65)
    private static let installed: Bool = {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { signal in CrashNote.handle(signal) }
        action.sa_flags = Int32(SA_ONSTACK)
        for signal in signals { sigaction(signal, &action, previous + Int(signal)) }
        return true
    }()

    package struct Slot {
        package let base: UnsafeMutableRawPointer

        package func update(iteration: Int, input: [UInt8]) {
            base.storeBytes(of: iteration, toByteOffset: 8, as: Int.self)
            base.storeBytes(of: input.count, toByteOffset: 16, as: Int.self)
            input.prefix(CrashNote.inputBytes).withUnsafeBytes { bytes in
                (base + 24 + CrashNote.headerBytes).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            }
        }

        package func release() { base.storeBytes(of: 0, as: Int.self) }
    }

    package static func claim(header: String) -> Slot {
        _ = installed
        let base = slots + nextSlot.add(1, ordering: .relaxed).oldValue % slotCount * slotBytes
        let bytes = Array(header.utf8.prefix(headerBytes - 1)) + [0]
        bytes.withUnsafeBytes { (base + 24).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        base.storeBytes(of: -1, toByteOffset: 8, as: Int.self)
        base.storeBytes(of: 0, toByteOffset: 16, as: Int.self)
        base.storeBytes(of: 1, as: Int.self)
        return Slot(base: base)
    }

    /// A stack overflow can only be reported from a stack of its own.
    package static func ensureAlternateStack() {
        var current = stack_t()
        sigaltstack(nil, &current)
        guard current.ss_flags & Int32(SS_DISABLE) != 0 else { return }
        var stack = stack_t(ss_sp: malloc(1 << 16), ss_flags: 0, ss_size: 1 << 16)
        sigaltstack(&stack, nil)
    }

    /// Async-signal-safe: no allocation, no locks, only write(2) and sigaction(2).
    private static func handle(_ signal: Int32) {
        for index in 0..<slotCount {
            let base = slots + index * slotBytes
            guard base.load(as: Int.self) != 0 else { continue }
            var count = 0
            func put(_ byte: UInt8) { if count < 4096 { scratch[count] = byte; count += 1 } }
            func put(_ text: StaticString) { text.withUTF8Buffer { for byte in $0 { put(byte) } } }
            func put(number: Int) {
                var digits: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8) =
                    (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
                var value = number, length = 0
                withUnsafeMutableBytes(of: &digits) { digits in
                    repeat {
                        digits[length] = UInt8(ascii: "0") + UInt8(value % 10)
                        value /= 10
                        length += 1
                    } while value > 0 && length < 20
                    for position in stride(from: length - 1, through: 0, by: -1) { put(digits[position]) }
                }
            }
            put("\nfuzz: crashed in ")
            var header = base + 24
            while header.load(as: UInt8.self) != 0 {
                put(header.load(as: UInt8.self))
                header += 1
            }
            let iteration = base.load(fromByteOffset: 8, as: Int.self)
            if iteration >= 0 {
                put(" FUZZ_REPLAY=")
                put(number: iteration)
            } else {
                put(" (a fixed input)")
            }
            let length = base.load(fromByteOffset: 16, as: Int.self)
            put(", input of ")
            put(number: length)
            put(" bytes: ")
            let hex: StaticString = "0123456789abcdef"
            for offset in 0..<min(length, inputBytes) {
                let byte = base.load(fromByteOffset: 24 + headerBytes + offset, as: UInt8.self)
                if byte >= 0x20, byte < 0x7F, byte != UInt8(ascii: "\\") {
                    put(byte)
                } else {
                    put(UInt8(ascii: "\\"))
                    put(UInt8(ascii: "x"))
                    put(hex.utf8Start[Int(byte >> 4)])
                    put(hex.utf8Start[Int(byte & 15)])
                }
            }
            put("\n")
            _ = write(2, scratch, count)
        }
        sigaction(signal, previous + Int(signal), nil)
    }
}

// MARK: - Byte mutations

package enum ByteMutator {
    /// Sequences no UTF-8 decoder may accept: a stray continuation byte, an overlong NUL and
    /// slash, a surrogate, a cut-off 3- and 4-byte sequence, bytes that never occur, past U+10FFFF.
    package static let invalidUTF8: [[UInt8]] = [
        [0x80], [0xC0, 0x80], [0xC0, 0xAF], [0xED, 0xA0, 0x80], [0xE2, 0x82], [0xF0, 0x9F, 0x98], [0xFF], [0xFE],
        [0xF4, 0x90, 0x80, 0x80],
    ]
    package static let special: [UInt8] = Array("{}[]\",:\\0-e.\n\r\t ".utf8) + [0, 0x7F, 0xC3, 0xFF]

    package static func mutate(_ bytes: inout [UInt8], _ random: inout FuzzRandom) {
        let position = random.below(bytes.count + 1)
        switch random.below(8) {
        case 0 where !bytes.isEmpty:
            bytes[min(position, bytes.count - 1)] ^= 1 << UInt8(random.below(8))
        case 1 where !bytes.isEmpty:
            bytes[min(position, bytes.count - 1)] = random.chance(50) ? random.pick(special) : UInt8(random.below(256))
        case 2:
            bytes.insert(contentsOf: (0..<1 + random.below(4)).map { _ in random.pick(special) }, at: position)
        case 3:
            bytes.removeSubrange(position..<min(bytes.count, position + 1 + random.below(16)))
        case 4:
            bytes.removeSubrange(position...)
        case 5:
            let end = min(bytes.count, position + 1 + random.below(64))
            bytes.insert(contentsOf: bytes[position..<end], at: random.below(bytes.count + 1))
        case 6:
            bytes.insert(contentsOf: random.pick(invalidUTF8), at: position)
        default:
            bytes.insert(UInt8(random.below(256)), at: position)
        }
    }

    /// Random bytes, half of the time from JSON's own alphabet.
    package static func noise(_ random: inout FuzzRandom) -> [UInt8] {
        let alphabet = Array("{}[]\",:0123456789-+.eE truefalsnl\\u\"abc".utf8)
        let json = random.chance(50)
        let count = random.below(300)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count + 8)
        while bytes.count < count {
            let word = random.next()
            for shift in stride(from: 0, to: 64, by: 8) {
                let byte = UInt8(truncatingIfNeeded: word >> UInt64(shift))
                bytes.append(json ? alphabet[Int(byte) % alphabet.count] : byte)
            }
        }
        return Array(bytes.prefix(count))
    }
}

// MARK: - JSON trees and their mutations

/// JSON as mutations need it: keys in order and possibly repeated, and any text at all where a
/// value goes (a 400-digit number, `[` ten thousand times, a lone surrogate escape).
package indirect enum FuzzJSON: Sendable {
    /// Written as it is: `null`, `true`, `12`, or anything else.
    case text(String)
    case string(String)
    case array([FuzzJSON])
    case object([Member])

    package struct Member: Sendable {
        package var key: String
        package var value: FuzzJSON
    }

    /// One step down a tree: the member at a position (by its key, for the reader), or an element.
    package enum Step: Sendable, CustomStringConvertible {
        case member(Int, key: String)
        case element(Int)

        package var description: String {
            switch self {
            case .member(_, let key): ".\(key)"
            case .element(let index): "[\(index)]"
            }
        }
    }

    /// Object keys sorted, so that one seed gives the same tree in every process.
    package init(_ value: JSONValue) {
        switch value {
        case .null: self = .text("null")
        case .bool(let bool): self = .text(bool ? "true" : "false")
        case .integer(let integer): self = .text(String(integer))
        case .number(let number): self = .text("\(number)")
        case .string(let string): self = .string(string)
        case .array(let array): self = .array(array.map(FuzzJSON.init))
        case .object(let object):
            self = .object(object.keys.sorted().map { Member(key: $0, value: FuzzJSON(object[$0]!)) })
        }
    }

    package init(parsing line: String) throws { self.init(try JSONLine.decode(JSONValue.self, from: line)) }

    package var bytes: [UInt8] {
        var bytes: [UInt8] = []
        write(to: &bytes)
        return bytes
    }

    package func write(to bytes: inout [UInt8]) {
        switch self {
        case .text(let text): bytes += text.utf8
        case .string(let string): Self.write(string, to: &bytes)
        case .array(let elements):
            bytes.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                element.write(to: &bytes)
            }
            bytes.append(UInt8(ascii: "]"))
        case .object(let members):
            bytes.append(UInt8(ascii: "{"))
            for (index, member) in members.enumerated() {
                if index > 0 { bytes.append(UInt8(ascii: ",")) }
                Self.write(member.key, to: &bytes)
                bytes.append(UInt8(ascii: ":"))
                member.value.write(to: &bytes)
            }
            bytes.append(UInt8(ascii: "}"))
        }
    }

    private static func write(_ string: String, to bytes: inout [UInt8]) {
        bytes.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes += [UInt8(ascii: "\\"), byte]
            case ..<0x20: bytes += Array("\\u00".utf8) + Array((byte < 16 ? "0" : "").utf8) + Array(String(byte, radix: 16).utf8)
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    package var children: [(Step, FuzzJSON)] {
        switch self {
        case .text, .string: []
        case .array(let elements): elements.enumerated().map { (.element($0.offset), $0.element) }
        case .object(let members): members.enumerated().map { (.member($0.offset, key: $0.element.key), $0.element.value) }
        }
    }

    /// A node picked by a random walk from the root, so shallow nodes come up more often.
    package func randomPath(_ random: inout FuzzRandom) -> [Step] {
        var path: [Step] = []
        var node = self
        while true {
            let children = node.children
            if children.isEmpty || random.chance(25) { return path }
            let (step, child) = random.pick(children)
            path.append(step)
            node = child
        }
    }

    package subscript(path: ArraySlice<Step>) -> FuzzJSON {
        get {
            guard let step = path.first else { return self }
            switch (self, step) {
            case (.array(let elements), .element(let index)): return elements[index][path.dropFirst()]
            case (.object(let members), .member(let index, _)): return members[index].value[path.dropFirst()]
            default: preconditionFailure("no \(step) here")
            }
        }
        set {
            guard let step = path.first else { self = newValue; return }
            switch (self, step) {
            case (.array(var elements), .element(let index)):
                elements[index][path.dropFirst()] = newValue
                self = .array(elements)
            case (.object(var members), .member(let index, _)):
                members[index].value[path.dropFirst()] = newValue
                self = .object(members)
            default: preconditionFailure("no \(step) here")
            }
        }
    }
}

/// One structural change: where (the key paths whose values changed, and those of keys that are
/// gone, for tests that know which fields a decoder reads), and whether the result is still JSON
/// that any JSON reader takes (no number beyond a Double, no nesting past 512, no broken escape).
package struct FuzzMutation: Sendable, CustomStringConvertible {
    package var touched: [[FuzzJSON.Step]]
    package var removed: [[FuzzJSON.Step]] = []
    package var benign: Bool
    package var what: String

    package var description: String {
        "\(what) at \((removed + touched).map { $0.isEmpty ? "the root" : $0.map(\.description).joined() }.joined(separator: ", "))"
    }
    /// Numbers past what Int64, UInt64 or Int32 hold still fit a Double: benign to a JSON reader.
    package static let benignNumbers = [
        "0", "-0", "-1", "1.5", "-1.5e3", "1e2", "1.0", "2147483648", "-2147483649", "4294967296", "9223372036854775807",
        "9223372036854775808", "-9223372036854775809", "18446744073709551615", "18446744073709551616", "1e300",
    ]
    package static let hostileNumbers = ["1e400", "-1e400", "1e-400", "1" + String(repeating: "0", count: 400), "123456789e999999999"]
    package static let strings = [
        "", " ", "0", "-1", "1e3", "0x10", "+1", "01", " 1", "1 ", "18446744073709551616", "99999999999999999999999",
        "null", "true", "é", "e\u{301}", "👍🏽", "\u{202E}abc", "\u{0}", "a\nb", "\r\n", "\u{FEFF}", "\u{FFFF}", "\u{10FFFF}",
        "\"", "\\", "</script>", "%s%n", "'; DROP TABLE members; --",
    ]
    /// Escapes a JSON reader must refuse or repair: lone and reversed surrogates, a cut escape.
    package static let hostileStrings = [#""\ud800""#, #""\udc00x""#, #""\udc00\ud800""#, #""\u12""#, #""\x41""#, "\"\u{7F}\t\""]
    package static let values = ["null", "true", "false", "0", "[]", "{}", "\"\"", "\"x\"", "[null]", "{\"\":null}", "[[],{}]"]
    /// Written once: 300, 5,000 and 100,000 times a letter, an accented one, an emoji, a newline.
    package static let longStrings: [String] = [300, 5000, 100_000].flatMap { length in
        ["a", "é", "👍", "\n"].map { String(decoding: FuzzJSON.string(String(repeating: $0, count: length)).bytes, as: UTF8.self) }
    }

    /// Applies one random change to a random node of `tree`.
    package static func apply(to tree: inout FuzzJSON, _ random: inout FuzzRandom) -> FuzzMutation {
        let path = tree.randomPath(&random)
        let node = tree[path[...]]
        func replace(_ value: FuzzJSON, _ what: String, benign: Bool = true) -> FuzzMutation {
            tree[path[...]] = value
            return FuzzMutation(touched: [path], benign: benign, what: what)
        }
        switch (node, random.below(12)) {
        case (.object(var members), 0..<3):
            let index = random.below(members.count + 1)
            let key = index < members.count ? members[index].key : ""
            var mutation = FuzzMutation(touched: [], benign: true, what: "")
            switch random.below(4) {
            case 0 where index < members.count:
                members.remove(at: index)
                mutation.removed = [path + [.member(index, key: key)]]
                mutation.what = "key removed"
            case 1 where index < members.count:
                let value = random.chance(50) ? members[index].value : .text(random.pick(values))
                members.insert(FuzzJSON.Member(key: key, value: value), at: random.below(members.count + 1))
                mutation.touched = [path + [.member(index, key: key)]]
                mutation.what = "key repeated"
            case 2 where index < members.count:
                let renamed = random.pick([key.uppercased(), key + "_", "", key + "\u{0}", " " + key])
                members[index].key = renamed
                mutation.removed = [path + [.member(index, key: key)]]
                mutation.touched = [path + [.member(index, key: renamed)]]
                mutation.what = "key renamed"
            default:
                let added = "fuzz_\(random.below(1000))"
                members.insert(FuzzJSON.Member(key: added, value: .text(random.pick(values))), at: random.below(members.count + 1))
                mutation.touched = [path + [.member(members.count - 1, key: added)]]
                mutation.what = "key added"
            }
            tree[path[...]] = .object(members)
            return mutation
        case (.array(var elements), 0..<3) where !elements.isEmpty:
            let index = random.below(elements.count)
            switch random.below(4) {
            case 0: elements.remove(at: index)
            case 1: elements.insert(elements[index], at: random.below(elements.count + 1))
            case 2: elements.insert(.text(random.pick(values)), at: random.below(elements.count + 1))
            default:
                // Enormous: copies of one element, up to 20,000 or about a megabyte, as text
                // (written out node by node, a debug build takes too long).
                let element = String(decoding: elements[index].bytes, as: UTF8.self)
                let count = min(20_000, (1 << 20) / max(1, element.utf8.count))
                return replace(.text("[" + Array(repeating: element, count: count).joined(separator: ",") + "]"), "enormous array")
            }
            return replace(.array(elements), "array changed")
        case (.string(let string), 3..<5) where !string.isEmpty && string.utf8.allSatisfy({ (0x30...0x39).contains($0) }):
            // A snowflake: as a number, past UInt64, negative, with garbage.
            switch random.below(5) {
            case 0: return replace(.text(string), "snowflake as a number")
            case 1: return replace(.string("18446744073709551616"), "snowflake past UInt64")
            case 2: return replace(.string("-" + string), "negative snowflake")
            case 3: return replace(.text("18446744073709551616"), "snowflake number past UInt64")
            default: return replace(.string(string + random.pick(["x", " ", ".0", "e3"])), "snowflake with garbage")
            }
        case (_, 3):
            return replace(.text(random.pick(values)), "value of another type")
        case (_, 4):
            if random.chance(80) { return replace(.text(random.pick(benignNumbers)), "edge number") }
            return replace(.text(random.pick(hostileNumbers)), "huge number", benign: false)
        case (_, 5):
            if random.chance(85) { return replace(.string(random.pick(strings)), "edge string") }
            return replace(.text(random.pick(hostileStrings)), "broken escape", benign: false)
        case (_, 6):
            return replace(.text(random.pick(longStrings)), "long string")
        case (_, 7):
            // Not 511: inside loose JSON (`JSONValue`) that takes seconds to decode, and the tests
            // must stay fast. The fixed hostile inputs cover the depths around the limit, 512.
            let depth = random.pick([100, 512, 513, 10_000])
            let open = random.chance(50) ? "[" : "{\"a\":"
            let close = open == "[" ? "]" : "}"
            let balanced = random.chance(80)
            let text = String(repeating: open, count: depth) + (open == "[" ? "" : "1") + (balanced ? String(repeating: close, count: depth) : "")
            return replace(.text(text), "nesting \(depth) deep", benign: false)
        case (_, 8):
            return replace(random.chance(50) ? .array([]) : .object([]), "emptied")
        case (_, 9):
            return replace(random.chance(50) ? .array([node]) : .object([FuzzJSON.Member(key: "v", value: node)]), "wrapped")
        case (_, 10):
            // A nested duplicate: the node becomes a copy of an ancestor, itself included.
            let ancestor = tree[path.prefix(random.below(path.count + 1))]
            guard ancestor.bytes.count < 1 << 16 else { return replace(.text("null"), "value of another type") }
            return replace(ancestor, "replaced by an ancestor")
        default:
            return replace(.text(random.pick(values)), "value of another type")
        }
    }
}
