import ClusterProtocol
import Foundation
import Platform
import Testing

/// A short history of a run: plan 3 units, lease, expire, fail, finish one.
private func history() -> [CoordinatorEvent] {
    [
        .planned(UnitPlan(unit: 0, fileIndex: 0, byteRange: 0..<70, firstDocumentID: 0, firstLine: 1, lineCount: 3, textBytes: 40)),
        .planned(UnitPlan(unit: 1, fileIndex: 0, byteRange: 70..<90, firstDocumentID: 3, firstLine: 4, lineCount: 1, textBytes: 10)),
        .leased(unit: 0, lease: 1, worker: "w1"),
        .leased(unit: 1, lease: 2, worker: "w2"),
        .expired(unit: 1, lease: 2),
        .planned(UnitPlan(unit: 2, fileIndex: 1, byteRange: 0..<50, firstDocumentID: 4, firstLine: 1, lineCount: 2, textBytes: 30)),
        .planningFinished,
        .done(Samples.done(unit: 0, lease: 1)),
        .leased(unit: 1, lease: 3, worker: "w1"),
        .failed(UnitFailed(unit: 1, lease: 3, reason: "tokenizer crashed")),
        .leased(unit: 2, lease: 4, worker: "w2"),
    ]
}

/// The states after each prefix of `events`, starting from the run alone.
private func states(_ run: RunDefinition, _ events: [CoordinatorEvent]) -> [CoordinatorState] {
    var state = CoordinatorState(run: run)
    var result = [state]
    for event in events {
        let transition = state.apply(event)
        #expect(transition.changed, "\(event.kind): \(transition.reason ?? "")")
        result.append(state)
    }
    return result
}

private func fileBytes(_ path: String) throws -> [UInt8] { try readFile(path) }

private func overwrite(_ path: String, _ bytes: [UInt8]) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

@Suite struct JournalReplays {
    @Test func newJournalThenReplayRebuildsTheState() throws {
        let path = try scratchDirectory("journal") + "/" + JournalFormat.defaultFileName
        let run = Samples.run()
        let (fresh, journal, replay) = try CoordinatorState.recover(journalAt: path, run: run)
        #expect(replay.created && fresh == CoordinatorState(run: run))
        var state = fresh
        for event in history() {
            #expect(state.apply(event).changed)
            try journal.append(event)
            if event.kind == .leased { try journal.sync() }  // several commits, several events each
        }
        try journal.sync()
        journal.close()

        // Another run id is fine (the journal keeps its own); other settings are not.
        var restarted = run
        restarted.run = 7
        let (rebuilt, again, second) = try CoordinatorState.recover(journalAt: path, run: restarted)
        again.close()
        #expect(rebuilt == state)
        #expect(rebuilt.run.run == run.run)
        #expect(second.events == history().count + 1 && second.truncatedBytes == 0 && !second.created)
        #expect(rebuilt.invariantViolation() == nil)
        #expect(rebuilt.done.keys.sorted() == [0] && rebuilt.leases.keys.sorted() == [4])
        #expect(rebuilt.active[1]?.failures.count == 2 && rebuilt.pending.first == 1)
        #expect(rebuilt.planPosition == CorpusPositionExpectation.afterUnit2)

        var other = run
        other.settings.hooks = ["blocks.0.hook_resid_pre"]
        other.maxAttempts = 5
        #expect {
            _ = try CoordinatorState.recover(journalAt: path, run: other)
        } throws: { error in
            let text = "\(error)"
            return error is CoordinatorStateError && text.contains("hooks") && text.contains("max attempts") && text.contains("restart with the original arguments")
        }
    }

    /// A crash in the middle of an append leaves a prefix of the last record: at every cut,
    /// replay gives the state before that record and cuts the file back, and appends go on.
    @Test func tornLastRecordAtEveryByte() throws {
        let directory = try scratchDirectory("torn")
        let path = directory + "/j"
        let run = Samples.run()
        let events = history()
        let (_, journal, _) = try CoordinatorState.recover(journalAt: path, run: run)
        for event in events.dropLast(2) { try journal.write(event) }
        let before = try fileBytes(path).count
        // The last commit holds two events.
        try journal.append(events[events.count - 2])
        try journal.append(events[events.count - 1])
        try journal.sync()
        journal.close()
        let full = try fileBytes(path)
        let expected = states(run, events)
        for cut in before..<full.count {
            try overwrite(path, Array(full.prefix(cut)))
            let (state, reopened, replay) = try CoordinatorState.recover(journalAt: path, run: run)
            #expect(state == expected[events.count - 2], "cut at \(cut)")
            #expect(replay.truncatedBytes == Int64(cut - before) && replay.validBytes == Int64(before))
            #expect(try fileBytes(path).count == before)
            // Appending after the cut works, and replays.
            try reopened.write(events[events.count - 2])
            reopened.close()
            let (after, last, _) = try CoordinatorState.recover(journalAt: path, run: run)
            last.close()
            #expect(after == expected[events.count - 1])
        }
        // The whole file replays everything.
        try overwrite(path, full)
        let (state, reopened, _) = try CoordinatorState.recover(journalAt: path, run: run)
        reopened.close()
        #expect(state == expected[events.count])
    }

    @Test func damagedOrZeroFilledLastRecordIsTorn() throws {
        let path = try scratchDirectory("tail") + "/j"
        let run = Samples.run()
        let (_, journal, _) = try CoordinatorState.recover(journalAt: path, run: run)
        for event in history() { try journal.write(event) }
        journal.close()
        let full = try fileBytes(path)
        let expected = states(run, history())

        // Garbage in the last record's payload: torn.
        var damaged = full
        damaged[damaged.count - 3] ^= 0x55
        try overwrite(path, damaged)
        var (state, reopened, replay) = try CoordinatorState.recover(journalAt: path, run: run)
        reopened.close()
        #expect(state == expected[history().count - 1] && replay.truncatedBytes > 0)

        // A zero-filled tail after intact records (a crash after the file grew): torn.
        try overwrite(path, full + [UInt8](repeating: 0, count: 4096))
        (state, reopened, replay) = try CoordinatorState.recover(journalAt: path, run: run)
        reopened.close()
        #expect(state == expected[history().count] && replay.truncatedBytes == 4096)
    }

    @Test func corruptionInTheMiddleIsAnError() throws {
        let path = try scratchDirectory("middle") + "/j"
        let run = Samples.run()
        let (_, journal, _) = try CoordinatorState.recover(journalAt: path, run: run)
        for event in history() { try journal.write(event) }
        journal.close()
        let full = try fileBytes(path)
        // A byte inside the third record's payload, and separately its length.
        var offsets: [Int] = []
        var offset = JournalFormat.headerSize
        while offset < full.count {
            offsets.append(offset)
            let length = Int(full[offset]) | Int(full[offset + 1]) << 8 | Int(full[offset + 2]) << 16 | Int(full[offset + 3]) << 24
            offset += JournalFormat.recordHeaderSize + length
        }
        for position in [offsets[2] + JournalFormat.recordHeaderSize + 5, offsets[2] + 1] {
            var damaged = full
            damaged[position] ^= 0x01
            try overwrite(path, damaged)
            #expect {
                _ = try CoordinatorState.recover(journalAt: path, run: run)
            } throws: { error in
                guard let error = error as? JournalError else { return false }
                return error.offset == Int64(offsets[2]) && error.problem.contains("corrupt in the middle") && error.description.contains(path)
            }
            // Nothing was cut off.
            #expect(try fileBytes(path) == damaged)
        }
    }

    @Test func notAJournal() throws {
        let directory = try scratchDirectory("foreign")
        let run = Samples.run()
        try overwrite(directory + "/a", Array("{\"hello\": \"this is JSON, not a journal\"}".utf8))
        #expect(throws: JournalError.self) { _ = try CoordinatorState.recover(journalAt: directory + "/a", run: run) }
        // Another format version.
        let (_, journal, _) = try CoordinatorState.recover(journalAt: directory + "/b", run: run)
        journal.close()
        var bytes = try fileBytes(directory + "/b")
        bytes[8] = 2
        try overwrite(directory + "/b", bytes)
        #expect {
            _ = try CoordinatorState.recover(journalAt: directory + "/b", run: run)
        } throws: { error in "\(error)".contains("version 2") }
        // A header torn at creation starts afresh.
        try overwrite(directory + "/c", Array(JournalFormat.magic.prefix(5)))
        let (state, fresh, replay) = try CoordinatorState.recover(journalAt: directory + "/c", run: run)
        fresh.close()
        #expect(replay.created && state == CoordinatorState(run: run))
    }

    @Test func eventsThatWouldNotReplayAreRefused() throws {
        let path = try scratchDirectory("refuse") + "/j"
        let (_, journal, _) = try CoordinatorState.recover(journalAt: path, run: Samples.run())
        let size = journal.size
        #expect(throws: JournalError.self) { try journal.write(.expired(unit: UnitID(1 << 40), lease: 1)) }
        #expect(throws: JournalError.self) { try journal.write(.failed(UnitFailed(unit: 1, lease: 1, reason: String(repeating: "x", count: 5000)))) }
        #expect(journal.bufferedEvents == 0 && journal.size == size)
        try journal.write(.planningFinished)
        journal.close()
    }

    /// A DONE journaled from the body it was decoded from replays as the decoded event; a
    /// commit prepared for another thread is durable once finished, and events appended
    /// meanwhile go with the next commit.
    @Test func rawDoneBodiesAndCommitsInFlight() throws {
        let path = try scratchDirectory("raw") + "/j"
        let run = Samples.run()
        let (fresh, journal, _) = try CoordinatorState.recover(journalAt: path, run: run)
        var state = fresh
        let plan = UnitPlan(unit: 0, fileIndex: 0, byteRange: 0..<70, firstDocumentID: 0, firstLine: 1, lineCount: 3, textBytes: 40)
        let frames = WorkerMessage.done(Samples.done(unit: 0, lease: 1)).encode()
        guard case .done(let done) = try WorkerMessage.decode(frames: frames) else { Issue.record("not a DONE"); return }
        for event in [CoordinatorEvent.planned(plan), .leasesReserved(through: 10), .leased(unit: 0, lease: 1, worker: "w")] {
            #expect(state.apply(event).changed)
            try journal.append(event)
        }
        let first = try #require(try journal.prepareCommit())
        #expect(journal.commitInFlight && first.events == 4 && journal.durableEvents == 1)
        #expect(state.apply(.done(done)).changed)
        try journal.append(.done(done), decodedFrom: frames[2])
        try first.perform()
        try journal.finishCommit(first, error: nil)
        #expect(!journal.commitInFlight && journal.durableEvents == 4 && journal.bufferedEvents == 1)
        try journal.sync()
        #expect(journal.durableEvents == 5)
        journal.close()
        let (rebuilt, again, replay) = try CoordinatorState.recover(journalAt: path, run: run)
        again.close()
        #expect(replay.records == 3 && rebuilt == state && rebuilt.done[0]?.lease == 1)
    }

    /// A commit whose write failed leaves the journal refusing further use.
    @Test func aFailedCommitBreaksTheJournal() throws {
        let path = try scratchDirectory("broken") + "/j"
        let (_, journal, _) = try CoordinatorState.recover(journalAt: path, run: Samples.run())
        try journal.append(.planningFinished)
        let commit = try #require(try journal.prepareCommit())
        struct DiskFull: Error {}
        #expect(throws: DiskFull.self) { try journal.finishCommit(commit, error: DiskFull()) }
        #expect(throws: JournalError.self) { try journal.write(.completed) }
        journal.close()
    }

    @Test func firstEventMustStartTheRun() throws {
        let path = try scratchDirectory("first") + "/j"
        let (journal, _) = try Journal.open(path: path) { _ in }
        try journal.write(.planningFinished)
        journal.close()
        #expect {
            _ = try CoordinatorState.recover(journalAt: path, run: Samples.run())
        } throws: { error in "\(error)".contains("must start the run") }
    }
}

private enum CorpusPositionExpectation {
    static let afterUnit2 = UnitPlan(unit: 2, fileIndex: 1, byteRange: 0..<50, firstDocumentID: 4, firstLine: 1, lineCount: 2, textBytes: 30).end
}
