import Corpus
import Shards

/// Pending units in lease order. Requeued units go to the front, so a failing unit is retried
/// (and, if it keeps failing, poisoned) soon rather than at the end of the run.
public struct UnitQueue: Equatable, Sendable, Sequence {
    private var storage: [UnitID] = []
    private var head = 0

    public init() {}

    public var count: Int { storage.count - head }
    public var isEmpty: Bool { count == 0 }
    public var first: UnitID? { isEmpty ? nil : storage[head] }

    public mutating func append(_ unit: UnitID) { storage.append(unit) }

    public mutating func prepend(_ unit: UnitID) {
        if head > 0 {
            head -= 1
            storage[head] = unit
        } else {
            storage.insert(unit, at: 0)
        }
    }

    /// Removes `unit` wherever it is (O(1) at the front); false if it is not queued.
    @discardableResult
    public mutating func remove(_ unit: UnitID) -> Bool {
        if first == unit {
            head += 1
        } else if let index = storage[head...].firstIndex(of: unit) {
            storage.remove(at: index)
        } else {
            return false
        }
        if head > 1024 && head * 2 > storage.count {
            storage.removeFirst(head)
            head = 0
        }
        return true
    }

    public func makeIterator() -> ArraySlice<UnitID>.Iterator { storage[head...].makeIterator() }

    public static func == (a: UnitQueue, b: UnitQueue) -> Bool { a.storage[a.head...].elementsEqual(b.storage[b.head...]) }
}

/// A live lease that ended because its unit was finished under another lease.
public struct RevokedLease: Equatable, Sendable {
    public var lease: LeaseID
    public var unit: UnitID
    public var worker: String

    public init(lease: LeaseID, unit: UnitID, worker: String) {
        self.lease = lease
        self.unit = unit
        self.worker = worker
    }
}

/// What applying an event did, and what the coordinator must do about it. The coordinator
/// journals an event only when it was ``Verdict-swift.enum/applied`` (and syncs the journal
/// before it sends any message or deletes any file that follows from it).
public struct Transition: Equatable, Sendable {
    public enum Verdict: Equatable, Sendable {
        /// The state changed: journal the event.
        case applied
        /// A valid report that changes nothing (a repeated or late DONE or FAILED): do not
        /// journal; acknowledge.
        case ignored(String)
        /// Input that contradicts the state (unknown unit or lease, other hooks, an
        /// impossible plan): do not journal; log it.
        case rejected(String)
    }

    public var verdict: Verdict
    /// For DONE and FAILED: what to answer in ACK.
    public var acknowledgement: Acknowledgement.Outcome?
    /// Shard files to delete (plain names in the output folder): those of an ignored DONE.
    /// Never a file of the accepted lease, never a name a worker chose.
    public var deleteFiles: [String] = []
    /// Live leases that ended because their unit was finished under another lease: tell
    /// their workers with CANCEL.
    public var revoked: [RevokedLease] = []
    /// The unit went back to the pending queue.
    public var requeued: UnitID?
    /// The unit failed for good.
    public var poisoned: UnitID?
    /// The unit is now done.
    public var finishedUnit: UnitID?
    /// Planning is complete and no unit is pending or leased any more.
    public var allUnitsFinished = false

    init(_ verdict: Verdict, acknowledgement: Acknowledgement.Outcome? = nil) {
        self.verdict = verdict
        self.acknowledgement = acknowledgement
    }

    public var changed: Bool { verdict == .applied }

    public var reason: String? {
        switch verdict {
        case .applied: nil
        case .ignored(let reason), .rejected(let reason): reason
        }
    }

}

/// The coordinator's state as a pure value: units planned, pending, leased, done and
/// poisoned; live leases; merged statistics; where planning stands. ``apply(_:)`` is the only
/// way it changes, and the journal records exactly the events that changed it, so replaying
/// the journal rebuilds it. No clocks: the coordinator decides when a lease has expired and
/// applies ``CoordinatorEvent/expired(unit:lease:)``.
///
/// Rules:
/// - Leases: a pending unit gets one live lease at a time; lease ids only grow, and come from
///   blocks the journal reserved (``CoordinatorEvent/leasesReserved(through:)``). An ASSIGN may
///   leave before its LEASED is durable, so a new block skips the ids its predecessor left
///   unjournaled; a DONE or FAILED for a skipped id is acknowledged, ignored, and its files
///   deleted.
/// - Expiry and FAILED requeue the unit (at the front) and count an attempt; at
///   ``RunDefinition/maxAttempts`` counted attempts the unit is poisoned, which is final.
///   A release (FAILED with disposition `released`) requeues without counting.
/// - DONE is accepted from any lease ever issued for the unit while the unit is not yet done
///   or poisoned, even a lease that expired: its files are complete and checksummed, so
///   accepting them saves the work, and the unit still lands exactly once. A live lease of
///   another worker on that unit is revoked (CANCEL).
/// - DONE for a unit already done is acknowledged and ignored: from the accepted lease it is
///   a resend (nothing to delete), from another lease its files are strays to delete. DONE for
///   a poisoned unit is ignored the same way. DONE from a lease never issued for the unit, or
///   contradicting the run (other hooks or widths), is rejected and changes nothing.
public struct CoordinatorState: Equatable, Sendable {
    public struct Lease: Equatable, Sendable {
        public var unit: UnitID
        public var worker: String
        /// 1 for the unit's first lease, 2 for the next, …
        public var attempt: Int
    }

    /// A unit that is pending (no lease) or leased.
    public struct ActiveUnit: Equatable, Sendable {
        public var plan: UnitPlan
        public var lease: LeaseID?
        /// Reasons of the counted failed attempts so far.
        public var failures: [String] = []
        /// The first lease inline and the rest apart: most units get one lease, and an array
        /// per unit is an allocation when leased and a cache miss when the DONE comes.
        private var firstLease: LeaseID?
        private var laterLeases: [LeaseID] = []

        init(plan: UnitPlan) { self.plan = plan }

        /// Every lease issued for the unit, in order.
        public var leases: [LeaseID] { firstLease.map { [$0] + laterLeases } ?? [] }
        public var leaseCount: Int { firstLease == nil ? 0 : 1 + laterLeases.count }

        public func wasIssued(_ lease: LeaseID) -> Bool { firstLease == lease || laterLeases.contains(lease) }

        /// Leases other than `lease`, in order.
        func leases(except lease: LeaseID) -> [LeaseID] {
            guard let firstLease else { return [] }
            if laterLeases.isEmpty { return firstLease == lease ? [] : [firstLease] }
            return leases.filter { $0 != lease }
        }

        mutating func issue(_ lease: LeaseID) {
            if firstLease == nil { firstLease = lease } else { laterLeases.append(lease) }
        }
    }

    public struct PoisonedUnit: Equatable, Sendable {
        public var plan: UnitPlan
        /// One per counted attempt.
        public var reasons: [String]
        public var leases: [LeaseID]
    }

    public let run: RunDefinition
    public private(set) var nextUnit: UnitID = 0
    /// Where the planner goes on.
    public private(set) var planPosition = CorpusPosition.start
    public private(set) var planningComplete = false
    public private(set) var nextLease: LeaseID = 1
    /// The last lease id the journal reserved (0: none, a journal from before reservations,
    /// whose leases were all durable before their ASSIGN).
    public private(set) var reservedThrough: LeaseID = 0
    /// Reserved ids never journaled as leased, skipped by a later reservation: the coordinator
    /// may have sent them in ASSIGN before it crashed, so they are never issued again.
    public private(set) var skippedLeases: [ClosedRange<UInt64>] = []
    public private(set) var pending = UnitQueue()
    public private(set) var active: [UnitID: ActiveUnit] = [:]
    public private(set) var leases: [LeaseID: Lease] = [:]
    public private(set) var done: DoneUnits
    public private(set) var poisoned: [UnitID: PoisonedUnit] = [:]
    /// Merged over done units, per hook.
    public private(set) var statistics: [String: RunningStatistics] = [:]
    public private(set) var skipped: [String: Int] = [:]
    public private(set) var rows = 0
    public private(set) var tokens = 0
    public private(set) var documents = 0
    /// The manifest is written.
    public private(set) var completed = false

    public init(run: RunDefinition) {
        self.run = run
        done = DoneUnits(hooks: run.settings.hooks)
    }

    public var plannedCount: Int { Int(nextUnit.rawValue) }
    public var leasedCount: Int { leases.count }
    /// Planning is complete and every unit is done or poisoned.
    public var allUnitsFinished: Bool { planningComplete && active.isEmpty }

    /// The shard file names a lease may have written.
    public func shardFiles(unit: UnitID, lease: LeaseID) -> [String] {
        run.settings.hooks.map { ClusterWire.shardFileName(unit: unit.rawValue, lease: lease.rawValue, hook: $0) }
    }

    /// Files that leases of finished units other than the accepted ones may have left
    /// (a worker that was revoked or lost after writing). A coordinator MAY delete those that
    /// exist once the run is complete.
    public func strayFiles() -> [String] {
        var names: [String] = []
        for (unit, record) in done { for lease in record.otherLeases { names += shardFiles(unit: unit, lease: lease) } }
        for (unit, record) in poisoned { for lease in record.leases { names += shardFiles(unit: unit, lease: lease) } }
        return names.sorted()
    }

    // MARK: Transitions

    public mutating func apply(_ event: CoordinatorEvent) -> Transition {
        switch event {
        case .started(let definition):
            return definition == run ? Transition(.ignored("the run has started already")) : Transition(.rejected("a second, different run definition"))
        case .planned(let plan): return addPlanned(plan)
        case .planningFinished:
            if planningComplete { return Transition(.ignored("planning is complete already")) }
            planningComplete = true
            var transition = Transition(.applied)
            transition.allUnitsFinished = allUnitsFinished
            return transition
        case .leased(let unit, let lease, let worker): return grant(unit, lease, worker)
        case .expired(let unit, let lease):
            guard let live = leases[lease], live.unit == unit else { return Transition(.ignored("lease \(lease) of unit \(unit) is not live")) }
            return endLease(lease, counted: true, reason: "lease \(lease) expired: worker \(live.worker) stopped sending heartbeats")
        case .failed(let failure): return fail(failure)
        case .done(let report): return finish(report)
        case .leasesReserved(let through): return reserve(through)
        case .completed:
            if completed { return Transition(.ignored("the run is complete already")) }
            guard allUnitsFinished else {
                return Transition(.rejected("\(active.count) units are still pending or leased, or planning is not finished"))
            }
            completed = true
            return Transition(.applied)
        }
    }

    private mutating func addPlanned(_ plan: UnitPlan) -> Transition {
        if planningComplete { return Transition(.rejected("planning is complete; no unit \(plan.unit) can follow")) }
        guard plan.unit == nextUnit, plan.unit.rawValue <= ClusterWire.Limits.maxUnitID else {
            return Transition(.rejected("the next unit is \(nextUnit), not \(plan.unit)"))
        }
        guard plan.fileIndex < run.corpus.paths.count, plan.lineCount > 0 else {
            return Transition(.rejected("unit \(plan.unit) names file \(plan.fileIndex) of \(run.corpus.paths.count), with \(plan.lineCount) lines"))
        }
        let position = planPosition
        let continues =
            plan.firstDocumentID == position.documentID
            && (plan.fileIndex == position.fileIndex
                ? plan.byteRange.lowerBound == position.byteOffset && plan.firstLine == position.linesBefore + 1
                : plan.fileIndex > position.fileIndex && plan.byteRange.lowerBound == 0 && plan.firstLine == 1)
        guard continues else {
            return Transition(.rejected("unit \(plan.unit) starts at \(plan.start), not where planning stands (\(position))"))
        }
        active[plan.unit] = ActiveUnit(plan: plan)
        pending.append(plan.unit)
        nextUnit = UnitID(plan.unit.rawValue + 1)
        planPosition = plan.end
        return Transition(.applied)
    }

    /// Starts a new block of lease ids. Ids of the previous block not journaled yet are skipped:
    /// a coordinator reserves when its block runs out, so that happens only after a restart.
    private mutating func reserve(_ through: LeaseID) -> Transition {
        let first = max(nextLease.rawValue, reservedThrough.rawValue + 1)
        guard through.rawValue >= first else {
            return Transition(.rejected("lease ids up to \(through) cannot be reserved; the next free id is \(first)"))
        }
        if nextLease.rawValue < first { skippedLeases.append(nextLease.rawValue...(first - 1)) }
        nextLease = LeaseID(first)
        reservedThrough = through
        return Transition(.applied)
    }

    /// A lease id that was reserved, may have gone out in an ASSIGN, and was never journaled.
    public func wasSkipped(_ lease: LeaseID) -> Bool {
        skippedLeases.contains { $0.contains(lease.rawValue) }
    }

    private mutating func grant(_ unit: UnitID, _ lease: LeaseID, _ worker: String) -> Transition {
        guard lease >= nextLease else { return Transition(.rejected("lease \(lease) is below the next lease id \(nextLease)")) }
        if reservedThrough.rawValue > 0 && lease > reservedThrough {
            return Transition(.rejected("lease \(lease) is beyond the reserved ids (up to \(reservedThrough))"))
        }
        guard var record = active[unit], record.lease == nil else {
            return Transition(.rejected("unit \(unit) is not pending"))
        }
        pending.remove(unit)
        record.lease = lease
        record.issue(lease)
        active[unit] = record
        leases[lease] = Lease(unit: unit, worker: worker, attempt: record.leaseCount)
        nextLease = LeaseID(lease.rawValue + 1)
        return Transition(.applied)
    }

    /// Ends a live lease: requeues its unit, or poisons it when the counted attempts reach the limit.
    private mutating func endLease(_ lease: LeaseID, counted: Bool, reason: String) -> Transition {
        let unit = leases.removeValue(forKey: lease)!.unit
        var record = active[unit]!
        record.lease = nil
        if counted { record.failures.append(reason) }
        var transition = Transition(.applied, acknowledgement: .accepted)
        if record.failures.count >= run.maxAttempts {
            active[unit] = nil
            poisoned[unit] = PoisonedUnit(plan: record.plan, reasons: record.failures, leases: record.leases)
            transition.poisoned = unit
            transition.allUnitsFinished = allUnitsFinished
        } else {
            active[unit] = record
            pending.prepend(unit)
            transition.requeued = unit
        }
        return transition
    }

    /// Every lease ever issued for `unit`, whatever its state.
    private func history(of unit: UnitID) -> [LeaseID] {
        if let record = active[unit] { return record.leases }
        if let record = done[unit] { return [record.lease] + record.otherLeases }
        return poisoned[unit]?.leases ?? []
    }

    /// A report for a lease sent just before a restart and never journaled: acknowledged and
    /// ignored; its files (named by unit and lease, never issued again) are strays.
    private func skippedReport(unit: UnitID, lease: LeaseID, files: Bool) -> Transition {
        var transition = Transition(
            .ignored("lease \(lease) of unit \(unit) was handed out just before a coordinator restart and never journaled"), acknowledgement: .ignored)
        if files { transition.deleteFiles = shardFiles(unit: unit, lease: lease) }
        return transition
    }

    private mutating func fail(_ failure: UnitFailed) -> Transition {
        if wasSkipped(failure.lease) { return skippedReport(unit: failure.unit, lease: failure.lease, files: false) }
        if let live = leases[failure.lease] {
            guard live.unit == failure.unit else {
                return Transition(.rejected("lease \(failure.lease) belongs to unit \(live.unit), not \(failure.unit)"), acknowledgement: .rejected)
            }
            return endLease(failure.lease, counted: failure.disposition == .failed, reason: failure.reason)
        }
        guard history(of: failure.unit).contains(failure.lease) else {
            return Transition(.rejected("lease \(failure.lease) was never issued for unit \(failure.unit)"), acknowledgement: .rejected)
        }
        return Transition(.ignored("lease \(failure.lease) of unit \(failure.unit) has ended already"), acknowledgement: .ignored)
    }

    private mutating func finish(_ report: UnitDone) -> Transition {
        let unit = report.unit, lease = report.lease
        if wasSkipped(lease) { return skippedReport(unit: unit, lease: lease, files: true) }
        if let record = done[unit] {
            if record.lease == lease {
                return Transition(.ignored("unit \(unit) was accepted from lease \(lease) already"), acknowledgement: .alreadyAccepted)
            }
            guard record.otherLeases.contains(lease) else {
                return Transition(.rejected("lease \(lease) was never issued for unit \(unit)"), acknowledgement: .rejected)
            }
            var transition = Transition(.ignored("unit \(unit) is done under lease \(record.lease)"), acknowledgement: .ignored)
            transition.deleteFiles = shardFiles(unit: unit, lease: lease)
            return transition
        }
        if let record = poisoned[unit] {
            guard record.leases.contains(lease) else {
                return Transition(.rejected("lease \(lease) was never issued for unit \(unit)"), acknowledgement: .rejected)
            }
            var transition = Transition(.ignored("unit \(unit) has failed for good"), acknowledgement: .ignored)
            transition.deleteFiles = shardFiles(unit: unit, lease: lease)
            return transition
        }
        guard let record = active[unit] else {
            return Transition(.rejected("unit \(unit) is unknown (\(plannedCount) units are planned)"), acknowledgement: .rejected)
        }
        guard record.wasIssued(lease) else {
            return Transition(.rejected("lease \(lease) was never issued for unit \(unit)"), acknowledgement: .rejected)
        }
        if let problem = mismatch(report) { return Transition(.rejected(problem), acknowledgement: .rejected) }

        // Accept.
        var transition = Transition(.applied, acknowledgement: .accepted)
        if let live = record.lease {
            let holder = leases.removeValue(forKey: live)!
            if live != lease { transition.revoked.append(RevokedLease(lease: live, unit: unit, worker: holder.worker)) }
        } else {
            // A late DONE for a requeued unit (requeued units wait at the front of the queue).
            pending.remove(unit)
        }
        active[unit] = nil
        done.insert(unit: unit, lease: lease, shards: report.shards, rows: report.rows, otherLeases: record.leases(except: lease))
        for (hook, value) in report.statistics where value.count > 0 {
            statistics[hook, default: RunningStatistics(width: value.width)].merge(
                count: value.count, mean: value.mean, variance: value.variance, meanNorm: value.meanNorm)
        }
        for (reason, count) in report.skipped { skipped[reason, default: 0] += count }
        rows += report.rows
        tokens += report.tokens
        documents += report.documents
        transition.finishedUnit = unit
        transition.allUnitsFinished = allUnitsFinished
        return transition
    }

    /// Why a DONE cannot belong to this run, if it cannot.
    private func mismatch(_ report: UnitDone) -> String? {
        // One shard per hook of the run, each hook once (no sets: this runs for every unit).
        let hooks = run.settings.hooks
        let matches =
            report.shards.count == hooks.count
            && report.shards.indices.allSatisfy { index in
                hooks.contains(report.shards[index].hook) && !report.shards[..<index].contains { $0.hook == report.shards[index].hook }
            }
        guard matches else {
            return "DONE of unit \(report.unit) has shards for \(report.shards.map(\.hook).sorted()), the run's hooks are \(run.settings.hooks)"
        }
        for (hook, value) in report.statistics {
            if let merged = statistics[hook], merged.width != value.width {
                return "DONE of unit \(report.unit) has \(hook) statistics of width \(value.width), earlier units \(merged.width)"
            }
        }
        return nil
    }

    // MARK: Output

    /// The manifest of the done units, in unit order, with the poisoned units as failed units.
    public func manifest() -> ShardManifest {
        var manifest = manifestWithoutShards()
        manifest.shards = Array(manifestShards)
        return manifest
    }

    /// The manifest's shards, made one at a time as they are written
    /// (``ShardManifest/write(toDirectory:streaming:)``).
    public var manifestShards: some Sequence<ShardManifest.Shard> {
        done.lazy.flatMap { unit, record in
            record.shards.map {
                ShardManifest.Shard(file: $0.file, hook: $0.hook, unit: unit.rawValue, rows: $0.rows, bytes: $0.bytes, crc32c: CRC32C.hex($0.crc32c))
            }
        }
    }

    /// ``manifest()`` but for its shards, which ``manifestShards`` gives.
    public func manifestWithoutShards() -> ShardManifest {
        var manifest = ShardManifest(
            model: run.settings.model.identity, hooks: run.settings.hooks, dtype: run.settings.dtype, context: run.settings.context)
        // Rows over all shards: every hook's shard of a unit holds the unit's rows.
        manifest.rows = rows * run.settings.hooks.count
        for (hook, value) in statistics { manifest.addStatistics(value, hook: hook) }
        for (reason, count) in skipped { manifest.countSkipped(reason, by: count) }
        manifest.failedUnits = poisoned.keys.sorted().map { unit in
            let record = poisoned[unit]!
            return ShardManifest.FailedUnit(
                unit: unit.rawValue, file: run.corpus.paths[record.plan.fileIndex], firstLine: record.plan.firstLine,
                lineCount: record.plan.lineCount, reasons: record.reasons)
        }
        return manifest
    }

    /// Checks the invariants the rules promise; nil when they hold. For tests and debugging.
    public func invariantViolation() -> String? {
        for (lease, live) in leases {
            guard let record = active[live.unit], record.lease == lease else { return "lease \(lease) outlives its unit \(live.unit)" }
        }
        for (unit, record) in active {
            if let lease = record.lease, leases[lease]?.unit != unit { return "unit \(unit) names lease \(lease), which is not live for it" }
            if (record.lease == nil) != pending.contains(unit) { return "unit \(unit) is pending and leased, or neither" }
            if done[unit] != nil || poisoned[unit] != nil { return "unit \(unit) is active and finished" }
        }
        for unit in done.keys where poisoned[unit] != nil { return "unit \(unit) is done and poisoned" }
        if reservedThrough.rawValue > 0 && nextLease.rawValue > reservedThrough.rawValue + 1 { return "lease \(nextLease.rawValue - 1) was issued beyond the reservation" }
        if pending.count + leases.count != active.count { return "\(pending.count) pending + \(leases.count) leased ≠ \(active.count) active" }
        if active.count + done.count + poisoned.count != plannedCount { return "units do not add up to the \(plannedCount) planned" }
        if done.values.reduce(0, { $0 + $1.rows }) != rows { return "rows do not add up" }
        return nil
    }
}
