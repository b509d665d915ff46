import ClusterProtocol
import Corpus
import Shards
import Testing

private func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Decodes, expecting a ProtocolError of `kind`; returns it.
@discardableResult
func expectRefusal(_ kind: ProtocolError.Kind, _ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> ProtocolError? {
    do {
        try body()
        Issue.record("decoded, expected a \(kind) refusal", sourceLocation: sourceLocation)
        return nil
    } catch let error as ProtocolError {
        #expect(error.kind == kind, "\(error)", sourceLocation: sourceLocation)
        return error
    } catch {
        Issue.record("expected a ProtocolError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Rewrites a uint field's value in a control body (the first field with `tag`).
private func patchUInt(_ body: [UInt8], tag: ClusterWire.Tag, _ value: UInt64) -> [UInt8] {
    var body = body
    var offset = 0
    while offset + 6 <= body.count {
        let length = Int(body[offset + 2]) | Int(body[offset + 3]) << 8 | Int(body[offset + 4]) << 16 | Int(body[offset + 5]) << 24
        if body[offset] == tag.rawValue {
            for index in 0..<8 { body[offset + 6 + index] = UInt8(truncatingIfNeeded: value >> (8 * index)) }
            return body
        }
        offset += 6 + length
    }
    Issue.record("no field \(tag)")
    return body
}

@Suite struct RoundTrips {
    @Test func everyWorkerMessage() throws {
        for message in Samples.workerMessages {
            let frames = message.encode()
            #expect(frames[0] == bytes("ACTW01"))
            #expect(frames[1] == [message.command.rawValue])
            #expect(try WorkerMessage.decode(frames: frames) == message)
        }
    }

    /// Known hook names are taken as they are; the message decodes the same with or without
    /// them, whether its hooks are among them or not.
    @Test func knownHooksChangeNothing() throws {
        var hooks: [String] = []
        for case .done(let done) in Samples.workerMessages { hooks += done.shards.map(\.hook) }
        #expect(!hooks.isEmpty)
        for message in Samples.workerMessages {
            let frames = message.encode()
            #expect(try WorkerMessage.decode(frames: frames, knownHooks: hooks) == message)
            #expect(try WorkerMessage.decode(frames: frames, knownHooks: ["blocks.9.hook_mlp_out", "x"]) == message)
            if case .done(let done) = message, let hook = done.shards.first?.hook {
                // A known name is no excuse to skip the other checks: statistics for a known
                // hook that has no shard in the report are still refused.
                let other = hook + "-other"
                var renamed = done
                renamed.statistics[other] = renamed.statistics.removeValue(forKey: hook)
                expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(renamed).encode(), knownHooks: hooks + [other]) }
            }
        }
    }

    /// ACKs encoded into one reused set of frames, long reasons before short ones and back,
    /// are byte for byte the ACKs `encode()` makes, and decode to themselves.
    @Test func acksEncodedIntoReusedFrames() throws {
        var acks: [Acknowledgement] = []
        for case .ack(let ack) in Samples.coordinatorMessages { acks.append(ack) }
        #expect(acks.count >= 3)
        var frames: [[UInt8]] = []
        for ack in acks + acks.reversed() {
            CoordinatorMessage.encodeAck(ack, into: &frames)
            #expect(frames == CoordinatorMessage.ack(ack).encode())
            #expect(try CoordinatorMessage.decode(frames: frames) == .ack(ack))
        }
    }

    @Test func everyCoordinatorMessage() throws {
        for message in Samples.coordinatorMessages {
            let frames = message.encode()
            #expect(frames[0] == bytes("ACTW01"))
            #expect(frames.count == (message.command == .assign ? 5 : 3))
            #expect(try CoordinatorMessage.decode(frames: frames) == message)
        }
    }

    @Test func everyStatusMessage() throws {
        for message in Samples.statusMessages {
            let frames = message.encode()
            #expect(frames[0] == bytes("ACTS01"))
            #expect(try StatusMessage.decode(frames: frames) == message)
        }
    }

    @Test(arguments: ShardDType.allCases)
    func activationBatch(_ dtype: ShardDType) throws {
        let batch = try Samples.batch(dtype: dtype)
        let frames = batch.encode()
        #expect(frames.count == 4)
        #expect(frames[0] == bytes("ACTB01"))
        let decoded = try ActivationBatch.decode(frames: frames)
        #expect(decoded == batch)
        let rows = try decoded.rows()
        let original = Samples.batchRows(rows: 37, width: 12)
        #expect(rows.tokens == original.tokens && rows.documents == original.documents)
        #expect(rows.windows == original.windows && rows.positions == original.positions)
        let expected: [Float] =
            switch dtype {
            case .fp32: original.activations
            case .bf16: FloatConversion.floats(fromBFloat16: FloatConversion.bfloat16(original.activations))
            case .fp16: FloatConversion.floats(fromFloat16: FloatConversion.float16(original.activations))
            }
        #expect(rows.activations == expected)
    }

    @Test func emptyBatch() throws {
        let batch = try Samples.batch(dtype: .bf16, rows: 0)
        let decoded = try ActivationBatch.decode(frames: batch.encode())
        #expect(try decoded.rows().count == 0)
        #expect(decoded.header.statistics == nil)
    }

    @Test func assignWithSettingsEncodedOnceIsTheSameMessage() throws {
        let assignment = Samples.assignment
        let frames = CoordinatorMessage.assign(assignment, encodedSettings: Assignment.encodedSettings(assignment.settings))
        #expect(frames == CoordinatorMessage.assign(assignment).encode())
        #expect(try CoordinatorMessage.decode(frames: frames) == .assign(assignment))
    }

    /// One template per unit serves every lease: each decodes to the assignment with that
    /// lease and attempt, and leaves the other fields as the full encoding does.
    @Test func assignmentTemplateServesEveryLease() throws {
        let assignment = Samples.assignment
        let template = AssignmentTemplate(
            run: assignment.run, heartbeatInterval: assignment.heartbeatInterval, liveness: assignment.liveness,
            encodedSettings: Assignment.encodedSettings(assignment.settings), file: assignment.file, plan: assignment.plan, lines: assignment.lines)
        for (lease, attempt) in [(LeaseID(7), 1), (LeaseID(123_456_789), 3)] {
            var expected = assignment
            expected.lease = lease
            expected.attempt = attempt
            #expect(try CoordinatorMessage.decode(frames: template.frames(lease: lease, attempt: attempt)) == .assign(expected))
        }
        // Templates that share one preamble, as a coordinator's do, each keep their own unit.
        let preamble = AssignmentPreamble(
            run: assignment.run, heartbeatInterval: assignment.heartbeatInterval, liveness: assignment.liveness,
            encodedSettings: Assignment.encodedSettings(assignment.settings))
        var next = assignment
        next.plan = UnitPlan(
            unit: UnitID(assignment.plan.unit.rawValue + 1), fileIndex: assignment.plan.fileIndex, byteRange: assignment.plan.byteRange.upperBound..<(assignment.plan.byteRange.upperBound + 3),
            firstDocumentID: assignment.plan.firstDocumentID + 2, firstLine: assignment.plan.firstLine + 2, lineCount: 1, textBytes: 2)
        next.lines = [UnitLine(rawBytes: 3, content: .success("hi"))]
        for expected in [assignment, next] {
            let shared = AssignmentTemplate(preamble: preamble, file: expected.file, plan: expected.plan, lines: expected.lines)
            #expect(try CoordinatorMessage.decode(frames: shared.frames(lease: expected.lease, attempt: expected.attempt)) == .assign(expected))
        }
    }

    /// The coordinator writes every lease's ASSIGN into one set of frames. An ASSIGN it queued
    /// (holding those frames) must keep its own lease when the next one is written.
    @Test func assignmentFramesWrittenIntoAReusedSetStayApart() throws {
        let assignment = Samples.assignment
        let template = AssignmentTemplate(
            run: assignment.run, heartbeatInterval: assignment.heartbeatInterval, liveness: assignment.liveness,
            encodedSettings: Assignment.encodedSettings(assignment.settings), file: assignment.file, plan: assignment.plan, lines: assignment.lines)
        var reused: [[UInt8]] = [[1, 2, 3]]
        var queued: [[[UInt8]]] = []
        for lease in [LeaseID(7), LeaseID(8), LeaseID(1 << 40)] {
            template.write(lease: lease, attempt: 2, into: &reused)
            #expect(reused == template.frames(lease: lease, attempt: 2))
            queued.append(reused)
        }
        for (frames, lease) in zip(queued, [LeaseID(7), LeaseID(8), LeaseID(1 << 40)]) {
            var expected = assignment
            expected.lease = lease
            expected.attempt = 2
            #expect(try CoordinatorMessage.decode(frames: frames) == .assign(expected))
        }
    }

    @Test func everyJournalEvent() throws {
        for event in Samples.events {
            #expect(try CoordinatorEvent.decode(event.encoded()) == event)
        }
    }

    @Test func assignmentGivesTheCollectorItsCorpusLines() throws {
        let assignment = Samples.assignment
        let lines = assignment.corpusLines
        #expect(lines.map(\.documentID) == [500, 501, 502, 503, 504])
        #expect(lines.map(\.line) == [41, 42, 43, 44, 45])
        #expect(lines.map(\.byteRange) == [1000..<1030, 1030..<1040, 1040..<1060, 1060..<1075, 1075..<1100])
        #expect(lines.map(\.text) == ["first document", nil, "café ☕ naïve", nil, "last"])
        #expect(lines.allSatisfy { $0.file == "/corpus/b.jsonl" })
        let rebuilt = Assignment(
            run: assignment.run, lease: assignment.lease, attempt: assignment.attempt, heartbeatInterval: assignment.heartbeatInterval,
            settings: assignment.settings, file: assignment.file, plan: assignment.plan, corpusLines: lines)
        #expect(rebuilt == assignment)
    }
}

@Suite struct WireFormat {
    /// Pins the bytes of a small message: a change here is a protocol change.
    @Test func readyBytes() {
        let frames = WorkerMessage.ready(Ready(worker: "w1", threads: 2)).encode()
        #expect(frames[0] == [0x41, 0x43, 0x54, 0x57, 0x30, 0x31])  // "ACTW01"
        #expect(frames[1] == [0x01])
        #expect(frames[2] == [
            0x05, 0x04, 0x02, 0x00, 0x00, 0x00, 0x77, 0x31,  // worker: string "w1"
            0x09, 0x01, 0x08, 0x00, 0x00, 0x00, 2, 0, 0, 0, 0, 0, 0, 0,  // threads: uint 2
        ])
    }

    @Test func coordinatorHeartbeatIsThreeShortFrames() {
        #expect(CoordinatorMessage.heartbeat(CoordinatorHeartbeat()).encode() == [bytes("ACTW01"), [0x03], []])
    }

    @Test func shardFileNamesCarryTheLease() {
        #expect(ClusterWire.shardFileName(unit: 17, lease: 42, hook: "blocks.3.hook_resid_post") == "unit-00000017.lease-0000000042.blocks.3.hook_resid_post.shard")
        #expect(ClusterWire.shardFileName(unit: 1, lease: 2, hook: "a/b") == "unit-00000001.lease-0000000002.a_b.shard")
        #expect(ClusterWire.shardFileName(unit: 0, lease: 10, hook: "é") == "unit-00000000.lease-0000000010.é.shard")
        #expect(ClusterWire.shardFileName(unit: 123_456_789, lease: UInt64.max, hook: "h") == "unit-123456789.lease-18446744073709551615.h.shard")
    }

    @Test func unknownFieldsAreSkipped() throws {
        var frames = WorkerMessage.heartbeat(WorkerHeartbeat(worker: "w1")).encode()
        // A field with an unregistered tag (0xF0) of an unregistered type, in the middle.
        frames[2] = [0xF0, 0x63, 3, 0, 0, 0, 1, 2, 3] + frames[2]
        #expect(try WorkerMessage.decode(frames: frames) == .heartbeat(WorkerHeartbeat(worker: "w1")))
    }

    @Test func everyTagHasADistinctName() {
        #expect(Set(ClusterWire.Tag.allCases.map(\.name)).count == ClusterWire.Tag.allCases.count)
        #expect(Set(ClusterWire.Command.allCases.map(\.name)).count == ClusterWire.Command.allCases.count)
    }
}

@Suite struct Refusals {
    @Test func wrongEndpointIsNamed() {
        let status = StatusMessage.request(StatusRequest()).encode()
        let error = expectRefusal(.wrongProtocol) { _ = try WorkerMessage.decode(frames: status) }
        #expect(error?.found.contains("wrong endpoint") == true)
    }

    @Test func otherVersionIsNamed() {
        var frames = WorkerMessage.ready(Ready(worker: "w")).encode()
        frames[0] = bytes("ACTW02")
        let error = expectRefusal(.wrongProtocol) { _ = try WorkerMessage.decode(frames: frames) }
        #expect(error?.found.contains("version 02") == true)
        #expect(error?.description.hasPrefix("refused message: frame 0: expected ACTW01 (worker channel)") == true)
    }

    @Test func commandsOnlyGoOneWay() {
        let assign = CoordinatorMessage.assign(Samples.assignment).encode()
        expectRefusal(.wrongDirection) { _ = try WorkerMessage.decode(frames: assign) }
        let ready = WorkerMessage.ready(Ready(worker: "w")).encode()
        expectRefusal(.wrongDirection) { _ = try CoordinatorMessage.decode(frames: ready) }
        // HEARTBEAT goes both ways, with different bodies.
        let heartbeat = WorkerMessage.heartbeat(WorkerHeartbeat(worker: "w")).encode()
        #expect(throws: Never.self) { _ = try CoordinatorMessage.decode(frames: heartbeat) }
    }

    @Test func unknownCommand() {
        let error = expectRefusal(.unknownCommand) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x7F], []]) }
        #expect(error?.found == "byte 127")
    }

    @Test func frameCounts() {
        expectRefusal(.frameCount) { _ = try WorkerMessage.decode(frames: []) }
        expectRefusal(.frameCount) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01")]) }
        expectRefusal(.frameCount) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01]]) }
        expectRefusal(.frameCount) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01, 0x02], []]) }
        var extra = WorkerMessage.ready(Ready(worker: "w")).encode()
        extra.append([1, 2, 3])
        expectRefusal(.frameCount) { _ = try WorkerMessage.decode(frames: extra) }
    }

    @Test func missingAndMalformedFields() {
        expectRefusal(.missingField) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01], []]) }
        // A length that runs past the body.
        expectRefusal(.malformed) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01], [0x05, 0x04, 0xFF, 0, 0, 0, 0x41]]) }
        // A known tag with the wrong type.
        expectRefusal(.malformed) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01], [0x05, 0x01, 8, 0, 0, 0] + [UInt8](repeating: 0, count: 8)]) }
        // A repeated single field.
        let once: [UInt8] = [0x05, 0x04, 1, 0, 0, 0, 0x41]
        expectRefusal(.malformed) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01], once + once]) }
        // A bool that is neither 0 nor 1 (skip_special is no READY field, but known tags are
        // checked wherever they appear).
        let body = WorkerMessage.ready(Ready(worker: "w")).encode()[2]
        #expect(throws: Never.self) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01], body + [0x16, 0x02, 1, 0, 0, 0, 1]]) }
        expectRefusal(.malformed) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01], body + [0x16, 0x02, 1, 0, 0, 0, 7]]) }
    }

    @Test func namesAreTextWithoutControlCharacters() {
        let bad: [UInt8] = [0x05, 0x04, 3, 0, 0, 0, 0x41, 0xFF, 0x42]
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01], bad]) }
        let control: [UInt8] = [0x05, 0x04, 3, 0, 0, 0, 0x41, 0x1B, 0x42]
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: [bytes("ACTW01"), [0x01], control]) }
    }

    @Test func leaseZeroAndHugeUnitsAreRefused() {
        let frames = WorkerMessage.failed(UnitFailed(unit: 1, lease: 1, reason: "x")).encode()
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: [frames[0], frames[1], patchUInt(frames[2], tag: .lease, 0)]) }
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: [frames[0], frames[1], patchUInt(frames[2], tag: .unit, 1 << 31)]) }
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: [frames[0], frames[1], patchUInt(frames[2], tag: .disposition, 3)]) }
    }

    @Test func doneMustNameItsFilesByUnitLeaseAndHook() {
        var done = Samples.done(unit: 17, lease: 42)
        done.shards[0].file = "../../etc/passwd"
        let error = expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(done).encode()) }
        #expect(error?.location == "field shard[0].file")
        var other = Samples.done(unit: 17, lease: 42)
        other.shards[1].file = ClusterWire.shardFileName(unit: 17, lease: 41, hook: other.shards[1].hook)
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(other).encode()) }
    }

    @Test func doneMustBeConsistent() {
        var rows = Samples.done(unit: 1, lease: 1)
        rows.shards[1].rows += 1
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(rows).encode()) }
        var count = Samples.done(unit: 1, lease: 1)
        count.statistics[Samples.hooks[0]]!.count = 3
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(count).encode()) }
        var missing = Samples.done(unit: 1, lease: 1)
        missing.statistics[Samples.hooks[1]] = nil
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(missing).encode()) }
        var nan = Samples.done(unit: 1, lease: 1)
        nan.statistics[Samples.hooks[0]]!.mean[2] = .nan
        let error = expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(nan).encode()) }
        #expect(error?.found.contains("index 2") == true)
        var widths = Samples.done(unit: 1, lease: 1)
        widths.statistics[Samples.hooks[0]]!.variance.removeLast()
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(widths).encode()) }
        var negative = Samples.done(unit: 1, lease: 1)
        negative.timings.wall = -1
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(negative).encode()) }
        var duplicate = Samples.done(unit: 1, lease: 1)
        duplicate.shards.append(duplicate.shards[0])
        expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: WorkerMessage.done(duplicate).encode()) }
        // The encoder cannot repeat a hook's statistics (they are a dictionary): the field is copied by hand.
        var frames = WorkerMessage.done(Samples.done(unit: 1, lease: 1)).encode()
        var offset = 0
        while frames[2][offset] != ClusterWire.Tag.statistics.rawValue {
            offset += 6 + frames[2][(offset + 2)..<(offset + 6)].reversed().reduce(0) { $0 << 8 | Int($1) }
        }
        let length = 6 + frames[2][(offset + 2)..<(offset + 6)].reversed().reduce(0) { $0 << 8 | Int($1) }
        frames[2] += frames[2][offset..<(offset + length)]
        let twice = expectRefusal(.invalidValue) { _ = try WorkerMessage.decode(frames: frames) }
        #expect(twice?.found.contains("twice") == true)
    }

    @Test func assignPayloadChecks() {
        let frames = CoordinatorMessage.assign(Samples.assignment).encode()
        func decode(table: [UInt8]? = nil, text: [UInt8]? = nil) throws {
            _ = try CoordinatorMessage.decode(frames: [frames[0], frames[1], frames[2], table ?? frames[3], text ?? frames[4]])
        }
        #expect(throws: Never.self) { try decode() }
        expectRefusal(.payload) { try decode(table: Array(frames[3].dropLast())) }
        expectRefusal(.payload) { try decode(text: frames[4] + [0x41]) }
        // Invalid UTF-8 inside the text of line 2 (same length).
        var text = frames[4]
        text[14 + 3] = 0xFF
        let error = expectRefusal(.payload) { try decode(text: text) }
        #expect(error?.location == "frame 4 (text), line 2")
        // An unknown status byte.
        var table = frames[3]
        table[13 + 8] = 9
        expectRefusal(.payload) { try decode(table: table) }
        // Raw lengths that do not add up to the byte range.
        var raw = frames[3]
        raw[0] &+= 1
        expectRefusal(.payload) { try decode(table: raw) }
        // Text lengths that move a boundary into the middle of "é": line 2 gets "caf" and
        // the first byte of "é", line 4 the rest.
        var shifted = frames[3]
        shifted[2 * 13 + 9] = 4
        shifted[4 * 13 + 9] = 16
        let split = expectRefusal(.payload) { try decode(table: shifted) }
        #expect(split?.location == "frame 4 (text), line 2")
    }

    @Test func batchPayloadChecks() throws {
        let frames = try Samples.batch(dtype: .bf16).encode()
        let truncated = try ActivationBatch.decode(frames: [frames[0], frames[1], frames[2], Array(frames[3].dropLast(5))])
        expectRefusal(.payload) { _ = try truncated.rows() }
        var flipped = frames[3]
        flipped[flipped.count / 2] ^= 0x10
        let corrupt = try ActivationBatch.decode(frames: [frames[0], frames[1], frames[2], flipped])
        expectRefusal(.payload) { _ = try corrupt.rows() }
        // A valid LZ4 frame of the wrong size for the header.
        let other = try Samples.batch(dtype: .bf16, rows: 36).encode()
        let mismatched = try ActivationBatch.decode(frames: [frames[0], frames[1], frames[2], other[3]])
        expectRefusal(.payload) { _ = try mismatched.rows() }
        let bigger = try Samples.batch(dtype: .bf16, rows: 38).encode()
        let expanding = try ActivationBatch.decode(frames: [frames[0], frames[1], frames[2], bigger[3]])
        expectRefusal(.payload) { _ = try expanding.rows() }
    }

    @Test func batchRowsAreBoundedBeforeAllocating() {
        let frames = (try? Samples.batch(dtype: .fp32, rows: 1, width: 1).encode()) ?? []
        let huge = patchUInt(patchUInt(frames[2], tag: .rows, 1 << 40), tag: .uncompressedBytes, 28 << 40)
        expectRefusal(.invalidValue) { _ = try ActivationBatch.decode(frames: [frames[0], frames[1], huge, frames[3]]) }
    }

    @Test func statusCountsMustAddUp() {
        var report = StatusReport(run: 1, unitsPlanned: 3, unitsDone: 1)
        expectRefusal(.invalidValue) { _ = try StatusMessage.decode(frames: StatusMessage.reply(report).encode()) }
        report.unitsPending = 2
        #expect(throws: Never.self) { _ = try StatusMessage.decode(frames: StatusMessage.reply(report).encode()) }
    }
}

@Suite struct Envelopes {
    @Test func dealerAndRequestPeers() throws {
        let message = WorkerMessage.ready(Ready(worker: "w")).encode()
        let (dealer, dealerFrames) = try Envelope.split([[0, 1, 2]] + message)
        #expect(dealer == Envelope(routingID: [0, 1, 2]) && dealerFrames == message)
        let (request, requestFrames) = try Envelope.split([[9], []] + message)
        #expect(request.delimited && requestFrames == message)
        #expect(request.wrap([[1]]) == [[9], [], [1]])
        #expect(dealer.wrap([[1]]) == [[0, 1, 2], [1]])
        #expect(throws: ProtocolError.self) { _ = try Envelope.split([[1]]) }
    }
}
