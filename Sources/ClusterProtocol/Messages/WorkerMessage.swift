/// READY: a worker registers and asks for a unit. Sent after connecting, after every ACK,
/// after CANCEL, and after DISCONNECT.
public struct Ready: Equatable, Hashable, Sendable {
    /// The worker's name in logs and status (`--name`, else host and process id).
    public var worker: String
    public var host: String?
    public var processID: Int?
    /// Threads the worker's forward pass uses.
    public var threads: Int
    /// The worker's actcluster version.
    public var software: String?
    /// SHA-256 of the `config.json` of the model the worker has loaded, if any.
    public var loadedModelSHA256: [UInt8]?
    /// The worker takes the ASSIGN that answers a report with `ready` before that report's ACK,
    /// and keeps resending the report until the ACK comes. The coordinator then need not hold
    /// the ASSIGN back until the report is durable.
    public var assignBeforeAck: Bool

    public init(
        worker: String, host: String? = nil, processID: Int? = nil, threads: Int = 1, software: String? = nil, loadedModelSHA256: [UInt8]? = nil,
        assignBeforeAck: Bool = false
    ) {
        self.worker = worker
        self.host = host
        self.processID = processID
        self.threads = threads
        self.software = software
        self.loadedModelSHA256 = loadedModelSHA256
        self.assignBeforeAck = assignBeforeAck
    }

    func write(to writer: inout FieldWriter) {
        writer.string(.worker, worker)
        if let host { writer.string(.host, host) }
        if let processID { writer.int(.process, processID) }
        writer.int(.threads, threads)
        if let software { writer.string(.software, software) }
        if let loadedModelSHA256 { writer.bytes(.modelSHA256, loadedModelSHA256) }
        if assignBeforeAck { writer.bool(.assignBeforeAck, true) }
    }

    init(_ fields: Fields) throws(ProtocolError) {
        worker = try fields.name(.worker)
        host = try fields.optionalName(.host)
        processID = try fields.optionalInt(.process, in: 0...Int(Int32.max))
        threads = try fields.optionalInt(.threads, in: 1...ClusterWire.Limits.maxThreads) ?? 1
        software = try fields.optionalName(.software)
        loadedModelSHA256 = try fields.optionalBytes(.modelSHA256, count: 32)
        assignBeforeAck = try fields.bool(.assignBeforeAck)
    }
}

/// HEARTBEAT from a worker: alive, and which lease it works on (none when idle).
public struct WorkerHeartbeat: Equatable, Hashable, Sendable {
    public var worker: String
    public var lease: LeaseID?
    public var unit: UnitID?
    /// Tokens of the leased unit processed so far (progress; lets a coordinator spot a stall).
    public var tokens: Int?

    public init(worker: String, lease: LeaseID? = nil, unit: UnitID? = nil, tokens: Int? = nil) {
        self.worker = worker
        self.lease = lease
        self.unit = unit
        self.tokens = tokens
    }

    func write(to writer: inout FieldWriter) {
        writer.string(.worker, worker)
        if let lease { writer.uint(.lease, lease.rawValue) }
        if let unit { writer.uint(.unit, unit.rawValue) }
        if let tokens { writer.int(.tokens, tokens) }
    }

    init(_ fields: Fields) throws(ProtocolError) {
        worker = try fields.name(.worker)
        lease = try fields.optionalLease()
        unit = try fields.optionalUnit()
        tokens = try fields.optionalInt(.tokens)
        guard (lease == nil) == (unit == nil) else {
            throw fields.invalid(lease == nil ? .unit : .lease, expected: "lease and unit together, or neither", found: "only one of them")
        }
    }
}

/// DONE: every shard of a unit is durable under its name; here are the checksums and the
/// statistics. A worker sends it again until an ACK for the lease arrives.
public struct UnitDone: Equatable, Hashable, Sendable {
    public var unit: UnitID
    public var lease: LeaseID
    /// One per hook, in the order of the settings' hooks.
    public var shards: [ShardReport]
    /// Per hook; the hooks are those of `shards`.
    public var statistics: [String: HookStatistics]
    /// Lines skipped, by reason (`invalid_utf8`, `empty_document`, …).
    public var skipped: [String: Int]
    public var documents: Int
    public var windows: Int
    /// Rows per hook (every shard holds this many).
    public var rows: Int
    /// Tokens run through the model, special tokens included.
    public var tokens: Int
    public var timings: UnitTimings
    /// The worker asks for its next unit with this report: once acknowledged, it counts as READY.
    public var ready: Bool

    public init(
        unit: UnitID, lease: LeaseID, shards: [ShardReport], statistics: [String: HookStatistics], skipped: [String: Int] = [:], documents: Int,
        windows: Int, rows: Int, tokens: Int, timings: UnitTimings = UnitTimings(), ready: Bool = false
    ) {
        self.unit = unit
        self.lease = lease
        self.shards = shards
        self.statistics = statistics
        self.skipped = skipped
        self.documents = documents
        self.windows = windows
        self.rows = rows
        self.tokens = tokens
        self.timings = timings
        self.ready = ready
    }

    func write(to writer: inout FieldWriter) {
        writer.uint(.unit, unit.rawValue)
        writer.uint(.lease, lease.rawValue)
        for shard in shards {
            writer.fields(.shard) { nested in
                nested.string(.hook, shard.hook)
                nested.string(.file, shard.file)
                nested.int(.rows, shard.rows)
                nested.int(.bytes, shard.bytes)
                nested.uint(.crc32c, UInt64(shard.crc32c))
            }
        }
        for hook in statistics.keys.sorted() {
            writer.fields(.statistics) { nested in statistics[hook]!.write(hook: hook, to: &nested) }
        }
        for reason in skipped.keys.sorted() {
            writer.fields(.skipped) { nested in
                nested.string(.reason, reason)
                nested.int(.count, skipped[reason]!)
            }
        }
        writer.int(.documents, documents)
        writer.int(.windows, windows)
        writer.int(.rows, rows)
        writer.int(.tokens, tokens)
        writer.double(.tokenizeSeconds, timings.tokenize)
        writer.double(.forwardSeconds, timings.forward)
        writer.double(.encodeSeconds, timings.encode)
        writer.double(.wallSeconds, timings.wall)
        if ready { writer.bool(.ready, true) }
    }

    /// `knownHooks`: hook names a receiver expects, taken as they are when a report names them.
    init(_ fields: Fields, knownHooks: [String] = []) throws(ProtocolError) {
        let maxHooks = ClusterWire.Limits.maxHooks
        let unit = try fields.unit(), lease = try fields.lease(), rows = try fields.int(.rows)
        (self.unit, self.lease, self.rows) = (unit, lease, rows)
        var shards: [ShardReport] = []
        try fields.forEachNested(.shard, maxCount: maxHooks) { (shard: Fields) throws(ProtocolError) in
            let hook = try shard.name(.hook, among: knownHooks)
            // Compared as bytes: the name is the expected one, so no second string is made.
            let expected = ClusterWire.shardFileName(unit: unit.rawValue, lease: lease.rawValue, hook: hook)
            guard try shard.equals(.file, expected) else {
                let file = try shard.string(.file, maxBytes: ClusterWire.Limits.maxPathBytes, allowEmpty: true)
                throw shard.invalid(.file, expected: "\"\(expected)\"", found: Printable.text(file))
            }
            let file = expected
            let shardRows = try shard.int(.rows)
            guard shardRows == rows else { throw shard.invalid(.rows, expected: "\(rows), the unit's rows", found: "\(shardRows)") }
            let crc = try shard.uint(.crc32c, in: 0...UInt64(UInt32.max))
            shards.append(ShardReport(hook: hook, file: file, rows: shardRows, bytes: try shard.int(.bytes), crc32c: UInt32(crc)))
        }
        self.shards = shards
        guard !shards.isEmpty else { throw fields.missing(.shard) }
        // A handful of hooks: pairwise is cheaper than a set per message.
        let reported = shards
        for index in reported.indices.dropFirst() where reported[..<index].contains(where: { $0.hook == reported[index].hook }) {
            throw fields.invalid(.shard, expected: "one shard per hook", found: "a hook twice")
        }
        func isShardHook(_ hook: String) -> Bool { reported.contains { $0.hook == hook } }
        var statistics: [String: HookStatistics] = [:]
        try fields.forEachNested(.statistics, maxCount: maxHooks) { (entry: Fields) throws(ProtocolError) in
            let hook = try entry.name(.hook, among: knownHooks)
            guard isShardHook(hook) else { throw entry.invalid(.hook, expected: "a hook of the shards", found: Printable.text(hook)) }
            let value = try HookStatistics(entry)
            guard value.count == rows else { throw entry.invalid(.count, expected: "\(rows), the unit's rows", found: "\(value.count)") }
            // Checked as it is stored: one lookup by name, not two.
            guard statistics.updateValue(value, forKey: hook) == nil else {
                throw entry.invalid(.hook, expected: "statistics once per hook", found: "\(Printable.text(hook)) twice")
            }
        }
        guard statistics.count == shards.count else {
            throw fields.invalid(.statistics, expected: "statistics for each of the \(shards.count) hooks", found: "\(statistics.count)")
        }
        self.statistics = statistics
        var skipped: [String: Int] = [:]
        try fields.forEachNested(.skipped, maxCount: 64) { (entry: Fields) throws(ProtocolError) in
            let reason = try entry.name(.reason, maxBytes: 64)
            guard skipped[reason] == nil else { throw entry.invalid(.reason, expected: "each reason once", found: "\(Printable.text(reason)) twice") }
            skipped[reason] = try entry.int(.count)
        }
        self.skipped = skipped
        documents = try fields.int(.documents)
        windows = try fields.int(.windows)
        tokens = try fields.int(.tokens)
        timings = UnitTimings(
            tokenize: try fields.double(.tokenizeSeconds), forward: try fields.double(.forwardSeconds),
            encode: try fields.double(.encodeSeconds), wall: try fields.double(.wallSeconds))
        ready = try fields.bool(.ready)
    }
}

/// FAILED: a worker could not finish a unit, or gives it back.
public struct UnitFailed: Equatable, Hashable, Sendable {
    public enum Disposition: UInt8, Sendable, CaseIterable {
        /// The unit failed on this worker; it counts toward the unit's attempts.
        case failed = 1
        /// The worker gives the unit back for a reason of its own (shutting down, model
        /// mismatch, disk full); no attempt is counted.
        case released = 2
    }

    public var unit: UnitID
    public var lease: LeaseID
    public var disposition: Disposition
    public var reason: String
    /// As in ``UnitDone/ready``.
    public var ready: Bool

    public init(unit: UnitID, lease: LeaseID, disposition: Disposition = .failed, reason: String, ready: Bool = false) {
        self.unit = unit
        self.lease = lease
        self.disposition = disposition
        self.reason = reason
        self.ready = ready
    }

    func write(to writer: inout FieldWriter) {
        writer.uint(.unit, unit.rawValue)
        writer.uint(.lease, lease.rawValue)
        writer.uint(.disposition, UInt64(disposition.rawValue))
        writer.string(.reason, reason)
        if ready { writer.bool(.ready, true) }
    }

    init(_ fields: Fields) throws(ProtocolError) {
        unit = try fields.unit()
        lease = try fields.lease()
        disposition = Disposition(rawValue: UInt8(try fields.uint(.disposition, in: 1...2)))!
        reason = try fields.string(.reason, maxBytes: ClusterWire.Limits.maxReasonBytes, allowEmpty: true)
        ready = try fields.bool(.ready)
    }
}

/// What a worker sends the coordinator.
public enum WorkerMessage: Equatable, Hashable, Sendable {
    case ready(Ready)
    case heartbeat(WorkerHeartbeat)
    case done(UnitDone)
    case failed(UnitFailed)

    public var command: ClusterWire.Command {
        switch self {
        case .ready: .ready
        case .heartbeat: .heartbeat
        case .done: .done
        case .failed: .failed
        }
    }

    /// The message's ZeroMQ frames: protocol, command, control body.
    public func encode() -> [[UInt8]] {
        var writer = FieldWriter()
        switch self {
        case .ready(let ready): ready.write(to: &writer)
        case .heartbeat(let heartbeat): heartbeat.write(to: &writer)
        case .done(let done): done.write(to: &writer)
        case .failed(let failed): failed.write(to: &writer)
        }
        return FrameCheck.frames(.worker, command, writer)
    }

    /// Decodes and checks a message from a worker (without the ROUTER envelope). Hook names in
    /// `knownHooks` (the run's) are checked once, not per report.
    public static func decode(frames: [[UInt8]], knownHooks: [String] = []) throws(ProtocolError) -> WorkerMessage {
        let command = try FrameCheck.command(frames, channel: .worker)
        switch command {
        case .ready: return .ready(try Ready(try FrameCheck.body(frames, command, frameCount: 3)))
        case .heartbeat: return .heartbeat(try WorkerHeartbeat(try FrameCheck.body(frames, command, frameCount: 3)))
        case .done: return .done(try UnitDone(try FrameCheck.body(frames, command, frameCount: 3), knownHooks: knownHooks))
        case .failed: return .failed(try UnitFailed(try FrameCheck.body(frames, command, frameCount: 3)))
        default: throw FrameCheck.wrongDirection(command, receiver: "coordinator")
        }
    }
}
