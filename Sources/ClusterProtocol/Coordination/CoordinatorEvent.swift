import Corpus
import Shards

/// The corpus of a run and how it is cut into units.
public struct CorpusSpec: Equatable, Hashable, Sendable {
    /// Corpus files, in the order given; a unit's `fileIndex` points into this list.
    public var paths: [String]
    public var format: CorpusFormat
    /// The JSON field holding the text (jsonl).
    public var textField: String
    /// Approximate tokens per unit, at ``ClusterWire/Defaults/bytesPerToken`` bytes of corpus each.
    public var unitTokens: Int
    /// Lines longer than this are skipped as `line_too_long`.
    public var maxLineBytes: Int

    public init(
        paths: [String], format: CorpusFormat, textField: String = "text", unitTokens: Int = ClusterWire.Defaults.unitTokens,
        maxLineBytes: Int = ClusterWire.Limits.maxLineBytes
    ) {
        self.paths = paths
        self.format = format
        self.textField = textField
        self.unitTokens = unitTokens
        self.maxLineBytes = maxLineBytes
    }

    /// A unit is closed once its lines hold at least this many bytes of the corpus file.
    public var unitBytes: Int64 { Int64(unitTokens) * Int64(ClusterWire.Defaults.bytesPerToken) }
}

/// Everything that defines a run: the journal's first record. A coordinator restarted on a
/// journal MUST be given the same definition (apart from the run id, which the journal keeps).
public struct RunDefinition: Equatable, Hashable, Sendable {
    /// Random, chosen when the journal is created; ASSIGN and BATCH carry it.
    public var run: UInt64
    public var corpus: CorpusSpec
    public var settings: UnitSettings
    /// Counted failures after which a unit is poisoned.
    public var maxAttempts: Int

    public init(run: UInt64 = UInt64.random(in: 1...UInt64.max), corpus: CorpusSpec, settings: UnitSettings, maxAttempts: Int = ClusterWire.Defaults.maxAttempts) {
        precondition(maxAttempts >= 1, "max attempts must be at least 1")
        self.run = run
        self.corpus = corpus
        self.settings = settings
        self.maxAttempts = maxAttempts
    }

    /// How `other` differs, one phrase per setting, ignoring the run id.
    public func differences(from other: RunDefinition) -> [String] {
        var result: [String] = []
        func compare<T: Equatable>(_ name: String, _ mine: T, _ theirs: T) {
            if mine != theirs { result.append("\(name): \(mine) in the journal, \(theirs) now") }
        }
        compare("corpus files", corpus.paths, other.corpus.paths)
        compare("format", corpus.format.rawValue, other.corpus.format.rawValue)
        compare("text field", corpus.textField, other.corpus.textField)
        compare("unit tokens", corpus.unitTokens, other.corpus.unitTokens)
        compare("max line bytes", corpus.maxLineBytes, other.corpus.maxLineBytes)
        compare("hooks", settings.hooks, other.settings.hooks)
        compare("context", settings.context, other.settings.context)
        compare("dtype", settings.dtype.name, other.settings.dtype.name)
        compare("skip special", settings.skipSpecial, other.settings.skipSpecial)
        compare("batch windows", settings.batchWindows, other.settings.batchWindows)
        compare("block rows", settings.blockRows, other.settings.blockRows)
        compare("model path", settings.model.path, other.settings.model.path)
        compare("model name", settings.model.name, other.settings.model.name)
        compare("model config SHA-256", SHA256.hex(settings.model.configSHA256), SHA256.hex(other.settings.model.configSHA256))
        compare("output folder", settings.outputDirectory, other.settings.outputDirectory)
        // Not the trainer endpoint: a trainer may move between restarts (`actcluster run`
        // binds a new port each time), and the coordinator hands out the current one.
        compare("max attempts", maxAttempts, other.maxAttempts)
        return result
    }

    func write(to writer: inout FieldWriter) {
        writer.uint(.run, run)
        for path in corpus.paths { writer.string(.file, path) }
        writer.string(.format, corpus.format.rawValue)
        writer.string(.textField, corpus.textField)
        writer.int(.unitTokens, corpus.unitTokens)
        writer.int(.maxLineBytes, corpus.maxLineBytes)
        writer.int(.maxAttempts, maxAttempts)
        writer.fields(.settings) { settings.write(to: &$0) }
    }

    init(_ fields: Fields) throws(ProtocolError) {
        let limits = ClusterWire.Limits.self
        run = try fields.uint(.run)
        let paths = try fields.names(.file, maxCount: 1 << 20, maxBytes: limits.maxPathBytes)
        guard !paths.isEmpty else { throw fields.missing(.file) }
        let formatName = try fields.string(.format, maxBytes: 16)
        guard let format = CorpusFormat(rawValue: formatName) else {
            throw fields.invalid(.format, expected: "jsonl or txt", found: Printable.text(formatName))
        }
        corpus = CorpusSpec(
            paths: paths, format: format, textField: try fields.string(.textField, maxBytes: limits.maxNameBytes),
            unitTokens: try fields.int(.unitTokens, in: 1...limits.maxUnitTokens), maxLineBytes: try fields.int(.maxLineBytes, in: 1...limits.maxLineBytes))
        maxAttempts = try fields.int(.maxAttempts, in: 1...1_000_000)
        settings = try UnitSettings(try fields.nested(.settings))
    }
}

/// A change of the coordinator's state: what the journal records and
/// ``CoordinatorState/apply(_:)`` folds. Replaying the journal's events in order rebuilds the
/// state exactly.
public enum CoordinatorEvent: Equatable, Hashable, Sendable {
    /// The first record of a journal.
    case started(RunDefinition)
    /// The planner cut the next unit.
    case planned(UnitPlan)
    /// The planner reached the end of the corpus.
    case planningFinished
    /// A pending unit was handed to a worker.
    case leased(unit: UnitID, lease: LeaseID, worker: String)
    /// A lease missed its heartbeats; counts as a failed attempt.
    case expired(unit: UnitID, lease: LeaseID)
    /// FAILED from a worker, or a release by the coordinator (disposition `.released`).
    case failed(UnitFailed)
    /// DONE from a worker.
    case done(UnitDone)
    /// Every unit is done or failed and the manifest is written.
    case completed
    /// Lease ids up to `through` may be used; ids the previous reservation left unjournaled
    /// are skipped for good (they may have gone out in ASSIGN before a crash).
    case leasesReserved(through: LeaseID)

    public var kind: JournalFormat.RecordKind {
        switch self {
        case .started: .started
        case .planned: .planned
        case .planningFinished: .planningFinished
        case .leased: .leased
        case .expired: .expired
        case .failed(let failure): failure.disposition == .released ? .released : .failed
        case .done: .done
        case .completed: .completed
        case .leasesReserved: .leasesReserved
        }
    }

    /// A journal record's payload: the kind byte, then a control body.
    public func encoded() -> [UInt8] {
        var writer = FieldWriter()
        write(to: &writer)
        return writer.bytes
    }

    /// Writes ``encoded()`` at the end of `writer`.
    func write(to writer: inout FieldWriter) {
        writer.byte(kind.rawValue)
        switch self {
        case .started(let run): run.write(to: &writer)
        case .planned(let plan):
            writer.uint(.unit, plan.unit.rawValue)
            plan.writePosition(to: &writer)
        case .planningFinished, .completed: break
        case .leased(let unit, let lease, let worker):
            writer.uint(.unit, unit.rawValue)
            writer.uint(.lease, lease.rawValue)
            writer.string(.worker, worker)
        case .expired(let unit, let lease):
            writer.uint(.unit, unit.rawValue)
            writer.uint(.lease, lease.rawValue)
        case .failed(let failure): failure.write(to: &writer)
        case .done(let done): done.write(to: &writer)
        case .leasesReserved(let through): writer.uint(.lease, through.rawValue)
        }
    }

    /// Decodes a record payload.
    public static func decode(_ payload: [UInt8]) throws(ProtocolError) -> CoordinatorEvent {
        guard let first = payload.first, let kind = JournalFormat.RecordKind(rawValue: first) else {
            throw ProtocolError(
                .unknownCommand, message: "journal record", location: "byte 0", expected: "a record kind 1 … \(JournalFormat.RecordKind.allCases.count)",
                found: payload.first.map { "\($0)" } ?? "an empty record")
        }
        let fields = try Fields(payload, range: 1..<payload.count, message: "journal record \(kind)")
        switch kind {
        case .started: return .started(try RunDefinition(fields))
        case .planned: return .planned(try UnitPlan(unit: try fields.unit(), position: fields))
        case .planningFinished: return .planningFinished
        case .leased: return .leased(unit: try fields.unit(), lease: try fields.lease(), worker: try fields.name(.worker))
        case .expired: return .expired(unit: try fields.unit(), lease: try fields.lease())
        case .failed, .released:
            let failure = try UnitFailed(fields)
            guard (failure.disposition == .released) == (kind == .released) else {
                throw fields.invalid(.disposition, expected: "the disposition of a \(kind) record", found: "\(failure.disposition)")
            }
            return .failed(failure)
        case .done: return .done(try UnitDone(fields))
        case .completed: return .completed
        case .leasesReserved: return .leasesReserved(through: try fields.lease())
        }
    }
}
