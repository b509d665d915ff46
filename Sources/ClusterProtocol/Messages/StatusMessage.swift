/// STATUS: a status client asks how the run is going.
public struct StatusRequest: Equatable, Hashable, Sendable {
    /// Whether the reply lists every worker.
    public var includeWorkers: Bool

    public init(includeWorkers: Bool = true) { self.includeWorkers = includeWorkers }
}

/// One worker in STATUS-REPLY.
public struct WorkerStatus: Equatable, Hashable, Sendable {
    public var name: String
    /// The unit and lease it works on; nil when idle.
    public var unit: UnitID?
    public var lease: LeaseID?
    /// Tokens per second over the last minute.
    public var tokensPerSecond: Double
    /// Seconds since the coordinator last heard from it.
    public var lastSeenSeconds: Double
    public var unitsDone: Int

    public init(name: String, unit: UnitID? = nil, lease: LeaseID? = nil, tokensPerSecond: Double = 0, lastSeenSeconds: Double = 0, unitsDone: Int = 0) {
        self.name = name
        self.unit = unit
        self.lease = lease
        self.tokensPerSecond = tokensPerSecond
        self.lastSeenSeconds = lastSeenSeconds
        self.unitsDone = unitsDone
    }
}

/// A poisoned unit in STATUS-REPLY.
public struct FailureReport: Equatable, Hashable, Sendable {
    public var unit: UnitID
    public var reason: String

    public init(unit: UnitID, reason: String) {
        self.unit = unit
        self.reason = reason
    }
}

/// STATUS-REPLY: a summary of the run.
public struct StatusReport: Equatable, Hashable, Sendable {
    public enum Phase: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        case running = 1
        /// SIGINT/SIGTERM: no new leases; waiting for in-flight units.
        case draining = 2
        /// Every unit is done or failed; the manifest is written.
        case complete = 3

        public var description: String {
            switch self {
            case .running: "running"
            case .draining: "draining"
            case .complete: "complete"
            }
        }
    }

    public var run: UInt64
    public var phase: Phase
    public var uptimeSeconds: Double
    /// Whether the planner has reached the end of the corpus (then `unitsPlanned` is the total).
    public var planningComplete: Bool
    public var unitsPlanned: Int
    public var unitsDone: Int
    public var unitsLeased: Int
    public var unitsPending: Int
    /// Poisoned units.
    public var unitsFailed: Int
    public var rows: Int
    public var tokens: Int
    /// Over the last minute.
    public var tokensPerSecond: Double
    /// Estimated seconds left; nil while unknown (planning not finished, or no rate yet).
    public var etaSeconds: Double?
    public var workers: [WorkerStatus]
    /// The first poisoned units with their reasons (at most ``ClusterWire/Limits/maxStatusFailures``).
    public var failures: [FailureReport]

    public init(
        run: UInt64, phase: Phase = .running, uptimeSeconds: Double = 0, planningComplete: Bool = false, unitsPlanned: Int = 0, unitsDone: Int = 0,
        unitsLeased: Int = 0, unitsPending: Int = 0, unitsFailed: Int = 0, rows: Int = 0, tokens: Int = 0, tokensPerSecond: Double = 0,
        etaSeconds: Double? = nil, workers: [WorkerStatus] = [], failures: [FailureReport] = []
    ) {
        self.run = run
        self.phase = phase
        self.uptimeSeconds = uptimeSeconds
        self.planningComplete = planningComplete
        self.unitsPlanned = unitsPlanned
        self.unitsDone = unitsDone
        self.unitsLeased = unitsLeased
        self.unitsPending = unitsPending
        self.unitsFailed = unitsFailed
        self.rows = rows
        self.tokens = tokens
        self.tokensPerSecond = tokensPerSecond
        self.etaSeconds = etaSeconds
        self.workers = workers
        self.failures = failures
    }

    /// All units, once planning is complete.
    public var unitsTotal: Int? { planningComplete ? unitsPlanned : nil }

    func write(to writer: inout FieldWriter) {
        writer.uint(.run, run)
        writer.uint(.phase, UInt64(phase.rawValue))
        writer.double(.uptimeSeconds, uptimeSeconds)
        writer.bool(.planningComplete, planningComplete)
        writer.int(.unitsPlanned, unitsPlanned)
        writer.int(.unitsDone, unitsDone)
        writer.int(.unitsLeased, unitsLeased)
        writer.int(.unitsPending, unitsPending)
        writer.int(.unitsFailed, unitsFailed)
        writer.int(.rows, rows)
        writer.int(.tokens, tokens)
        writer.double(.tokensPerSecond, tokensPerSecond)
        if let etaSeconds { writer.double(.etaSeconds, etaSeconds) }
        for worker in workers {
            writer.fields(.workerStatus) { nested in
                nested.string(.worker, worker.name)
                if let unit = worker.unit { nested.uint(.unit, unit.rawValue) }
                if let lease = worker.lease { nested.uint(.lease, lease.rawValue) }
                nested.double(.tokensPerSecond, worker.tokensPerSecond)
                nested.double(.lastSeenSeconds, worker.lastSeenSeconds)
                nested.int(.unitsDone, worker.unitsDone)
            }
        }
        for failure in failures {
            writer.fields(.failure) { nested in
                nested.uint(.unit, failure.unit.rawValue)
                nested.string(.reason, failure.reason)
            }
        }
    }

    init(_ fields: Fields) throws(ProtocolError) {
        run = try fields.uint(.run)
        phase = Phase(rawValue: UInt8(try fields.uint(.phase, in: 1...3)))!
        uptimeSeconds = try fields.double(.uptimeSeconds)
        planningComplete = try fields.bool(.planningComplete)
        let maxUnits = Int(ClusterWire.Limits.maxUnitID) + 1
        unitsPlanned = try fields.int(.unitsPlanned, in: 0...maxUnits)
        unitsDone = try fields.int(.unitsDone, in: 0...maxUnits)
        unitsLeased = try fields.int(.unitsLeased, in: 0...maxUnits)
        unitsPending = try fields.int(.unitsPending, in: 0...maxUnits)
        unitsFailed = try fields.int(.unitsFailed, in: 0...maxUnits)
        let sum = unitsDone + unitsLeased + unitsPending + unitsFailed
        guard sum == unitsPlanned else {
            throw fields.invalid(.unitsPlanned, expected: "\(sum), the done, leased, pending and failed units together", found: "\(unitsPlanned)")
        }
        rows = try fields.int(.rows)
        tokens = try fields.int(.tokens)
        tokensPerSecond = try fields.double(.tokensPerSecond)
        etaSeconds = try fields.optionalDouble(.etaSeconds)
        workers = []
        for entry in try fields.allNested(.workerStatus, maxCount: ClusterWire.Limits.maxStatusWorkers) {
            workers.append(
                WorkerStatus(
                    name: try entry.name(.worker), unit: try entry.optionalUnit(), lease: try entry.optionalLease(),
                    tokensPerSecond: try entry.double(.tokensPerSecond), lastSeenSeconds: try entry.double(.lastSeenSeconds),
                    unitsDone: try entry.int(.unitsDone)))
        }
        failures = []
        for entry in try fields.allNested(.failure, maxCount: ClusterWire.Limits.maxStatusFailures) {
            failures.append(FailureReport(unit: try entry.unit(), reason: try entry.string(.reason, maxBytes: ClusterWire.Limits.maxReasonBytes, allowEmpty: true)))
        }
    }
}

/// The status channel's messages.
public enum StatusMessage: Equatable, Hashable, Sendable {
    case request(StatusRequest)
    case reply(StatusReport)

    public var command: ClusterWire.Command {
        switch self {
        case .request: .statusRequest
        case .reply: .statusReply
        }
    }

    public func encode() -> [[UInt8]] {
        var writer = FieldWriter()
        switch self {
        case .request(let request): writer.bool(.includeWorkers, request.includeWorkers)
        case .reply(let report): report.write(to: &writer)
        }
        return FrameCheck.frames(.status, command, writer)
    }

    /// Decodes either command; a coordinator SHOULD drop anything but `.request`.
    public static func decode(frames: [[UInt8]]) throws(ProtocolError) -> StatusMessage {
        let command = try FrameCheck.command(frames, channel: .status)
        let fields = try FrameCheck.body(frames, command, frameCount: 3)
        switch command {
        case .statusRequest: return .request(StatusRequest(includeWorkers: try fields.bool(.includeWorkers, default: true)))
        default: return .reply(try StatusReport(fields))
        }
    }
}
