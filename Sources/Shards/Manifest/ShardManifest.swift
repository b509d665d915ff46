import Foundation
import Platform

/// `manifest.json`: what a collection directory holds. Written atomically (temporary name,
/// fsync, rename) by whoever finishes shards: `collect`, or the coordinator of a cluster.
public struct ShardManifest: Codable, Equatable, Sendable {
    public static let fileName = "manifest.json"
    public static let formatName = "actcluster-shards"

    public struct Model: Codable, Equatable, Sendable {
        public var name: String
        /// SHA-256 of the model's config.json, lowercase hex.
        public var configSHA256: String

        public init(name: String, configSHA256: String) {
            self.name = name
            self.configSHA256 = configSHA256
        }

        public init(_ identity: ModelIdentity) { self.init(name: identity.name, configSHA256: identity.configSHA256Hex) }

        enum CodingKeys: String, CodingKey {
            case name
            case configSHA256 = "config_sha256"
        }
    }

    public struct Shard: Codable, Equatable, Sendable {
        /// File name relative to the manifest's directory.
        public var file: String
        public var hook: String
        public var unit: UInt64
        public var rows: Int
        public var bytes: Int
        /// CRC-32C of the whole file, 8 lowercase hex digits.
        public var crc32c: String

        public init(file: String, hook: String, unit: UInt64, rows: Int, bytes: Int, crc32c: String) {
            self.file = file
            self.hook = hook
            self.unit = unit
            self.rows = rows
            self.bytes = bytes
            self.crc32c = crc32c
        }
    }

    /// Running statistics of one hook's activations, as captured (float32, before rounding to
    /// the storage dtype).
    public struct Statistics: Codable, Equatable, Sendable {
        public var count: Int
        public var mean: [Double]
        /// Population variance per dimension (divided by count).
        public var variance: [Double]
        public var meanNorm: Double

        public init(_ running: RunningStatistics) {
            count = running.count
            mean = running.mean
            variance = running.variance
            meanNorm = running.meanNorm
        }

        public var running: RunningStatistics {
            RunningStatistics(width: mean.count, count: count, mean: mean, variance: variance, meanNorm: meanNorm)
        }

        enum CodingKeys: String, CodingKey {
            case count, mean, variance
            case meanNorm = "mean_norm"
        }
    }

    /// A unit a cluster gave up on after its attempts ran out: its lines are not in any shard.
    public struct FailedUnit: Codable, Equatable, Sendable {
        public var unit: UInt64
        /// The corpus file and the unit's lines in it (1-based, `lineCount` lines from `firstLine`).
        public var file: String
        public var firstLine: Int
        public var lineCount: Int
        /// One per failed attempt, in order.
        public var reasons: [String]

        public init(unit: UInt64, file: String, firstLine: Int, lineCount: Int, reasons: [String]) {
            self.unit = unit
            self.file = file
            self.firstLine = firstLine
            self.lineCount = lineCount
            self.reasons = reasons
        }

        enum CodingKeys: String, CodingKey {
            case unit, file, reasons
            case firstLine = "first_line"
            case lineCount = "line_count"
        }
    }

    public var format = ShardManifest.formatName
    public var version = 1
    public var model: Model
    public var hooks: [String]
    public var dtype: String
    /// Tokens per context window.
    public var context: Int
    /// Rows over all shards.
    public var rows: Int = 0
    public var shards: [Shard] = []
    public var statistics: [String: Statistics] = [:]
    /// Inputs skipped, by reason (e.g. "invalid_utf8", "empty_document").
    public var skipped: [String: Int] = [:]
    /// Units a cluster run failed for good (absent for `actcluster collect`, which stops on
    /// the first error instead).
    public var failedUnits: [FailedUnit]?

    enum CodingKeys: String, CodingKey {
        case format, version, model, hooks, dtype, context, rows, shards, statistics, skipped
        case failedUnits = "failed_units"
    }

    public init(model: ModelIdentity, hooks: [String], dtype: ShardDType, context: Int) {
        self.model = Model(model)
        self.hooks = hooks
        self.dtype = dtype.name
        self.context = context
    }

    /// The conventional file name of a unit's shard for a hook, e.g.
    /// `unit-00000017.blocks.3.hook_resid_post.shard` (sorts by unit; `/` in hooks becomes `_`).
    public static func shardFileName(unit: UInt64, hook: String) -> String {
        let digits = String(unit)
        let padded = String(repeating: "0", count: max(0, 8 - digits.count)) + digits
        return "unit-\(padded).\(hook.replacingOccurrences(of: "/", with: "_")).\(ShardFileFormat.fileExtension)"
    }

    /// Records a finished shard (its file name relative to the manifest).
    public mutating func add(_ summary: ShardFileSummary, file: String) {
        shards.append(
            Shard(
                file: file, hook: summary.header.hook, unit: summary.header.unitID, rows: summary.rows, bytes: summary.bytes,
                crc32c: CRC32C.hex(summary.checksum)))
        rows += summary.rows
    }

    /// Merges a batch of statistics into a hook's.
    public mutating func addStatistics(_ running: RunningStatistics, hook: String) {
        var merged = statistics[hook]?.running ?? RunningStatistics(width: running.width)
        merged.merge(running)
        statistics[hook] = Statistics(merged)
    }

    public mutating func countSkipped(_ reason: String, by amount: Int = 1) {
        skipped[reason, default: 0] += amount
    }

    /// The manifest's JSON: pretty-printed with sorted keys, so diffs stay readable.
    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(self)) + [UInt8(ascii: "\n")]
    }

    /// Writes `directory/manifest.json` atomically.
    public func write(toDirectory directory: String) throws {
        try AtomicFile.write(try encoded(), to: directory + "/" + Self.fileName)
    }

    /// Writes `directory/manifest.json` atomically with `shards` streamed in place of
    /// ``shards`` (which must be empty), byte for byte what ``encoded()`` would give. A
    /// cluster's manifest lists every shard of a run: too many to hold as values at once.
    /// Inlinable so that it is specialized for the caller's sequence: a lazy sequence walked
    /// through its protocol costs several times the JSON per shard.
    @inlinable
    public func write(toDirectory directory: String, streaming shards: some Sequence<Shard>) throws {
        precondition(self.shards.isEmpty, "streamed shards replace the manifest's own")
        let rest = try encoded()
        // JSONEncoder's pretty form of the empty array, under the sorted keys.
        let empty = Array("\n  \"shards\" : [\n\n  ]".utf8)
        guard let range = rest.firstRange(of: empty) else { preconditionFailure("the manifest encoding changed shape") }
        let writer = try DurableFileWriter(path: directory + "/" + Self.fileName)
        var buffer = Array(rest[..<range.lowerBound]) + Array("\n  \"shards\" : [".utf8)
        var count = 0
        for shard in shards {
            buffer.append(contentsOf: (count == 0 ? "\n" : ",\n").utf8)
            Self.appendJSON(shard, to: &buffer)
            count += 1
            if buffer.count >= 1 << 20 {
                try writer.write(buffer)
                buffer.removeAll(keepingCapacity: true)
            }
        }
        buffer += Array((count == 0 ? "\n\n  ]" : "\n  ]").utf8)
        buffer += rest[range.upperBound...]
        try writer.write(buffer)
        try writer.commit()
    }

    /// One shard as JSONEncoder writes it in a pretty-printed manifest (keys sorted). Written
    /// at the end of a run for every shard, so the literal parts go in without an array each,
    /// and a string that needs no escaping goes in whole.
    @usableFromInline
    static func appendJSON(_ shard: Shard, to buffer: inout [UInt8]) {
        append("    {\n      \"bytes\" : ", to: &buffer)
        buffer.append(contentsOf: String(shard.bytes).utf8)
        append(",\n      \"crc32c\" : ", to: &buffer)
        appendJSONString(shard.crc32c, to: &buffer)
        append(",\n      \"file\" : ", to: &buffer)
        appendJSONString(shard.file, to: &buffer)
        append(",\n      \"hook\" : ", to: &buffer)
        appendJSONString(shard.hook, to: &buffer)
        append(",\n      \"rows\" : ", to: &buffer)
        buffer.append(contentsOf: String(shard.rows).utf8)
        append(",\n      \"unit\" : ", to: &buffer)
        buffer.append(contentsOf: String(shard.unit).utf8)
        append("\n    }", to: &buffer)
    }

    private static func append(_ text: StaticString, to buffer: inout [UInt8]) {
        buffer.append(contentsOf: UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    /// `value` quoted and escaped as JSONEncoder does it (slashes unescaped).
    private static func appendJSONString(_ value: String, to buffer: inout [UInt8]) {
        let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")
        buffer.append(quote)
        var value = value
        value.withUTF8 { bytes in
            guard bytes.contains(where: { $0 < 0x20 || $0 == quote || $0 == backslash }) else {
                buffer.append(contentsOf: bytes)
                return
            }
            let hex = Array("0123456789abcdef".utf8)
            for byte in bytes {
                switch byte {
                case quote, backslash: buffer += [backslash, byte]
                case 0x08: buffer += [backslash, UInt8(ascii: "b")]
                case 0x0C: buffer += [backslash, UInt8(ascii: "f")]
                case 0x0A: buffer += [backslash, UInt8(ascii: "n")]
                case 0x0D: buffer += [backslash, UInt8(ascii: "r")]
                case 0x09: buffer += [backslash, UInt8(ascii: "t")]
                case ..<0x20: buffer += Array("\\u00".utf8) + [hex[Int(byte >> 4)], hex[Int(byte & 15)]]
                default: buffer.append(byte)
                }
            }
        }
        buffer.append(quote)
    }

    /// Reads and checks a manifest (`path` is the file or its directory).
    public static func read(_ path: String) throws -> ShardManifest {
        var isDirectory: ObjCBool = false
        let file = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
            ? path + "/" + fileName : path
        func fail(_ check: String, _ expected: String, _ found: String) -> ShardError {
            ShardError(path: file, part: .manifest, check: check, expected: expected, found: found)
        }
        let bytes: [UInt8]
        do {
            bytes = try readFile(file)
        } catch {
            throw fail("read", "a readable manifest.json", "\(error)")
        }
        let manifest: ShardManifest
        do {
            manifest = try JSONDecoder().decode(ShardManifest.self, from: Data(bytes))
        } catch {
            throw fail("JSON", "a manifest object", "\(error)")
        }
        if let problem = manifest.problem() { throw fail(problem.check, problem.expected, problem.found) }
        return manifest
    }

    /// The first inconsistency inside the manifest, if any.
    public func problem() -> (check: String, expected: String, found: String)? {
        if format != Self.formatName { return ("format", "\"\(Self.formatName)\"", "\"\(format)\"") }
        if version != 1 { return ("version", "1", "\(version)") }
        if ShardDType(name: dtype) == nil { return ("dtype", "bf16, fp16 or fp32", "\"\(dtype)\"") }
        let total = shards.reduce(0) { $0 + $1.rows }
        if total != rows { return ("rows", "\(total), the sum over shards", "\(rows)") }
        for shard in shards {
            if !hooks.contains(shard.hook) { return ("hook of \(shard.file)", "one of \(hooks)", "\"\(shard.hook)\"") }
            if shard.file.contains("/") || shard.file.hasPrefix(".") {
                return ("file name", "a plain file name in the manifest's directory", "\"\(shard.file)\"")
            }
        }
        for (hook, statistics) in self.statistics
        where statistics.mean.isEmpty || statistics.variance.count != statistics.mean.count || statistics.count < 0 {
            return ("statistics of \(hook)", "a count ≥ 0 and mean and variance of the same, positive width",
                    "count \(statistics.count), widths \(statistics.mean.count) and \(statistics.variance.count)")
        }
        return nil
    }
}
