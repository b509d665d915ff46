import ClusterProtocol
import Corpus
import Foundation
import Shards
import Testing

/// Plans `count` one-line units in file 0.
private func planned(_ count: Int, maxAttempts: Int = 3) -> CoordinatorState {
    var state = CoordinatorState(run: Samples.run(maxAttempts: maxAttempts))
    for index in 0..<count {
        let plan = UnitPlan(
            unit: UnitID(UInt64(index)), fileIndex: 0, byteRange: Int64(index * 10)..<Int64(index * 10 + 10), firstDocumentID: Int64(index),
            firstLine: index + 1, lineCount: 1, textBytes: 9)
        #expect(state.apply(.planned(plan)).changed)
    }
    return state
}

@Suite struct StateRules {
    @Test func leaseDoneAndResend() {
        var state = planned(2)
        #expect(state.apply(.leased(unit: 0, lease: 1, worker: "w1")).changed)
        let accepted = state.apply(.done(Samples.done(unit: 0, lease: 1)))
        #expect(accepted.verdict == .applied && accepted.acknowledgement == .accepted && accepted.finishedUnit == 0)
        #expect(accepted.deleteFiles.isEmpty && accepted.revoked.isEmpty)
        #expect(state.rows == 40 && state.statistics[Samples.hooks[0]]?.count == 40 && state.skipped["invalid_utf8"] == 2)
        // The same DONE again: acknowledged, nothing changes, nothing is deleted.
        let before = state
        let resend = state.apply(.done(Samples.done(unit: 0, lease: 1)))
        #expect(resend.acknowledgement == .alreadyAccepted && !resend.changed && resend.deleteFiles.isEmpty)
        #expect(state == before)
        #expect(state.invariantViolation() == nil)
    }

    @Test func lateDoneFromAnExpiredLeaseIsAcceptedAndRevokesTheNewLease() {
        var state = planned(1)
        _ = state.apply(.leased(unit: 0, lease: 1, worker: "slow"))
        let expired = state.apply(.expired(unit: 0, lease: 1))
        #expect(expired.requeued == 0 && state.active[0]?.failures.count == 1)
        _ = state.apply(.leased(unit: 0, lease: 2, worker: "fast"))
        // The slow worker finishes after all: its files are complete, so the unit lands now.
        let late = state.apply(.done(Samples.done(unit: 0, lease: 1)))
        #expect(late.acknowledgement == .accepted && late.revoked == [RevokedLease(lease: 2, unit: 0, worker: "fast")])
        #expect(state.leases.isEmpty && state.done[0]?.lease == 1 && state.done[0]?.otherLeases == [2])
        // The fast worker's DONE is a stray: ignored, and its files (only its files) go.
        let stray = state.apply(.done(Samples.done(unit: 0, lease: 2)))
        #expect(stray.acknowledgement == .ignored && !stray.changed)
        #expect(stray.deleteFiles == Samples.hooks.map { ClusterWire.shardFileName(unit: 0, lease: 2, hook: $0) })
        #expect(state.strayFiles() == stray.deleteFiles.sorted())
        #expect(state.allUnitsFinished == false)  // planning is not finished
        let finished = state.apply(.planningFinished)
        #expect(finished.allUnitsFinished)
        #expect(state.apply(.completed).changed && state.completed)
        #expect(state.invariantViolation() == nil)
    }

    /// Lease ids come from reserved blocks. A block reserved after a restart skips the ids the
    /// previous block never journaled (an ASSIGN may have carried one before the crash): they
    /// are never issued again, and a DONE or FAILED for one is acknowledged, ignored, and its
    /// files deleted.
    @Test func reservedLeaseIdsAreSkippedAfterARestart() {
        var state = planned(3)
        #expect(state.apply(.leasesReserved(through: 4)).changed && state.reservedThrough == 4 && state.nextLease == 1)
        #expect(state.apply(.leased(unit: 0, lease: 1, worker: "w1")).changed)
        // Beyond the block: refused until the next reservation.
        #expect(state.apply(.leased(unit: 1, lease: 5, worker: "w2")).reason?.contains("beyond the reserved ids") == true)
        #expect(state.apply(.leased(unit: 1, lease: 2, worker: "w2")).changed)
        // A restart: ids 3 and 4 may have gone out unjournaled; the new block starts at 5.
        #expect(state.apply(.leasesReserved(through: 2)).verdict == .rejected("lease ids up to 2 cannot be reserved; the next free id is 5"))
        #expect(state.apply(.leasesReserved(through: 8)).changed)
        #expect(state.nextLease == 5 && state.skippedLeases == [3...4] && state.wasSkipped(3) && !state.wasSkipped(2) && !state.wasSkipped(5))
        #expect(state.apply(.leased(unit: 2, lease: 4, worker: "w3")).reason?.contains("below the next lease id") == true)

        let before = state
        let done = state.apply(.done(Samples.done(unit: 2, lease: 3)))
        #expect(done.acknowledgement == .ignored && !done.changed && done.reason?.contains("never journaled") == true)
        #expect(done.deleteFiles == Samples.hooks.map { ClusterWire.shardFileName(unit: 2, lease: 3, hook: $0) })
        let failed = state.apply(.failed(UnitFailed(unit: 2, lease: 4, reason: "oom")))
        #expect(failed.acknowledgement == .ignored && !failed.changed && failed.deleteFiles.isEmpty)
        // A lease that was never reserved at all is still a contradiction.
        #expect(state.apply(.done(Samples.done(unit: 2, lease: 7))).acknowledgement == .rejected)
        #expect(state == before)

        #expect(state.apply(.leased(unit: 2, lease: 5, worker: "w3")).changed)
        #expect(state.apply(.done(Samples.done(unit: 2, lease: 5))).acknowledgement == .accepted)
        // A new block always starts after the previous one, whose unused ids are skipped too.
        #expect(state.apply(.leasesReserved(through: 20)).changed && state.nextLease == 9 && state.skippedLeases == [3...4, 6...8])
        #expect(state.invariantViolation() == nil)
    }

    /// ASSIGN waits only for its id's reservation, so a crash can lose a unit's PLANNED along
    /// with its LEASED. The restarted coordinator has not planned that unit yet when the DONE for
    /// the lost lease arrives: it is still ignored (the id is skipped) and its files deleted, and
    /// the unit is planned and leased again under a new id.
    @Test func aReportForAUnitWhosePlannedWasLostIsIgnored() {
        var state = planned(1)
        #expect(state.apply(.leasesReserved(through: 4)).changed)
        #expect(state.apply(.leased(unit: 0, lease: 1, worker: "w1")).changed)
        // Lost in the crash: PLANNED of unit 1 and its LEASED under id 2. The restart reserves anew.
        #expect(state.apply(.leasesReserved(through: 8)).changed && state.skippedLeases == [2...4])
        #expect(state.active[1] == nil && state.plannedCount == 1)

        let before = state
        let done = state.apply(.done(Samples.done(unit: 1, lease: 2)))
        #expect(done.acknowledgement == .ignored && !done.changed && done.reason?.contains("never journaled") == true)
        #expect(done.deleteFiles == Samples.hooks.map { ClusterWire.shardFileName(unit: 1, lease: 2, hook: $0) })
        let failed = state.apply(.failed(UnitFailed(unit: 1, lease: 2, reason: "oom")))
        #expect(failed.acknowledgement == .ignored && !failed.changed)
        #expect(state == before)

        let plan = UnitPlan(unit: 1, fileIndex: 0, byteRange: 10..<20, firstDocumentID: 1, firstLine: 2, lineCount: 1, textBytes: 9)
        #expect(state.apply(.planned(plan)).changed)
        #expect(state.apply(.leased(unit: 1, lease: 5, worker: "w2")).changed)
        #expect(state.apply(.done(Samples.done(unit: 1, lease: 5))).acknowledgement == .accepted && state.done[1]?.lease == 5)
        #expect(state.invariantViolation() == nil)
    }

    @Test func failuresRequeueAtTheFrontThenPoison() {
        var state = planned(3, maxAttempts: 2)
        _ = state.apply(.leased(unit: 0, lease: 1, worker: "w"))
        let first = state.apply(.failed(UnitFailed(unit: 0, lease: 1, reason: "out of memory")))
        #expect(first.acknowledgement == .accepted && first.requeued == 0 && Array(state.pending) == [0, 1, 2])
        // A release does not count.
        _ = state.apply(.leased(unit: 0, lease: 2, worker: "w"))
        _ = state.apply(.failed(UnitFailed(unit: 0, lease: 2, disposition: .released, reason: "shutting down")))
        #expect(state.active[0]?.failures == ["out of memory"])
        _ = state.apply(.leased(unit: 0, lease: 3, worker: "w"))
        let second = state.apply(.expired(unit: 0, lease: 3))
        #expect(second.poisoned == 0 && second.requeued == nil)
        #expect(state.poisoned[0]?.reasons.count == 2 && state.poisoned[0]?.reasons[0] == "out of memory")
        #expect(state.poisoned[0]?.reasons[1].contains("stopped sending heartbeats") == true)
        #expect(Array(state.pending) == [1, 2])
        // A late DONE for a poisoned unit is ignored and its files go; a repeated FAILED too.
        let late = state.apply(.done(Samples.done(unit: 0, lease: 1)))
        #expect(late.acknowledgement == .ignored && late.deleteFiles.count == 2)
        #expect(state.apply(.failed(UnitFailed(unit: 0, lease: 1, reason: "again"))).acknowledgement == .ignored)
        #expect(state.invariantViolation() == nil)
    }

    @Test func unknownAndContradictoryReportsAreRejected() {
        var state = planned(2)
        _ = state.apply(.leased(unit: 0, lease: 1, worker: "w"))
        let before = state
        for report in [
            Samples.done(unit: 5, lease: 1),  // unknown unit
            Samples.done(unit: 0, lease: 9),  // lease never issued
            Samples.done(unit: 1, lease: 1),  // lease of another unit
            Samples.done(unit: 0, lease: 1, hooks: ["blocks.9.hook_resid_post"]),  // other hooks
            { () -> UnitDone in  // a hook twice, one missing
                var twice = Samples.done(unit: 0, lease: 1)
                twice.shards[1] = twice.shards[0]
                return twice
            }(),
            Samples.done(unit: 0, lease: 1, hooks: [Samples.hooks[1]]),  // a hook missing
        ] {
            let transition = state.apply(.done(report))
            #expect(transition.acknowledgement == .rejected && !transition.changed && transition.deleteFiles.isEmpty)
        }
        #expect(state.apply(.failed(UnitFailed(unit: 1, lease: 1, reason: "x"))).acknowledgement == .rejected)
        #expect(state == before)
        // Widths must agree across units.
        #expect(state.apply(.done(Samples.done(unit: 0, lease: 1, width: 4))).changed)
        _ = state.apply(.leased(unit: 1, lease: 2, worker: "w"))
        let wider = state.apply(.done(Samples.done(unit: 1, lease: 2, width: 5)))
        #expect(wider.acknowledgement == .rejected && wider.reason?.contains("width") == true)
    }

    @Test func planningMustContinueWherePlanningStands() {
        var state = planned(1)
        let next = UnitPlan(unit: 1, fileIndex: 0, byteRange: 10..<20, firstDocumentID: 1, firstLine: 2, lineCount: 1, textBytes: 9)
        var gap = next
        gap.byteRange = 11..<20
        var skipped = next
        skipped.unit = 2
        var otherFile = next
        otherFile.fileIndex = 1
        for plan in [gap, skipped, otherFile] { #expect(!state.apply(.planned(plan)).changed) }
        otherFile.byteRange = 0..<10
        otherFile.firstLine = 1
        var copy = state
        #expect(copy.apply(.planned(otherFile)).changed)  // a new file starts at its beginning
        #expect(state.apply(.planned(next)).changed)
        #expect(!state.apply(.leased(unit: 1, lease: 0, worker: "w")).changed)  // lease ids start at 1
        #expect(state.apply(.leased(unit: 1, lease: 5, worker: "w")).changed)
        #expect(!state.apply(.leased(unit: 0, lease: 5, worker: "w")).changed)  // ids only grow
        #expect(!state.apply(.leased(unit: 1, lease: 6, worker: "w")).changed)  // already leased
        #expect(!state.apply(.completed).changed)
    }

    @Test func manifestListsDoneUnitsInOrder() throws {
        var state = planned(3)
        for (unit, lease) in [(2, 1), (0, 2), (1, 3)] {
            _ = state.apply(.leased(unit: UnitID(UInt64(unit)), lease: LeaseID(UInt64(lease)), worker: "w"))
            _ = state.apply(.done(Samples.done(unit: UnitID(UInt64(unit)), lease: LeaseID(UInt64(lease)))))
        }
        let manifest = state.manifest()
        #expect(manifest.shards.map(\.unit) == [0, 0, 1, 1, 2, 2])
        #expect(manifest.shards[0].file == "unit-00000000.lease-0000000002.blocks.3.hook_resid_post.shard")
        #expect(manifest.shards[0].crc32c == "deadbeef" && manifest.rows == 240)
        #expect(manifest.statistics[Samples.hooks[1]]?.count == 120 && manifest.skipped == ["invalid_utf8": 6, "empty_document": 3])
        #expect(manifest.problem() == nil)
        #expect(manifest.model.configSHA256 == SHA256.hex(Samples.model.configSHA256))
    }
}

/// Random event sequences against the rules: whatever happens, the invariants hold after
/// every step, every unit ends done exactly once or poisoned, no lease outlives its unit,
/// no accepted file is ever deleted, and replaying the applied events gives the same state.
@Suite struct StateProperties {
    @Test(arguments: 0..<40)
    func randomHistories(_ seed: Int) throws {
        var generator = SeededGenerator(seed: UInt64(seed) &* 0x9E37_79B9 &+ 1)
        let maxAttempts = Int.random(in: 1...4, using: &generator)
        var state = CoordinatorState(run: Samples.run(maxAttempts: maxAttempts))
        var applied: [CoordinatorEvent] = []
        var acceptedDone: [UnitID: Int] = [:]
        var deleted: Set<String> = []
        var nextLease: UInt64 = 1
        let units = Int.random(in: 1...12, using: &generator)

        func step(_ event: CoordinatorEvent) {
            let transition = state.apply(event)
            if transition.changed { applied.append(event) }
            if let unit = transition.finishedUnit { acceptedDone[unit, default: 0] += 1 }
            deleted.formUnion(transition.deleteFiles)
            #expect(state.invariantViolation() == nil, "after \(event.kind): \(state.invariantViolation() ?? "")")
        }

        func anyIssuedLease() -> (UnitID, LeaseID)? {
            var all: [(UnitID, LeaseID)] = []
            for (unit, record) in state.active { all += record.leases.map { (unit, $0) } }
            for (unit, record) in state.done { all += ([record.lease] + record.otherLeases).map { (unit, $0) } }
            for (unit, record) in state.poisoned { all += record.leases.map { (unit, $0) } }
            all.sort { $0.1 < $1.1 }
            return all.isEmpty ? nil : all[Int.random(in: 0..<all.count, using: &generator)]
        }

        for _ in 0..<300 {
            switch Int.random(in: 0..<10, using: &generator) {
            case 0 where state.plannedCount < units:
                let index = state.plannedCount
                step(.planned(UnitPlan(
                    unit: state.nextUnit, fileIndex: 0, byteRange: state.planPosition.byteOffset..<(state.planPosition.byteOffset + 10),
                    firstDocumentID: Int64(index), firstLine: index + 1, lineCount: 1, textBytes: 9)))
            case 0 where !state.planningComplete:
                step(.planningFinished)
            case 1, 2:
                if let unit = state.pending.first {
                    step(.leased(unit: unit, lease: LeaseID(nextLease), worker: "w\(nextLease % 3)"))
                    nextLease += 1
                }
            case 3:
                if let (lease, live) = state.leases.randomElement(using: &generator) { step(.expired(unit: live.unit, lease: lease)) }
            case 4:
                if let (unit, lease) = anyIssuedLease() {
                    step(.failed(UnitFailed(unit: unit, lease: lease, disposition: Bool.random(using: &generator) ? .failed : .released, reason: "r")))
                }
            case 5, 6, 7:
                if let (unit, lease) = anyIssuedLease() { step(.done(Samples.done(unit: unit, lease: lease))) }
            case 8:
                // Hostile: unknown units and leases, other hooks.
                let unit = UnitID(UInt64.random(in: 0...20, using: &generator))
                let lease = LeaseID(UInt64.random(in: 1...(nextLease + 3), using: &generator))
                let report = Bool.random(using: &generator) ? Samples.done(unit: unit, lease: lease) : Samples.done(unit: unit, lease: lease, hooks: ["x"])
                let before = state.done[unit]?.lease
                step(.done(report))
                if let before { #expect(state.done[unit]?.lease == before) }
            default:
                step(.completed)
            }
        }
        // Drive to the end: plan the rest, then finish every unit.
        while state.plannedCount < units {
            let index = state.plannedCount
            step(.planned(UnitPlan(
                unit: state.nextUnit, fileIndex: 0, byteRange: state.planPosition.byteOffset..<(state.planPosition.byteOffset + 10),
                firstDocumentID: Int64(index), firstLine: index + 1, lineCount: 1, textBytes: 9)))
        }
        if !state.planningComplete { step(.planningFinished) }
        for (lease, live) in state.leases { step(.done(Samples.done(unit: live.unit, lease: lease))) }
        while let unit = state.pending.first {
            step(.leased(unit: unit, lease: LeaseID(nextLease), worker: "w"))
            step(.done(Samples.done(unit: unit, lease: LeaseID(nextLease))))
            nextLease += 1
        }
        #expect(state.allUnitsFinished)
        if !state.completed { step(.completed) }
        #expect(state.completed)

        // Every unit ends done exactly once, or poisoned.
        for index in 0..<units {
            let unit = UnitID(UInt64(index))
            #expect((state.done[unit] != nil) != (state.poisoned[unit] != nil))
            #expect(acceptedDone[unit, default: 0] == (state.done[unit] != nil ? 1 : 0))
        }
        #expect(state.leases.isEmpty && state.active.isEmpty)
        // No accepted file was ever deleted.
        let kept = Set(state.manifest().shards.map(\.file))
        #expect(kept.isDisjoint(with: deleted))
        #expect(kept.isDisjoint(with: state.strayFiles()))
        #expect(state.rows == state.done.count * 40)

        // The applied events replay to the same state, through a real journal.
        let path = try scratchDirectory("property") + "/j"
        let (_, journal, _) = try CoordinatorState.recover(journalAt: path, run: state.run)
        for (index, event) in applied.enumerated() {
            try journal.append(event)
            if index % 5 == 4 { try journal.sync() }
        }
        try journal.sync()
        journal.close()
        let (replayed, again, _) = try CoordinatorState.recover(journalAt: path, run: state.run)
        again.close()
        #expect(replayed == state)
    }
}
