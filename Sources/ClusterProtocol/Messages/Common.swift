import Corpus
import Shards

/// A work unit's id: 0, 1, 2, … in planning order, below 2³¹.
public struct UnitID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { rawValue = value }
    public init(integerLiteral value: UInt64) { rawValue = value }
    public static func < (a: UnitID, b: UnitID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// A lease's id: 1, 2, 3, … across the whole run (journaled, never reused; 0 means none).
public struct LeaseID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByIntegerLiteral {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { rawValue = value }
    public init(integerLiteral value: UInt64) { rawValue = value }
    public static func < (a: LeaseID, b: LeaseID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

extension Fields {
    func unit(_ tag: Tag = .unit) throws(ProtocolError) -> UnitID {
        UnitID(try uint(tag, in: 0...ClusterWire.Limits.maxUnitID))
    }

    func optionalUnit(_ tag: Tag = .unit) throws(ProtocolError) -> UnitID? {
        try optionalUInt(tag, in: 0...ClusterWire.Limits.maxUnitID).map(UnitID.init(rawValue:))
    }

    func lease(_ tag: Tag = .lease) throws(ProtocolError) -> LeaseID {
        LeaseID(try uint(tag, in: 1...UInt64.max))
    }

    func optionalLease(_ tag: Tag = .lease) throws(ProtocolError) -> LeaseID? {
        try optionalUInt(tag, in: 1...UInt64.max).map(LeaseID.init(rawValue:))
    }

    func dtype(_ tag: Tag = .dtype) throws(ProtocolError) -> ShardDType {
        let name = try string(tag, maxBytes: 16)
        guard let dtype = ShardDType(name: name), dtype.name == name else { throw invalid(tag, expected: "bf16, fp16 or fp32", found: Printable.text(name)) }
        return dtype
    }
}

/// Which model a run uses: the folder workers load it from (a path on the shared file
/// system), its display name, and the SHA-256 of its `config.json`.
public struct ModelReference: Equatable, Hashable, Sendable {
    public var path: String
    public var name: String
    /// 32 bytes.
    public var configSHA256: [UInt8]

    public init(path: String, name: String, configSHA256: [UInt8]) {
        precondition(configSHA256.count == 32, "a SHA-256 digest has 32 bytes, not \(configSHA256.count)")
        self.path = path
        self.name = name
        self.configSHA256 = configSHA256
    }

    public var identity: ModelIdentity { ModelIdentity(name: name, configSHA256: configSHA256) }
}

/// What a worker needs to collect any unit of a run. ASSIGN carries it with every unit, so a
/// worker needs no other configuration and survives a coordinator restart unchanged.
public struct UnitSettings: Equatable, Hashable, Sendable {
    /// Hook names, e.g. `blocks.3.hook_resid_post`, in order, without repeats.
    public var hooks: [String]
    /// Tokens per window, special tokens included.
    public var context: Int
    public var dtype: ShardDType
    /// Drop the rows of special tokens.
    public var skipSpecial: Bool
    /// Windows per forward batch; also the activation batch size sent to a trainer, so that
    /// batch `sequence` numbers mean the same rows on every attempt.
    public var batchWindows: Int
    public var blockRows: Int
    public var model: ModelReference
    /// The folder shards are written to (shared by coordinator and workers).
    public var outputDirectory: String
    /// Where workers PUSH activation batches, if a trainer listens.
    public var trainerEndpoint: String?

    public init(
        hooks: [String], context: Int = 128, dtype: ShardDType = .bf16, skipSpecial: Bool = false,
        batchWindows: Int = ClusterWire.Defaults.batchWindows, blockRows: Int = ShardFileFormat.defaultBlockRows, model: ModelReference,
        outputDirectory: String, trainerEndpoint: String? = nil
    ) {
        self.hooks = hooks
        self.context = context
        self.dtype = dtype
        self.skipSpecial = skipSpecial
        self.batchWindows = batchWindows
        self.blockRows = blockRows
        self.model = model
        self.outputDirectory = outputDirectory
        self.trainerEndpoint = trainerEndpoint
    }

    func write(to writer: inout FieldWriter) {
        for hook in hooks { writer.string(.hook, hook) }
        writer.int(.context, context)
        writer.string(.dtype, dtype.name)
        writer.bool(.skipSpecial, skipSpecial)
        writer.int(.batchWindows, batchWindows)
        writer.int(.blockRows, blockRows)
        writer.string(.modelPath, model.path)
        writer.string(.modelName, model.name)
        writer.bytes(.modelSHA256, model.configSHA256)
        writer.string(.outputDirectory, outputDirectory)
        if let trainerEndpoint { writer.string(.trainerEndpoint, trainerEndpoint) }
    }

    init(_ fields: Fields) throws(ProtocolError) {
        let limits = ClusterWire.Limits.self
        hooks = try fields.names(.hook, maxCount: limits.maxHooks)
        guard !hooks.isEmpty else { throw fields.missing(.hook) }
        guard Set(hooks).count == hooks.count else { throw fields.invalid(.hook, expected: "hooks without repeats", found: "\(hooks)") }
        context = try fields.int(.context, in: 2...limits.maxContext)
        dtype = try fields.dtype()
        skipSpecial = try fields.bool(.skipSpecial)
        batchWindows = try fields.int(.batchWindows, in: 1...limits.maxBatchWindows)
        blockRows = try fields.int(.blockRows, in: 1...limits.maxBlockRows)
        model = ModelReference(
            path: try fields.string(.modelPath, maxBytes: limits.maxPathBytes), name: try fields.string(.modelName, maxBytes: limits.maxNameBytes, allowEmpty: true),
            configSHA256: try fields.bytes(.modelSHA256, count: 32))
        outputDirectory = try fields.string(.outputDirectory, maxBytes: limits.maxPathBytes)
        trainerEndpoint = try fields.optionalString(.trainerEndpoint, maxBytes: limits.maxPathBytes)
    }
}

/// Where a unit lies in the corpus: a run of whole lines of one file. The planner journals
/// it, the coordinator reads the unit's text again from it (after a restart or a retry), and
/// ASSIGN carries it so that a worker's rows name their documents.
public struct UnitPlan: Equatable, Hashable, Sendable {
    public var unit: UnitID
    /// Index of the file in the run's corpus paths.
    public var fileIndex: Int
    /// Bytes of the file the unit's lines cover, newlines included.
    public var byteRange: Range<Int64>
    /// Document id of the first line; line `i` of the unit has id `firstDocumentID + i`.
    public var firstDocumentID: Int64
    /// 1-based line number of the first line in its file.
    public var firstLine: Int
    public var lineCount: Int
    /// UTF-8 bytes of the unit's document texts (skipped lines have none).
    public var textBytes: Int

    public init(unit: UnitID, fileIndex: Int, byteRange: Range<Int64>, firstDocumentID: Int64, firstLine: Int, lineCount: Int, textBytes: Int) {
        self.unit = unit
        self.fileIndex = fileIndex
        self.byteRange = byteRange
        self.firstDocumentID = firstDocumentID
        self.firstLine = firstLine
        self.lineCount = lineCount
        self.textBytes = textBytes
    }

    /// The reader position of the unit's first line.
    public var start: CorpusPosition {
        CorpusPosition(fileIndex: fileIndex, byteOffset: byteRange.lowerBound, linesBefore: firstLine - 1, documentID: firstDocumentID)
    }

    /// The reader position right after the unit's last line: where planning goes on.
    public var end: CorpusPosition {
        CorpusPosition(
            fileIndex: fileIndex, byteOffset: byteRange.upperBound, linesBefore: firstLine - 1 + lineCount,
            documentID: firstDocumentID + Int64(lineCount))
    }

    /// Approximate tokens, at ``ClusterWire/Defaults/bytesPerToken`` bytes each.
    public var estimatedTokens: Int { textBytes / ClusterWire.Defaults.bytesPerToken }

    /// Writes the position fields (not the unit id).
    func writePosition(to writer: inout FieldWriter) {
        writer.int(.fileIndex, fileIndex)
        writer.int(.byteStart, byteRange.lowerBound)
        writer.int(.byteEnd, byteRange.upperBound)
        writer.int(.firstDocument, firstDocumentID)
        writer.int(.firstLine, firstLine)
        writer.int(.lineCount, lineCount)
        writer.int(.textBytes, textBytes)
    }

    init(unit: UnitID, position fields: Fields) throws(ProtocolError) {
        let limits = ClusterWire.Limits.self
        let maxOffset = Int(Int64.max / 2)
        self.unit = unit
        fileIndex = try fields.int(.fileIndex, in: 0...(1 << 31))
        let start = try fields.int(.byteStart, in: 0...maxOffset)
        let end = try fields.int(.byteEnd, in: 0...maxOffset)
        guard start <= end else { throw fields.invalid(.byteEnd, expected: "at least byte_start \(start)", found: "\(end)") }
        byteRange = Int64(start)..<Int64(end)
        firstDocumentID = Int64(try fields.int(.firstDocument, in: 0...maxOffset))
        firstLine = try fields.int(.firstLine, in: 1...maxOffset)
        lineCount = try fields.int(.lineCount, in: 1...limits.maxUnitLines)
        // Every line holds at least one byte (its newline, or text when it is the last).
        guard Int64(lineCount) <= byteRange.count else {
            throw fields.invalid(.lineCount, expected: "at most one line per byte of the \(byteRange.count) bytes", found: "\(lineCount)")
        }
        textBytes = try fields.int(.textBytes, in: 0...limits.maxUnitTextBytes)
    }
}

/// Running statistics of one hook as they travel: count, per-dimension mean and population
/// variance, mean L2 norm. Values are finite; variance and norm are not negative.
public struct HookStatistics: Equatable, Hashable, Sendable {
    public var count: Int
    public var mean: [Double]
    public var variance: [Double]
    public var meanNorm: Double

    public init(count: Int, mean: [Double], variance: [Double], meanNorm: Double) {
        self.count = count
        self.mean = mean
        self.variance = variance
        self.meanNorm = meanNorm
    }

    public init(_ running: RunningStatistics) {
        self.init(count: running.count, mean: running.mean, variance: running.variance, meanNorm: running.meanNorm)
    }

    public var width: Int { mean.count }

    public var running: RunningStatistics {
        RunningStatistics(width: mean.count, count: count, mean: mean, variance: variance, meanNorm: meanNorm)
    }

    func write(hook: String?, to writer: inout FieldWriter) {
        if let hook { writer.string(.hook, hook) }
        writer.int(.count, count)
        writer.doubles(.mean, mean)
        writer.doubles(.variance, variance)
        writer.double(.meanNorm, meanNorm)
    }

    init(_ fields: Fields) throws(ProtocolError) {
        count = try fields.int(.count)
        mean = try fields.doubles(.mean, maxCount: ClusterWire.Limits.maxWidth)
        variance = try fields.doubles(.variance, maxCount: ClusterWire.Limits.maxWidth)
        meanNorm = try fields.double(.meanNorm)
        guard !mean.isEmpty else { throw fields.invalid(.mean, expected: "a width of at least 1", found: "no values") }
        guard variance.count == mean.count else {
            throw fields.invalid(.variance, expected: "\(mean.count) values, as many as the mean", found: "\(variance.count)")
        }
        if let negative = variance.firstIndex(where: { $0 < 0 }) {
            throw fields.invalid(.variance, expected: "values ≥ 0", found: "\(variance[negative]) at index \(negative)")
        }
    }
}

/// One shard file a worker wrote for a unit.
public struct ShardReport: Equatable, Hashable, Sendable {
    public var hook: String
    /// The plain file name in the output folder: ``ClusterWire/shardFileName(unit:lease:hook:)``.
    public var file: String
    public var rows: Int
    public var bytes: Int
    /// CRC-32C of the whole file.
    public var crc32c: UInt32

    public init(hook: String, file: String, rows: Int, bytes: Int, crc32c: UInt32) {
        self.hook = hook
        self.file = file
        self.rows = rows
        self.bytes = bytes
        self.crc32c = crc32c
    }

    /// From the summary a `ShardWriter` returns; the file name is the path's last component.
    public init(_ summary: ShardFileSummary) {
        let name = summary.path.split(separator: "/").last.map(String.init) ?? summary.path
        self.init(hook: summary.header.hook, file: name, rows: summary.rows, bytes: summary.bytes, crc32c: summary.checksum)
    }
}

/// Where a unit's time went on the worker, in seconds.
public struct UnitTimings: Equatable, Hashable, Sendable {
    public var tokenize: Double
    public var forward: Double
    public var encode: Double
    /// From ASSIGN received to DONE sent.
    public var wall: Double

    public init(tokenize: Double = 0, forward: Double = 0, encode: Double = 0, wall: Double = 0) {
        self.tokenize = tokenize
        self.forward = forward
        self.encode = encode
        self.wall = wall
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    var wholeMilliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
