import ClusterProtocol
import Coordinator
import Corpus
import Foundation
import Glibc
import Monitoring
import Shards
import Testing
import ZeroMQ

@Suite(.serialized) struct CoordinatorLoop {
    /// Two workers drain a corpus; the manifest holds each unit once, in order, with the
    /// corpus's counts, and the journal replays to the same state.
    @Test func runsACorpusToCompletion() throws {
        let directory = try scratchDirectory("complete")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 40, badEvery: 7)
        let run = Fixture.run(corpus: [corpus], out: directory)
        let coordinator = try RunningCoordinator(run: run)
        let context = try ZeroMQContext()
        let workers = try (0..<2).map { try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "w\($0)", directory: directory) }
        var units: [UnitID] = []
        var done = [false, false]
        while done.contains(false) {
            for (index, worker) in workers.enumerated() where !done[index] {
                if let assignment = try worker.work() { units.append(assignment.unit) } else { done[index] = true }
            }
        }
        guard case .completed(let summary) = try coordinator.outcome() else { Issue.record("not completed"); return }
        #expect(Set(units).count == units.count, "a unit was assigned twice: \(units.sorted())")
        #expect(summary.unitsDone == units.count && summary.unitsFailed == 0)

        let manifest = try ShardManifest.read(directory)
        #expect(manifest.shards.map(\.unit) == units.sorted().flatMap { [$0.rawValue, $0.rawValue] })
        #expect(manifest.rows == 2 * (40 - 40 / 7), "one row per good line, per hook")
        #expect(manifest.skipped == ["invalid_utf8": 40 / 7])
        #expect(manifest.failedUnits == [])
        for shard in manifest.shards { #expect(FileManager.default.fileExists(atPath: directory + "/" + shard.file)) }

        // The journal holds the whole run.
        let (state, journal, _) = try CoordinatorState.recover(journalAt: directory + "/" + JournalFormat.defaultFileName, run: run)
        journal.close()
        #expect(state.completed && state.done.count == units.count && state.invariantViolation() == nil)
    }

    /// A worker that goes silent loses its lease; the unit goes to the next worker with
    /// attempt 2. The silent worker's late DONE is then acknowledged as already accepted
    /// (late DONEs are accepted) or ignored, and the unit lands once.
    @Test func silentWorkerLosesItsLease() throws {
        let directory = try scratchDirectory("expiry")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 3)
        let run = Fixture.run(corpus: [corpus], out: directory, unitTokens: 1000)
        let coordinator = try RunningCoordinator(run: run)
        let context = try ZeroMQContext()
        let silent = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "silent", directory: directory)
        try silent.ready()
        let first = try silent.assignment()
        #expect(first.attempt == 1)
        silent.heartbeats = false

        let healthy = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "healthy", directory: directory)
        try healthy.ready()
        let second = try healthy.assignment(timeout: .seconds(5))
        #expect(second.unit == first.unit && second.attempt == 2 && second.lease > first.lease)
        #expect(coordinator.events("lease_expired").count == 1)

        silent.heartbeats = true
        // The silent worker wakes up and reports: its lease expired, but its files are whole,
        // so the coordinator takes them and revokes the healthy worker's lease.
        try silent.send(.done(try silent.finish(first)))
        #expect(try silent.acknowledgement().outcome == .accepted)
        guard case .cancel(let cancel) = try healthy.next() else { Issue.record("no CANCEL for the revoked lease"); return }
        #expect(cancel.lease == second.lease)
        // Its DONE now arrives too late: acknowledged, ignored, files deleted.
        let late = try healthy.finish(second)
        try healthy.send(.done(late))
        #expect(try healthy.acknowledgement().outcome == .ignored)
        try silent.ready()
        try healthy.ready()
        guard case .completed = try coordinator.outcome() else { Issue.record("not completed"); return }
        for shard in late.shards { #expect(!FileManager.default.fileExists(atPath: directory + "/" + shard.file), "stray \(shard.file) kept") }
        let manifest = try ShardManifest.read(directory)
        #expect(manifest.shards.allSatisfy { $0.file.contains(".lease-\(String(repeating: "0", count: 10 - "\(first.lease)".count))\(first.lease).") })
    }

    /// A unit that fails on every attempt is poisoned with each reason, the run still
    /// completes, and the manifest says which lines are missing and why.
    @Test func poisonUnitIsRecordedNotRetriedForever() throws {
        let directory = try scratchDirectory("poison")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 2)
        let run = Fixture.run(corpus: [corpus], out: directory, unitTokens: 1000, maxAttempts: 2)
        let coordinator = try RunningCoordinator(run: run)
        let worker = try ScriptedWorker(try ZeroMQContext(), endpoint: coordinator.endpoint, name: "unlucky", directory: directory)
        for attempt in 1...2 {
            try worker.ready()
            let assignment = try worker.assignment()
            #expect(assignment.attempt == attempt)
            try worker.send(.failed(UnitFailed(unit: assignment.unit, lease: assignment.lease, reason: "out of memory on attempt \(attempt)")))
            #expect(try worker.acknowledgement().outcome == .accepted)
        }
        try worker.ready()
        guard case .completed(let summary) = try coordinator.outcome() else { Issue.record("not completed"); return }
        #expect(summary.unitsFailed == 1 && summary.unitsDone == 0)
        let manifest = try ShardManifest.read(directory)
        #expect(manifest.failedUnits?.first?.reasons == ["out of memory on attempt 1", "out of memory on attempt 2"])
        #expect(manifest.failedUnits?.first?.lineCount == 2 && manifest.failedUnits?.first?.firstLine == 1)
        #expect(coordinator.events("unit_poisoned").count == 1)
    }

    /// DONE whose files are missing is rejected and changes nothing; a resent DONE from the
    /// accepted lease is acknowledged as such.
    @Test func doneIsCheckedAndIdempotent() throws {
        let (coordinator, directory) = try RunningCoordinator.onePerLine("done-checks", documents: 2)
        let worker = try ScriptedWorker(try ZeroMQContext(), endpoint: coordinator.endpoint, name: "w", directory: directory)
        try worker.ready()
        let assignment = try worker.assignment()
        let done = try worker.finish(assignment)
        let missing = directory + "/" + done.shards[0].file
        try FileManager.default.removeItem(atPath: missing)
        try worker.send(.done(done))
        let rejected = try worker.acknowledgement()
        #expect(rejected.outcome == .rejected && rejected.reason?.contains("not in") == true)

        let redone = try worker.finish(assignment)
        try worker.send(.done(redone))
        #expect(try worker.acknowledgement().outcome == .accepted)
        try worker.send(.done(redone))
        #expect(try worker.acknowledgement().outcome == .alreadyAccepted)
        while try worker.work() != nil {}
        guard case .completed(let summary) = try coordinator.outcome() else { Issue.record("not completed"); return }
        #expect(summary.unitsDone == 2)
    }

    /// Garbage of every kind between real messages is dropped and logged; the run completes
    /// with the right result.
    @Test func hostileMessagesAreDropped() throws {
        let directory = try scratchDirectory("hostile")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 12)
        let coordinator = try RunningCoordinator(run: Fixture.run(corpus: [corpus], out: directory))
        let context = try ZeroMQContext()
        let hostile = try context.socket(.dealer)
        try hostile.configure(linger: .zero)
        try hostile.connect(coordinator.endpoint)
        var generator = SystemRandomNumberGenerator()
        let valid = WorkerMessage.done(
            UnitDone(
                unit: 0, lease: 1, shards: [ShardReport(hook: Fixture.hooks[0], file: "x", rows: 1, bytes: 1, crc32c: 0)], statistics: [:], documents: 1,
                windows: 1, rows: 1, tokens: 1)
        ).encode()
        let worker = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "honest", directory: directory)
        var sent = 0
        var finished = false
        while !finished {
            for _ in 0..<500 {
                var frames = valid
                switch sent % 6 {
                case 0: frames = [(0..<Int.random(in: 0...40, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }]
                case 1: frames[0] = Array("ACTW02".utf8)
                case 2: frames[2] = frames[2].map { $0 ^ UInt8.random(in: 1...255, using: &generator) }
                case 3: frames = WorkerMessage.done(Samples.done(unit: 999, lease: 77)).encode()
                case 4: frames = WorkerMessage.failed(UnitFailed(unit: 0, lease: 123_456, reason: "not mine")).encode()
                default: frames = [Array("ACTS01".utf8), [0x21], []]
                }
                try hostile.send(multipart: frames, dontWait: true)
                sent += 1
            }
            finished = try worker.work() == nil
        }
        guard case .completed(let summary) = try coordinator.outcome() else { Issue.record("not completed"); return }
        #expect(sent >= 500)
        #expect(summary.unitsDone >= 1 && summary.unitsFailed == 0)
        let manifest = try ShardManifest.read(directory)
        #expect(manifest.rows == 2 * 12)
        #expect(!coordinator.events("message_rejected").isEmpty)
        hostile.close()
    }

    /// A lease belongs to the connection its ASSIGN went to. From another connection, FAILED
    /// for it gets DISCONNECT (no session there) or a rejection, READY under the holder's name
    /// gets a unit of its own, and HEARTBEAT with the lease does not take it over: the lease
    /// runs on and lands. Once the holder's connection closes, that HEARTBEAT claims the lease,
    /// as a reconnected worker's does, and FAILED from there counts.
    @Test func onlyTheHoldersConnectionSpeaksForALease() throws {
        let (coordinator, directory) = try RunningCoordinator.onePerLine("impersonation", documents: 3) { $0.liveness = 30 }
        let context = try ZeroMQContext()
        let holder = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "holder", directory: directory)
        try holder.ready()
        let held = try holder.assignment()
        let forged = WorkerMessage.failed(UnitFailed(unit: held.unit, lease: held.lease, reason: "forged"))

        let stranger = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "holder", directory: directory)
        stranger.heartbeats = false
        try stranger.send(forged)
        guard case .disconnect = try stranger.next() else { Issue.record("FAILED from a connection without a session should get DISCONNECT"); return }
        try stranger.ready()
        let own = try stranger.assignment()
        #expect(own.unit != held.unit)
        try stranger.send(forged)
        let refused = try stranger.acknowledgement()
        #expect(refused.outcome == .rejected && refused.lease == held.lease)
        try stranger.heartbeat(held)
        try stranger.send(forged)
        #expect(try stranger.acknowledgement().outcome == .rejected, "HEARTBEAT from another connection took the lease over")
        #expect(coordinator.events("message_rejected").contains { $0.contains("HEARTBEAT for lease \(held.lease)") })

        try holder.send(.done(try holder.finish(held)))
        #expect(try holder.acknowledgement().outcome == .accepted)
        try stranger.send(.done(try stranger.finish(own)))
        #expect(try stranger.acknowledgement().outcome == .accepted)
        #expect(coordinator.events("lease_expired").isEmpty && coordinator.events("unit_failed").isEmpty)

        // The holder reconnects: its old connection closes, the new one claims the lease.
        try holder.ready()
        let last = try holder.assignment()
        holder.socket.close()
        let reconnected = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "holder", directory: directory)
        reconnected.heartbeats = false
        try waitFor("the reconnected worker's HEARTBEAT claims its lease") {
            try reconnected.heartbeat(last)
            Thread.sleep(forTimeInterval: 0.05)
            return coordinator.events("worker_joined").contains { $0.contains("busy=true") }
        }
        try reconnected.send(.failed(UnitFailed(unit: last.unit, lease: last.lease, reason: "out of memory")))
        #expect(try reconnected.acknowledgement().outcome == .accepted)
        reconnected.heartbeats = true
        while try reconnected.work() != nil {}
        guard case .completed(let summary) = try coordinator.outcome() else { Issue.record("not completed"); return }
        #expect(summary.unitsDone == 3 && summary.unitsFailed == 0)
        #expect(coordinator.events("unit_failed").count == 1 && coordinator.events("lease_expired").isEmpty)
    }

    /// A drained coordinator restarted on its journal goes on where it stopped; finished
    /// units are not leased again.
    @Test func drainAndResume() throws {
        let directory = try scratchDirectory("resume")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 30)
        let run = Fixture.run(corpus: [corpus], out: directory)
        let context = try ZeroMQContext()

        let first = try RunningCoordinator(run: run)
        let worker = try ScriptedWorker(context, endpoint: first.endpoint, name: "w", directory: directory)
        var before: [UnitID] = []
        for _ in 0..<3 { before.append(try worker.work()!.unit) }
        try worker.ready()
        let held = try worker.assignment()
        first.stop.press()
        guard case .shutdown = try worker.next() else { Issue.record("no SHUTDOWN on drain"); return }
        try worker.send(.done(try worker.finish(held)))
        #expect(try worker.acknowledgement().outcome == .accepted)
        guard case .drained(let drained) = try first.outcome() else { Issue.record("not drained"); return }
        #expect(drained.unitsDone == 4)

        let second = try RunningCoordinator(run: run)
        let again = try ScriptedWorker(context, endpoint: second.endpoint, name: "w2", directory: directory)
        var after: [UnitID] = []
        while let assignment = try again.work() { after.append(assignment.unit) }
        guard case .completed(let summary) = try second.outcome() else { Issue.record("not completed"); return }
        #expect(Set(after).isDisjoint(with: before + [held.unit]), "finished units were leased again")
        #expect(summary.unitsDone == before.count + 1 + after.count)
        #expect(try ShardManifest.read(directory).rows == 2 * 30)
    }

    /// An ASSIGN leaves before its LEASED is durable. After a crash in between, the journal
    /// holds the reservation of the lease id but no LEASED: the restarted coordinator skips the
    /// rest of the old block, acknowledges a DONE for such a lease as ignored and deletes its
    /// files, and collects the unit again under a new lease id.
    @Test func doneForALeaseNeverJournaledIsIgnoredAfterARestart() throws {
        let directory = try scratchDirectory("unjournaled")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 2)
        let run = Fixture.run(corpus: [corpus], out: directory, unitTokens: 8)
        let context = try ZeroMQContext()

        let first = try RunningCoordinator(run: run)
        let worker = try ScriptedWorker(context, endpoint: first.endpoint, name: "w", directory: directory)
        try worker.ready()
        let held = try worker.assignment()
        // Two stop requests: the coordinator releases the lease and stops at once.
        first.stop.press()
        first.stop.press()
        guard case .drained(let drained) = try first.outcome() else { Issue.record("not drained"); return }
        #expect(drained.unitsDone == 0)

        // The lease after `held`: reserved, never journaled, as if its ASSIGN had left just
        // before a crash. Its worker finished the unit.
        var lost = held
        lost.lease = LeaseID(held.lease.rawValue + 1)
        let lostDone = try worker.finish(lost)

        let second = try RunningCoordinator(run: run)
        let again = try ScriptedWorker(context, endpoint: second.endpoint, name: "w", directory: directory)
        try again.send(.done(lostDone))
        let ack = try again.acknowledgement()
        #expect(ack.outcome == .ignored && ack.lease == lost.lease && ack.reason?.contains("never journaled") == true)
        let deadline = ContinuousClock.now + .seconds(5)
        while lostDone.shards.contains(where: { FileManager.default.fileExists(atPath: directory + "/" + $0.file) }), ContinuousClock.now < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        for shard in lostDone.shards { #expect(!FileManager.default.fileExists(atPath: directory + "/" + shard.file), "stray \(shard.file) kept") }

        // A fresh worker: `again` has DISCONNECTs queued for its session-less heartbeats.
        let next = try ScriptedWorker(context, endpoint: second.endpoint, name: "w2", directory: directory)
        var leases: [LeaseID] = []
        while let assignment = try next.work() { leases.append(assignment.lease) }
        guard case .completed(let summary) = try second.outcome() else { Issue.record("not completed"); return }
        #expect(summary.unitsDone == 2 && leases.count == 2)
        let (state, journal, _) = try CoordinatorState.recover(journalAt: directory + "/" + JournalFormat.defaultFileName, run: run)
        journal.close()
        let skipped = try #require(state.skippedLeases.first)
        #expect(state.skippedLeases.count == 1 && skipped.contains(lost.lease.rawValue) && !skipped.contains(held.lease.rawValue))
        #expect(leases.allSatisfy { $0.rawValue > skipped.upperBound }, "a lease id of the old block was issued again: \(leases)")
        #expect(state.done[held.unit]?.lease != lost.lease && state.invariantViolation() == nil)
    }

    /// A worker whose READY says it takes ASSIGN before ACK gets its next unit without waiting
    /// for the journal sync that the ACK of its DONE waits for; any other worker gets the ACK
    /// first, then the ASSIGN.
    @Test func assignAheadOfTheAckOnlyForWorkersThatTakeIt() throws {
        let (coordinator, directory) = try RunningCoordinator.onePerLine("assign-before-ack", documents: 6)
        let context = try ZeroMQContext()
        for takesIt in [true, false] {
            let worker = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "early-\(takesIt)", directory: directory)
            try worker.ready(assignBeforeAck: takesIt)
            let first = try worker.assignment()
            try worker.finishAsking(first)
            let messages = [try worker.next(), try worker.next()].compactMap { $0 }
            #expect(messages.map(\.command) == (takesIt ? [.assign, .ack] : [.ack, .assign]), "worker that takes it: \(takesIt)")
            guard case .assign(let second) = messages.first(where: { $0.command == .assign }) else { Issue.record("no ASSIGN"); return }
            #expect(second.lease > first.lease && second.unit != first.unit)
            try worker.send(.done(try worker.finish(second)))
            #expect(try worker.acknowledgement().outcome == .accepted)
        }
        let last = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "last", directory: directory)
        while try last.work() != nil {}
        guard case .completed(let summary) = try coordinator.outcome() else { Issue.record("not completed"); return }
        #expect(summary.unitsDone == 6 && summary.unitsFailed == 0)
    }

    /// The ACK of a report the worker does not wait for (it carried `ready`, and the next
    /// ASSIGN went ahead) is held for the linger: it leaves right before the worker's next
    /// message, or alone once the linger is over; never before.
    @Test func heldAckLeavesWithTheNextMessage() throws {
        // Far longer than the 300 ms the test watches for an early ACK: the watch starts only
        // once the test has read the ASSIGN, which a loaded host can delay.
        let linger = Duration.seconds(1)
        // A HEARTBEAT to the worker would take the held ACK along: none within the test's waits.
        let (coordinator, directory) = try RunningCoordinator.onePerLine("held-ack", documents: 6) {
            $0.heartbeatInterval = .milliseconds(2500)
            $0.ackLinger = linger
        }
        let context = try ZeroMQContext()
        let worker = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "quick", directory: directory)
        try worker.ready(assignBeforeAck: true)
        let first = try worker.assignment()
        try worker.finishAsking(first)
        let second = try worker.assignment()
        // The first report is durable within milliseconds; its ACK waits.
        #expect(try worker.next(timeout: .milliseconds(300)) == nil, "the ACK did not wait for the linger")

        var done = try worker.finish(second)
        done.ready = true
        let sent = ContinuousClock.now
        try worker.send(.done(done))
        let ack = try worker.acknowledgement()
        #expect(ack.lease == first.lease && ack.outcome == .accepted)
        let third = try worker.assignment()
        #expect(third.lease > second.lease)

        // Nothing else goes to the worker: the second ACK leaves alone when its linger is over.
        let last = try worker.acknowledgement()
        let waited = ContinuousClock.now - sent
        #expect(last.lease == second.lease && last.outcome == .accepted)
        #expect(waited >= linger - .milliseconds(20), "the second ACK came after \(waited), before the linger was over")

        try worker.send(.done(try worker.finish(third)))
        #expect(try worker.acknowledgement().lease == third.lease)
        while try worker.work() != nil {}
        guard case .completed(let summary) = try coordinator.outcome() else { Issue.record("not completed"); return }
        #expect(summary.unitsDone == 6 && summary.unitsFailed == 0)
    }

    /// While no worker waits for a reply (only ACKs that may linger wait for the journal),
    /// commits start `lingeringCommitInterval` apart; a worker that waits for its ACK gets it
    /// after `commitInterval`.
    @Test func commitsWaitLongerWhileNoWorkerWaitsForThem() throws {
        let lingering = Duration.seconds(2)
        // Every commit starts after this; the first one no earlier.
        let created = ContinuousClock.now
        // No HEARTBEAT to the workers within the test's waits: it would take a held ACK along.
        let (coordinator, directory) = try RunningCoordinator.onePerLine("lingering-commits", documents: 6) {
            $0.heartbeatInterval = .seconds(3)
            $0.ackLinger = .milliseconds(20)
            $0.lingeringCommitInterval = lingering
        }
        let context = try ZeroMQContext()

        // Its first ASSIGN waited for the lease ids' commit; its report, made at once, finds
        // that commit just begun, and nothing else waits.
        let quick = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "quick", directory: directory)
        try quick.ready(assignBeforeAck: true)
        let first = try quick.assignment()
        let reported = ContinuousClock.now
        try quick.finishAsking(first)
        let second = try quick.assignment()
        let ack = try quick.acknowledgement()
        let waited = ContinuousClock.now - reported
        #expect(ack.lease == first.lease && ack.outcome == .accepted)
        #expect(ContinuousClock.now - created >= lingering, "the lingering ACK's commit came \(waited) after the report")

        let patient = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "patient", directory: directory)
        try patient.ready(assignBeforeAck: false)
        let its = try patient.assignment()
        let asked = ContinuousClock.now
        try patient.finishAsking(its)
        let reply = try patient.acknowledgement()
        let answered = ContinuousClock.now - asked
        #expect(reply.lease == its.lease && reply.outcome == .accepted)
        #expect(answered < lingering / 2, "a waited-for ACK took \(answered)")
        let after = try patient.assignment()
        #expect(after.lease > its.lease)

        for (worker, assignment) in [(quick, second), (patient, after)] {
            try worker.send(.done(try worker.finish(assignment)))
            #expect(try worker.acknowledgement().lease == assignment.lease)
        }
        let last = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "last", directory: directory)
        while try last.work() != nil {}
        guard case .completed(let summary) = try coordinator.outcome() else { Issue.record("not completed"); return }
        #expect(summary.unitsDone == 6 && summary.unitsFailed == 0)
    }

    /// Held ACKs leave per peer, in order: all of a peer's at once, the oldest peers first once
    /// their linger is over, and a peer's new hold is not taken for its old one.
    @Test func heldAcknowledgementsKeepOrderPerPeer() {
        var held = HeldAcknowledgements<Int>()
        let start = ContinuousClock.now
        let a = RoutingID([1, 2, 3, 4, 5]), b = RoutingID([9])
        func take(_ peer: RoutingID) -> [Int] { held.take(for: peer).map(Array.init) ?? [] }
        func takeExpired(heldSince cutoff: ContinuousClock.Instant) -> [(RoutingID, Int)] {
            var taken: [(RoutingID, Int)] = []
            while let (peer, acks) = held.takeExpired(heldSince: cutoff) { taken += acks.map { (peer, $0) } }
            return taken
        }
        held.hold(1, for: a, now: start)
        held.hold(2, for: b, now: start + .milliseconds(10))
        held.hold(3, for: a, now: start + .milliseconds(20))
        held.hold(5, for: a, now: start + .milliseconds(25))
        #expect(take(a) == [1, 3, 5])
        #expect(take(a) == [])
        held.hold(4, for: a, now: start + .milliseconds(30))
        var expired = takeExpired(heldSince: start + .milliseconds(20))
        #expect(expired.map(\.0) == [b] && expired.map(\.1) == [2])
        expired = takeExpired(heldSince: start + .milliseconds(29))
        #expect(expired.isEmpty && !held.isEmpty)
        held.hold(6, for: a, now: start + .milliseconds(40))
        held.hold(7, for: b, now: start + .milliseconds(40))
        for (peer, acks) in held.takeAll() { expired += acks.map { (peer, $0) } }
        #expect(expired.filter { $0.0 == a }.map(\.1) == [4, 6] && expired.filter { $0.0 == b }.map(\.1) == [7] && held.isEmpty)
    }

    /// A STATUS request gets counts that add up.
    @Test func statusReportsProgress() throws {
        let directory = try scratchDirectory("status")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 20)
        // The lease must outlive the status round trip, which the harness's 300 ms need not.
        let coordinator = try RunningCoordinator({ $0.liveness = 30 }, run: Fixture.run(corpus: [corpus], out: directory), statusBind: "tcp://127.0.0.1:0")
        let context = try ZeroMQContext()
        let worker = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "busy", directory: directory)
        try worker.work()
        try worker.ready()
        let held = try worker.assignment()
        try worker.heartbeat(held)

        let report = try coordinator.status(context)
        #expect(report.unitsDone == 1 && report.unitsLeased == 1)
        #expect(report.unitsDone + report.unitsLeased + report.unitsPending + report.unitsFailed == report.unitsPlanned)
        #expect(report.workers.map(\.name) == ["busy"] && report.workers.first?.lease == held.lease)

        coordinator.stop.press()
        coordinator.stop.press()
        _ = try coordinator.outcome()
    }

    /// Units are planned as workers take them, not all at the start: with no worker the
    /// coordinator plans its lookahead and stops, so its memory does not grow with the corpus.
    @Test func planningKeepsPaceWithTheWorkers() throws {
        let directory = try scratchDirectory("lazy")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 20_000)
        let coordinator = try RunningCoordinator(
            { $0.lookahead = 16 }, run: Fixture.run(corpus: [corpus], out: directory, unitTokens: 8), statusBind: "tcp://127.0.0.1:0")
        let context = try ZeroMQContext()
        try waitFor("the coordinator plans its lookahead") {
            Thread.sleep(forTimeInterval: 0.05)
            return try coordinator.status(context).unitsPlanned >= 16
        }
        Thread.sleep(forTimeInterval: 0.3)
        let idle = try coordinator.status(context)
        #expect(!idle.planningComplete && idle.unitsTotal == nil)
        #expect((16...17).contains(idle.unitsPlanned), "planned \(idle.unitsPlanned) units with no worker, lookahead 16")
        let worker = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "w", directory: directory)
        for _ in 0..<10 { try worker.work() }
        let busy = try coordinator.status(context)
        #expect(busy.unitsDone == 10 && (26...28).contains(busy.unitsPlanned), "planned \(busy.unitsPlanned) after 10 units")
        coordinator.stop.press()
        coordinator.stop.press()
        _ = try coordinator.outcome()
    }

    /// With an allow-list, a client whose key is not on it completes no handshake and gets
    /// no work, while a listed worker runs the corpus to the end.
    @Test func curveAllowListRefusesUnknownKeys() throws {
        let directory = try scratchDirectory("curve")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 6)
        let server = try CurveKeyPair.generate()
        let good = try CurveKeyPair.generate()
        let stranger = try CurveKeyPair.generate()
        let coordinator = try RunningCoordinator(
            { $0.curve = CoordinatorConfiguration.Curve(secretKey: server.secretKey, allowedClientKeys: [good.publicKey]) },
            run: Fixture.run(corpus: [corpus], out: directory))
        let context = try ZeroMQContext()
        let intruder = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "intruder", directory: directory) {
            try $0.makeCurveClient(serverPublicKey: server.publicKey, keyPair: stranger)
        }
        try intruder.ready()
        #expect(try intruder.next(timeout: .milliseconds(700)) == nil, "a refused key got an answer")

        let worker = try ScriptedWorker(context, endpoint: coordinator.endpoint, name: "trusted", directory: directory) {
            try $0.makeCurveClient(serverPublicKey: server.publicKey, keyPair: good)
        }
        while try worker.work() != nil {}
        guard case .completed(let summary) = try coordinator.outcome() else { Issue.record("not completed"); return }
        #expect(summary.unitsDone >= 1)
        #expect(!coordinator.events("peer_refused").isEmpty)
        #expect(coordinator.log.lines.allSatisfy { !$0.contains("worker=intruder") })
    }
}

enum Samples {
    static func done(unit: UnitID, lease: LeaseID) -> UnitDone {
        UnitDone(
            unit: unit, lease: lease,
            shards: Fixture.hooks.map {
                ShardReport(hook: $0, file: ClusterWire.shardFileName(unit: unit.rawValue, lease: lease.rawValue, hook: $0), rows: 1, bytes: 1, crc32c: 0)
            },
            statistics: Dictionary(uniqueKeysWithValues: Fixture.hooks.map { ($0, HookStatistics(count: 1, mean: [0, 0], variance: [0, 0], meanNorm: 0)) }),
            documents: 1, windows: 1, rows: 1, tokens: 1)
    }
}

/// A plain HTTP GET over a real TCP connection: status line and body.
func httpGet(_ address: String, _ path: String) throws -> (status: String, body: String) {
    let parts = address.split(separator: ":")
    let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(socket) }
    var server = sockaddr_in()
    server.sin_family = sa_family_t(AF_INET)
    server.sin_port = UInt16(parts[1])!.bigEndian
    inet_pton(AF_INET, parts[0] == "0.0.0.0" ? "127.0.0.1" : String(parts[0]), &server.sin_addr)
    let connected = withUnsafePointer(to: &server) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard connected == 0 else { throw HarnessError("cannot connect to \(address)") }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: \(address)\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(socket, $0.baseAddress, $0.count, 0) }
    var response: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = buffer.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
        guard count > 0 else { break }
        response += buffer[0..<count]
    }
    let text = String(decoding: response, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { throw HarnessError("no HTTP header end in \(text)") }
    return (String(text[..<split.lowerBound]).components(separatedBy: "\r\n")[0], String(text[split.upperBound...]))
}

@Suite(.serialized) struct CoordinatorMetrics {
    /// Prometheus scrapes over real HTTP see the run's counts.
    @Test func metricsAreServedOverHTTP() throws {
        let directory = try scratchDirectory("metrics")
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: 10)
        let registry = MetricsRegistry()
        let server = try MetricsServer(bind: "127.0.0.1:0", registry: registry)
        defer { server.stop() }
        let coordinator = try RunningCoordinator({ $0.metrics = registry; $0.liveness = 30 }, run: Fixture.run(corpus: [corpus], out: directory))
        let worker = try ScriptedWorker(try ZeroMQContext(), endpoint: coordinator.endpoint, name: "w", directory: directory)
        try worker.work()
        try worker.work()
        // Scrape until a timer pass (every 100 ms) has published both units. The worker
        // heartbeats meanwhile, as an idle worker does: a fixed sleep raced its liveness
        // period on a slow host, and the scrape then found no live worker.
        var lines: [String] = []
        var body = ""
        let deadline = ContinuousClock.now + .seconds(10)
        repeat {
            try worker.heartbeat(nil)
            Thread.sleep(forTimeInterval: 0.05)
            let (status, text) = try httpGet(server.address, "/metrics")
            #expect(status == "HTTP/1.1 200 OK")
            body = text
            lines = body.split(separator: "\n").map(String.init)
        } while !(lines.contains("actcluster_units_done 2") && lines.contains("actcluster_workers_alive 1")) && ContinuousClock.now < deadline
        #expect(lines.contains("actcluster_units_done 2"), "\(body)")
        #expect(lines.contains("actcluster_workers_alive 1"), "\(body)")
        #expect(lines.contains("# TYPE actcluster_tokens_collected_total counter"))
        #expect(lines.contains { $0.hasPrefix("actcluster_tokens_collected_total ") && $0 != "actcluster_tokens_collected_total 0" })
        #expect(try httpGet(server.address, "/other").status == "HTTP/1.1 404 Not Found")
        while try worker.work() != nil {}
        _ = try coordinator.outcome()
    }
}
