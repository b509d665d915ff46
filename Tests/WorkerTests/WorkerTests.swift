import ClusterProtocol
import Collection
import Foundation
import Platform
import Shards
import Testing
import Tokenizers
import Transformers
import Worker
import ZeroMQ

/// The real worker against a scripted coordinator over tcp://127.0.0.1, with the real model.
@Suite(.serialized, .enabled(if: hasTestModel, skipMessage))
struct WorkerConversationTests {
    /// What `actcluster collect` writes for the same lines: the reference the worker must match.
    private func directCollect(_ assignment: Assignment, model path: String) throws -> (UnitResult, [String: ShardRows]) {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let model = try TransformerModel(directory: path)
        let tokenizer = try Tokenizer(contentsOfFile: path + "/tokenizer.json")
        var settings = CollectionSettings(hooks: assignment.settings.hooks)
        settings.context = assignment.settings.context
        settings.dtype = assignment.settings.dtype
        settings.batchWindows = assignment.settings.batchWindows
        settings.blockRows = assignment.settings.blockRows
        let collector = try ActivationCollector(model: model, tokenizer: tokenizer, settings: settings, modelName: "all-MiniLM-L6-v2", logger: LogRecorder().logger)
        let result = try collector.collect(unit: assignment.unit.rawValue, lines: assignment.corpusLines, into: directory)
        var rows: [String: ShardRows] = [:]
        for shard in result.shards { rows[shard.header.hook] = try ShardReader(path: shard.path).readAll() }
        return (result, rows)
    }

    @Test func collectsAUnitHeartbeatsReportsUntilAcknowledgedAndStreamsTheSameRows() throws {
        let model = try #require(testModel)
        let sha = try configSHA256(model)
        let output = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: output) }
        let coordinator = try FakeCoordinator()
        let trainer = try coordinator.context.socket(.pull)
        try trainer.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.trainerMaxMessageBytes)
        let trainerEndpoint = try trainer.bind("tcp://127.0.0.1:0")
        let unit = assignment(
            unit: 7, lease: 42, lines: unitLines(count: 60), model: model, sha: sha, output: output, trainer: trainerEndpoint)
        // The reference first: while the test computes, it cannot answer the worker.
        let (reference, referenceRows) = try directCollect(unit, model: model)
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))

        guard case (_, .ready(let ready)) = try coordinator.receive() else { Issue.record("expected READY first"); return }
        #expect(ready.worker == "test-worker" && ready.threads == 1 && ready.software == "test" && ready.loadedModelSHA256 == nil)

        // Garbage from the coordinator's side is logged and dropped; the worker goes on.
        try coordinator.sendRaw([Array("ACTW01".utf8), [0x02], [1, 2, 3]])
        try coordinator.sendRaw([[0xFF], [0x00]])

        try coordinator.send(.assign(unit))
        let (message, heartbeats) = try coordinator.receiveSkippingHeartbeats()
        guard case .done(let done) = message else { Issue.record("expected DONE, got \(message.command)"); return }
        let leased = heartbeats.filter { $0.lease == 42 && $0.unit == 7 }
        #expect(!leased.isEmpty, "no HEARTBEAT with the lease while computing")
        let progress = leased.compactMap(\.tokens)
        #expect(progress == progress.sorted(), "tokens so far only grow: \(progress)")

        // DONE: files exist under the lease's names with the reported size and CRC, and hold
        // exactly the rows of a direct collection of the same lines.
        #expect(done.unit == 7 && done.lease == 42)
        #expect(done.ready, "a worker asks for its next unit with its DONE")
        #expect(done.rows == reference.rows && done.tokens == reference.tokens && done.windows == reference.windows)
        #expect(done.documents == 60 && done.skipped == ["invalid_json": 1])
        #expect(done.shards.map(\.hook) == unit.settings.hooks)
        for shard in done.shards {
            #expect(shard.file == ClusterWire.shardFileName(unit: 7, lease: 42, hook: shard.hook))
            let bytes = try readFile(output + "/" + shard.file)
            #expect(bytes.count == shard.bytes)
            #expect(CRC32C.checksum(bytes) == shard.crc32c)
            let rows = try ShardReader(path: output + "/" + shard.file).readAll()
            let expected = try #require(referenceRows[shard.hook])
            #expect(rows.activations == expected.activations, "activations of \(shard.hook) differ from a direct collection")
            #expect(rows.tokens == expected.tokens && rows.documents == expected.documents && rows.positions == expected.positions)
            #expect(rows.windows == expected.windows, "window ids must be unit << 32 | index, as in actcluster collect")
            #expect(rows.windows.first == 7 << 32)
            #expect(done.statistics[shard.hook] == HookStatistics(reference.statistics[shard.hook]!))
        }

        // No ACK: the DONE comes again within a liveness period or two.
        let (again, _) = try coordinator.receiveSkippingHeartbeats(timeout: .seconds(5))
        #expect(again == .done(done))
        try coordinator.send(.ack(Acknowledgement(unit: 7, lease: 42, outcome: .accepted)))
        // Resends queued before the ACK arrived may come first; each is the same DONE.
        // The DONE asked for the next unit already: no READY follows the ACK.
        let afterAck = try coordinator.messagesBesidesHeartbeats(within: .seconds(1))
        #expect(afterAck.allSatisfy { $0 == .done(done) }, "only resends of the DONE may follow its ACK, got \(afterAck.map(\.command))")
        #expect(afterAck.count <= 2, "DONE keeps coming after ACK")
        // An idle worker told DISCONNECT sends READY, with the model it has loaded.
        try coordinator.send(.disconnect(reason: "the coordinator restarted"))
        let (readyMessage, _) = try coordinator.receiveSkippingHeartbeats()
        guard case .ready(let readyAgain) = readyMessage else { Issue.record("expected READY after DISCONNECT, got \(readyMessage.command)"); return }
        #expect(readyAgain.loadedModelSHA256 == sha)

        // BATCH: per hook, sequences 0, 1, … with `final` on the last, holding the shard's rows.
        var batches: [String: [ActivationBatch]] = [:]
        let clock = ContinuousClock()
        var lastBatch = clock.now
        while clock.now - lastBatch < .seconds(2) {
            try coordinator.tick()
            guard let frames = try trainer.receiveMultipart(timeout: .milliseconds(20)) else { continue }
            lastBatch = clock.now
            let batch = try ActivationBatch.decode(frames: frames.map(\.bytes))
            batches[batch.header.hook, default: []].append(batch)
            if batches.values.allSatisfy({ $0.last?.header.final == true }) && batches.count == 2 { break }
        }
        #expect(batches.keys.sorted() == unit.settings.hooks.sorted())
        for (hook, list) in batches {
            #expect(list.map(\.header.sequence) == Array(0..<list.count))
            #expect(list.map(\.header.final) == Array(repeating: false, count: list.count - 1) + [true])
            #expect(list.allSatisfy { $0.header.run == 1 && $0.header.unit == 7 && $0.header.lease == 42 && $0.header.worker == "test-worker" })
            var streamed = ShardRows(width: list[0].header.width)
            for batch in list {
                let rows = try batch.rows()
                #expect(batch.header.statistics?.count == rows.count)
                streamed.append(rows)
            }
            let shard = try ShardReader(path: output + "/" + ClusterWire.shardFileName(unit: 7, lease: 42, hook: hook)).readAll()
            #expect(streamed.activations == shard.activations && streamed.tokens == shard.tokens && streamed.windows == shard.windows)
            #expect(streamed.documents == shard.documents && streamed.positions == shard.positions)
        }

        try coordinator.send(.shutdown(reason: "all units are done"))
        let exit = try #require(worker.waitForExit(), "the worker did not exit after SHUTDOWN")
        #expect(throws: Never.self) { try exit.get() }
        #expect(worker.log.events("message_rejected").count == 2)
        for event in ["worker_started", "unit_started", "unit_done", "worker_stopped"] {
            #expect(worker.log.events(event).count == 1, "expected one \(event)")
        }
    }

    @Test func cancelStopsTheComputationDeletesTheLeaseFilesAndAsksForMore() throws {
        let model = try #require(testModel)
        let output = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: output) }
        let coordinator = try FakeCoordinator()
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        guard case (_, .ready) = try coordinator.receive() else { Issue.record("expected READY"); return }

        let unit = assignment(unit: 3, lease: 9, lines: unitLines(count: 2000, words: 30), model: model, sha: try configSHA256(model), output: output, batchWindows: 1)
        try coordinator.send(.assign(unit))
        // Wait until rows are being written, then take the lease away.
        while true {
            let (_, message) = try coordinator.receive()
            if case .heartbeat(let heartbeat) = message, let tokens = heartbeat.tokens, tokens > 0 { break }
            if case .done = message { Issue.record("the unit finished before CANCEL; make it larger"); return }
        }
        try coordinator.send(.cancel(Cancel(unit: 3, lease: 9, reason: "expired")))
        let (next, _) = try coordinator.receiveSkippingHeartbeats()
        #expect(next.command == .ready, "expected READY after CANCEL, got \(next.command)")
        #expect(try leaseFiles(output, unit: 3, lease: 9) == [])
        #expect(worker.log.events("unit_cancelled").count == 1)

        try coordinator.send(.shutdown(reason: "done"))
        let exit = try #require(worker.waitForExit())
        #expect(throws: Never.self) { try exit.get() }
    }

    @Test func aModelWithAnotherDigestIsReleasedAndEndsTheWorkerWithBothDigests() throws {
        let model = try #require(testModel)
        let sha = try configSHA256(model)
        let output = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: output) }
        let coordinator = try FakeCoordinator()
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        guard case (_, .ready) = try coordinator.receive() else { Issue.record("expected READY"); return }

        let expected = [UInt8](repeating: 0xAB, count: 32)
        try coordinator.send(.assign(assignment(unit: 5, lease: 11, lines: unitLines(count: 3), model: model, sha: expected, output: output)))
        let (message, _) = try coordinator.receiveSkippingHeartbeats()
        guard case .failed(let failed) = message else { Issue.record("expected FAILED, got \(message.command)"); return }
        #expect(failed.unit == 5 && failed.lease == 11 && failed.disposition == .released)
        #expect(failed.reason.contains(SHA256.hex(expected)) && failed.reason.contains(SHA256.hex(sha)))
        try coordinator.send(.ack(Acknowledgement(unit: 5, lease: 11, outcome: .accepted)))
        let exit = try #require(worker.waitForExit())
        #expect(throws: WorkerError.modelMismatch(path: model, expected: expected, found: sha)) { try exit.get() }
        #expect(try leaseFiles(output, unit: 5, lease: 11) == [])
    }

    @Test func aStopRequestFinishesTheUnitReportsItAndExitsWithoutReady() throws {
        let model = try #require(testModel)
        let output = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: output) }
        let coordinator = try FakeCoordinator()
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        guard case (_, .ready) = try coordinator.receive() else { Issue.record("expected READY"); return }
        try coordinator.send(.assign(assignment(unit: 2, lease: 4, lines: unitLines(count: 20), model: model, sha: try configSHA256(model), output: output)))
        guard case (_, .heartbeat) = try coordinator.receive() else { Issue.record("expected HEARTBEAT"); return }
        worker.worker.requestStop()
        let (message, _) = try coordinator.receiveSkippingHeartbeats()
        guard case .done(let done) = message else { Issue.record("expected DONE, got \(message.command)"); return }
        #expect(!done.ready, "a stopping worker does not ask for more")
        try coordinator.send(.ack(Acknowledgement(unit: 2, lease: 4, outcome: .accepted)))
        let exit = try #require(worker.waitForExit())
        #expect(throws: Never.self) { try exit.get() }
        // Nothing but heartbeats may follow: no READY.
        coordinator.keepAlive = false
        while let frames = try coordinator.router.receiveMultipart(timeout: .milliseconds(300)) {
            let (_, body) = try Envelope.split(frames.map(\.bytes))
            #expect(try WorkerMessage.decode(frames: body).command == .heartbeat)
        }
    }
}

extension WorkerConversationTests {
    @Test func aWorkerThatAskedForMoreAndThenStopsGivesBackTheNextUnit() throws {
        let model = try #require(testModel)
        let sha = try configSHA256(model)
        let output = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: output) }
        let coordinator = try FakeCoordinator()
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        guard case (_, .ready) = try coordinator.receive() else { Issue.record("expected READY"); return }
        try coordinator.send(.assign(assignment(unit: 2, lease: 4, lines: unitLines(count: 5), model: model, sha: sha, output: output)))
        let (message, _) = try coordinator.receiveSkippingHeartbeats()
        guard case .done(let done) = message else { Issue.record("expected DONE, got \(message.command)"); return }
        #expect(done.ready)
        // The stop comes after the DONE asked for more: the next ASSIGN is already on its way.
        worker.worker.requestStop()
        try coordinator.send(.ack(Acknowledgement(unit: 2, lease: 4, outcome: .accepted)))
        try coordinator.send(.assign(assignment(unit: 3, lease: 5, lines: unitLines(count: 5), model: model, sha: sha, output: output)))
        var given: UnitFailed?
        while given == nil {
            let (next, _) = try coordinator.receiveSkippingHeartbeats()
            if case .failed(let failed) = next { given = failed } else { #expect(next == .done(done), "got \(next.command)") }
        }
        #expect(given?.unit == 3 && given?.lease == 5 && given?.disposition == .released, "the unit comes back uncounted")
        let exit = try #require(worker.waitForExit())
        #expect(throws: Never.self) { try exit.get() }
        #expect(try leaseFiles(output, unit: 3, lease: 5) == [])
    }
}

extension WorkerConversationTests {
    /// The ASSIGN that answers a DONE's `ready` may come before that DONE's ACK (READY says the
    /// worker takes it): the worker computes the new unit and keeps sending the old DONE until
    /// its ACK arrives.
    @Test func anAssignAheadOfTheAckIsTakenAndTheReportKeptUntilItsAck() throws {
        let model = try #require(testModel)
        let sha = try configSHA256(model)
        let output = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: output) }
        let coordinator = try FakeCoordinator()
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        guard case (_, .ready(let ready)) = try coordinator.receive() else { Issue.record("expected READY"); return }
        #expect(ready.assignBeforeAck)
        try coordinator.send(.assign(assignment(unit: 2, lease: 4, lines: unitLines(count: 5), model: model, sha: sha, output: output)))
        let (message, _) = try coordinator.receiveSkippingHeartbeats()
        guard case .done(let first) = message, first.ready else { Issue.record("expected DONE with ready, got \(message.command)"); return }

        try coordinator.send(.assign(assignment(unit: 3, lease: 5, lines: unitLines(count: 5), model: model, sha: sha, output: output)))
        var second: UnitDone?
        var heartbeatsOfTheNewLease = 0
        while second == nil {
            let (next, heartbeats) = try coordinator.receiveSkippingHeartbeats()
            heartbeatsOfTheNewLease += heartbeats.filter { $0.lease == 5 && $0.unit == 3 }.count
            guard case .done(let done) = next else { Issue.record("expected DONE, got \(next.command)"); return }
            if done.lease == 5 { second = done } else { #expect(done == first, "only the first DONE may come again") }
        }
        #expect(second?.unit == 3 && second?.ready == true && heartbeatsOfTheNewLease > 0)
        #expect(worker.log.events("message_rejected").isEmpty, "the early ASSIGN was refused")
        // Neither DONE is acknowledged: both come again.
        var resent: Set<LeaseID> = []
        while resent != [4, 5] {
            let (next, _) = try coordinator.receiveSkippingHeartbeats(timeout: .seconds(5))
            guard case .done(let done) = next else { Issue.record("expected DONE, got \(next.command)"); return }
            resent.insert(done.lease)
        }
        try coordinator.send(.ack(Acknowledgement(unit: 2, lease: 4, outcome: .accepted)))
        try coordinator.send(.ack(Acknowledgement(unit: 3, lease: 5, outcome: .accepted)))
        // Resends already on their way may still come; then nothing (no READY: both asked with `ready`).
        _ = try coordinator.messagesBesidesHeartbeats(within: .milliseconds(400))
        let later = try coordinator.messagesBesidesHeartbeats(within: .seconds(1))
        #expect(later.isEmpty, "after both ACKs the worker sent \(later.map(\.command))")
        #expect(worker.log.events("report_acknowledged").count == 2)
        try coordinator.send(.shutdown(reason: "all units are done"))
        let exit = try #require(worker.waitForExit(), "the worker did not exit after SHUTDOWN")
        #expect(throws: Never.self) { try exit.get() }
    }
}

/// Leaving mid-unit, reconnecting with a report, and streaming to a trainer that is not there.
@Suite(.serialized, .enabled(if: hasTestModel, skipMessage))
struct WorkerRecoveryTests {
    @Test func aSecondStopRequestReleasesTheUnitDeletesItsFilesAndExits() throws {
        let model = try #require(testModel)
        let output = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: output) }
        let coordinator = try FakeCoordinator()
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        guard case (_, .ready) = try coordinator.receive() else { Issue.record("expected READY"); return }
        let unit = assignment(unit: 8, lease: 21, lines: unitLines(count: 2000, words: 30), model: model, sha: try configSHA256(model), output: output, batchWindows: 1)
        try coordinator.send(.assign(unit))
        while true {
            let (_, message) = try coordinator.receive()
            if case .heartbeat(let heartbeat) = message, let tokens = heartbeat.tokens, tokens > 0 { break }
            if message.command != .heartbeat { Issue.record("expected heartbeats while computing, got \(message.command)"); return }
        }
        // A second ASSIGN while busy is given back untouched.
        try coordinator.send(.assign(assignment(unit: 9, lease: 22, lines: unitLines(count: 2), model: model, sha: try configSHA256(model), output: output)))
        let (refused, _) = try coordinator.receiveSkippingHeartbeats()
        guard case .failed(let busy) = refused else { Issue.record("expected FAILED for the second lease, got \(refused.command)"); return }
        #expect(busy.lease == 22 && busy.disposition == .released)

        worker.worker.requestStop()
        worker.worker.requestStop()
        let (message, _) = try coordinator.receiveSkippingHeartbeats()
        guard case .failed(let failed) = message else { Issue.record("expected FAILED, got \(message.command)"); return }
        #expect(failed.unit == 8 && failed.lease == 21 && failed.disposition == .released)
        #expect(try leaseFiles(output, unit: 8, lease: 21) == [])
        try coordinator.send(.ack(Acknowledgement(unit: 8, lease: 21, outcome: .accepted)))
        let exit = try #require(worker.waitForExit())
        #expect(throws: Never.self) { try exit.get() }
    }

    @Test func anUnacknowledgedDoneIsSentAgainOnTheNewConnectionAfterSilence() throws {
        let model = try #require(testModel)
        let output = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: output) }
        let coordinator = try FakeCoordinator()
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        guard case (_, .ready) = try coordinator.receive() else { Issue.record("expected READY"); return }
        try coordinator.send(.assign(assignment(unit: 4, lease: 6, lines: unitLines(count: 10), model: model, sha: try configSHA256(model), output: output)))
        let (message, _) = try coordinator.receiveSkippingHeartbeats()
        guard case .done(let done) = message, let first = coordinator.peer else { Issue.record("expected DONE, got \(message.command)"); return }
        // The coordinator falls silent: the worker reconnects, heartbeats its lease and resends DONE.
        coordinator.keepAlive = false
        var resentFromNewSocket = false
        while !resentFromNewSocket {
            let (envelope, next) = try coordinator.receive(timeout: .seconds(20))
            if envelope != first, next == .done(done) { resentFromNewSocket = true }
            #expect(next.command != .ready, "no READY while a DONE waits for its ACK")
        }
        #expect(worker.log.events("coordinator_lost").count >= 1)
        coordinator.keepAlive = true
        try coordinator.send(.ack(Acknowledgement(unit: 4, lease: 6, outcome: .alreadyAccepted)))
        // The worker may be between connections (in its reconnect pause) and miss what goes to
        // the old one: repeat SHUTDOWN to its newest connection until it stops.
        let deadline = ContinuousClock.now + patience
        while worker.exit == nil, ContinuousClock.now < deadline {
            try coordinator.send(.shutdown(reason: "done"))
            _ = try coordinator.messagesBesidesHeartbeats(within: .milliseconds(300))
        }
        #expect(worker.exit != nil)
    }

    @Test func theDropPolicyDropsBatchesATrainerCannotTakeAndStillFinishesTheUnit() throws {
        let model = try #require(testModel)
        let output = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: output) }
        let coordinator = try FakeCoordinator()
        var configuration = workerConfiguration(coordinator.endpoint)
        configuration.streamPolicy = .drop
        configuration.streamHighWaterMark = 1
        let worker = try RunningWorker(configuration)
        guard case (_, .ready) = try coordinator.receive() else { Issue.record("expected READY"); return }
        // Nobody listens at the trainer endpoint.
        let unit = assignment(
            unit: 1, lease: 2, lines: unitLines(count: 40), model: model, sha: try configSHA256(model), output: output,
            trainer: "tcp://127.0.0.1:1", batchWindows: 2)
        try coordinator.send(.assign(unit))
        let (message, _) = try coordinator.receiveSkippingHeartbeats()
        #expect(message.command == .done)
        let drops = worker.log.events("batch_dropped")
        #expect(!drops.isEmpty, "with nobody pulling, batches beyond the high-water mark are dropped")
        #expect(drops.allSatisfy { $0.metadata["unit.id"] == "1" && $0.metadata["batches.dropped"] != nil })
        try coordinator.send(.ack(Acknowledgement(unit: 1, lease: 2, outcome: .accepted)))
        try coordinator.send(.shutdown(reason: "done"))
        #expect(worker.waitForExit() != nil)
    }
}

/// Without MiniLM: reconnects after silence, DISCONNECT, CURVE, and a tiny model broken to give NaN.
@Suite struct WorkerWithoutMiniLMTests {
    @Test func aSilentCoordinatorIsLeftAndReconnectedToWithReady() throws {
        let coordinator = try FakeCoordinator()
        coordinator.keepAlive = false
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        let (first, message) = try coordinator.receive()
        #expect(message.command == .ready)
        // Silence: after 5 × 100 ms the worker drops its socket and comes back with a new one.
        var second: Envelope?
        while second == nil {
            let (envelope, next) = try coordinator.receive(timeout: .seconds(10))
            if next.command == .ready { second = envelope }
        }
        #expect(second != first, "a reconnect opens a new socket, so the coordinator sees a new routing id")
        #expect(worker.log.events("coordinator_lost").count >= 1)
        #expect(worker.log.events("reconnecting").count >= 1)
        try coordinator.send(.shutdown(reason: "done"))
        let exit = try #require(worker.waitForExit())
        #expect(throws: Never.self) { try exit.get() }
    }

    @Test func curveEncryptsTheConnectionWithTheServersPublicKey() throws {
        let server = try CurveKeyPair.generate()
        let coordinator = try FakeCoordinator(curveSecretKey: server.secretKey)
        var configuration = workerConfiguration(coordinator.endpoint, name: "curve-worker")
        configuration.curve = WorkerCurveKeys(serverPublicKey: server.publicKey, keyPair: try CurveKeyPair.generate())
        let worker = try RunningWorker(configuration)
        guard case (_, .ready(let ready)) = try coordinator.receive(timeout: .seconds(10)) else { Issue.record("expected READY"); return }
        #expect(ready.worker == "curve-worker")
        try coordinator.send(.shutdown(reason: "done"))
        #expect(worker.waitForExit() != nil)

        // A worker with the wrong server key gets nothing through.
        let stranger = try CurveKeyPair.generate()
        configuration.curve = WorkerCurveKeys(serverPublicKey: stranger.publicKey, keyPair: try CurveKeyPair.generate())
        let locked = try RunningWorker(configuration)
        #expect(try coordinator.router.receiveMultipart(timeout: .milliseconds(500)) == nil)
        locked.worker.requestStop()
        #expect(locked.waitForExit() != nil)
    }

    @Test func activationsThatAreNotFiniteFailTheUnitAndLeaveNoFiles() throws {
        let scratch = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let model = try brokenTinyBERT(in: scratch)
        let output = scratch + "/shards"
        let coordinator = try FakeCoordinator()
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        guard case (_, .ready) = try coordinator.receive() else { Issue.record("expected READY"); return }
        try coordinator.send(
            .assign(
                assignment(
                    unit: 12, lease: 13, lines: unitLines(count: 5), model: model, sha: try configSHA256(model), output: output,
                    hooks: ["blocks.1.hook_resid_post"])))
        let (message, _) = try coordinator.receiveSkippingHeartbeats()
        guard case .failed(let failed) = message else { Issue.record("expected FAILED, got \(message.command)"); return }
        #expect(failed.unit == 12 && failed.lease == 13 && failed.disposition == .failed)
        #expect(failed.reason.contains("not finite"), "\(failed.reason)")
        #expect(failed.ready, "a worker asks for its next unit with its FAILED")
        #expect(try leaseFiles(output, unit: 12, lease: 13) == [])
        #expect(worker.log.events("unit_failed").count == 1)
        try coordinator.send(.ack(Acknowledgement(unit: 12, lease: 13, outcome: .accepted)))
        #expect(try coordinator.messagesBesidesHeartbeats(within: .milliseconds(500)).allSatisfy { $0.command == .failed })
        try coordinator.send(.shutdown(reason: "done"))
        #expect(worker.waitForExit() != nil)
    }

    @Test func anIdleWorkerAnswersDisconnectWithReadyAndStopsOnRequest() throws {
        let coordinator = try FakeCoordinator()
        let worker = try RunningWorker(workerConfiguration(coordinator.endpoint))
        guard case (_, .ready) = try coordinator.receive() else { Issue.record("expected READY"); return }
        try coordinator.send(.disconnect(reason: "the coordinator restarted"))
        let (message, _) = try coordinator.receiveSkippingHeartbeats()
        #expect(message.command == .ready)
        worker.worker.requestStop()
        let exit = try #require(worker.waitForExit())
        #expect(throws: Never.self) { try exit.get() }
        #expect(worker.log.events("worker_stopped").count == 1)
    }
}
