import Glibc
import Platform
import Shards

/// A journal that cannot be read or written, as a sentence: the file, the byte offset, what
/// is wrong and what to do.
public struct JournalError: Error, Equatable, Sendable, CustomStringConvertible {
    public let path: String
    /// Byte offset of the record (or header) concerned.
    public let offset: Int64
    public let problem: String

    public init(path: String, offset: Int64, problem: String) {
        self.path = path
        self.offset = offset
        self.problem = problem
    }

    public var description: String { "journal \(path), byte \(offset): \(problem)" }
}

/// What opening a journal found.
public struct JournalReplay: Equatable, Sendable {
    /// Intact records (commits) replayed.
    public var records: Int
    /// Events in those records.
    public var events: Int
    /// Bytes of intact records, header included: where appends continue.
    public var validBytes: Int64
    /// Bytes of a torn last record that were cut off (a crash in the middle of an append).
    public var truncatedBytes: Int64
    /// The file was created (or held only a torn header) and is new.
    public var created: Bool
}

/// The coordinator's append-only journal (<doc:JournalFile>): a header, then records of
/// `length · CRC-32C(length) · CRC-32C(payload) · payload`. A record is one commit: the
/// events appended since the previous ``sync()`` (group commit), each as
/// `length · event`. ``sync()`` writes the record and calls `fdatasync`; a coordinator
/// acts on events (ACK, ASSIGN, CANCEL, deleting files) only after the sync that holds them
/// returns.
///
/// Because only the last record can be unsynced when the coordinator dies, a damaged last
/// record is a torn write and is cut off on opening; any other damage is a ``JournalError``,
/// because later records were acted on and cannot be dropped silently.
public final class Journal {
    public let path: String
    private var descriptor: Int32
    /// Bytes durable in the file.
    public private(set) var size: Int64
    /// Entries (`length · event`) of the next record.
    private var buffered: [UInt8] = []
    /// Events buffered and not yet handed to a commit.
    public private(set) var bufferedEvents = 0
    /// Events appended since the journal was opened; an event is durable once
    /// ``durableEvents`` reaches the count right after its append.
    public private(set) var appendedEvents = 0
    public private(set) var durableEvents = 0
    /// A commit was prepared and not finished: at most one record is ever unsynced.
    public private(set) var commitInFlight = false
    private var broken: JournalError?

    private init(path: String, descriptor: Int32, size: Int64) {
        self.path = path
        self.descriptor = descriptor
        self.size = size
    }

    deinit { close() }

    /// Closes the file, dropping records not yet synced. Idempotent.
    public func close() {
        if descriptor >= 0 {
            Glibc.close(descriptor)
            descriptor = -1
        }
    }

    // MARK: Opening and replay

    /// Opens the journal at `path`, creating it if it does not exist, and calls `visit` with
    /// every intact record in order. Errors `visit` throws stop the replay and come back as a
    /// ``JournalError`` naming the record.
    public static func open(path: String, visit: (CoordinatorEvent) throws -> Void) throws -> (Journal, JournalReplay) {
        let descriptor = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else { throw FileError(operation: "open journal", path: path, code: errno) }
        let journal = Journal(path: path, descriptor: descriptor, size: 0)
        do {
            let replay = try journal.replay(visit)
            return (journal, replay)
        } catch {
            journal.close()
            throw error
        }
    }

    private func fail(_ offset: Int64, _ problem: String) -> JournalError {
        JournalError(path: path, offset: offset, problem: problem)
    }

    private func fileSize() throws -> Int64 {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw FileError(operation: "stat journal", path: path, code: errno) }
        return Int64(info.st_size)
    }

    /// Reads exactly `count` bytes at `offset` (the caller knows they exist).
    private func read(_ count: Int, at offset: Int64) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = bytes.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, count - done, off_t(offset) + off_t(done)) }
            if got < 0 {
                if errno == EINTR { continue }
                throw FileError(operation: "read journal", path: path, code: errno)
            }
            guard got > 0 else { throw fail(offset + Int64(done), "the file ended while reading; was it truncated by another program?") }
            done += got
        }
        return bytes
    }

    /// Whether every byte from `offset` to `end` is zero (a crash can leave a zero-filled tail).
    private func zeros(from offset: Int64, to end: Int64) throws -> Bool {
        var position = offset
        while position < end {
            let count = Int(min(end - position, 1 << 20))
            if try read(count, at: position).contains(where: { $0 != 0 }) { return false }
            position += Int64(count)
        }
        return true
    }

    private func truncate(to length: Int64) throws {
        guard ftruncate(descriptor, off_t(length)) == 0 else { throw FileError(operation: "truncate journal", path: path, code: errno) }
        guard fsync(descriptor) == 0 else { throw FileError(operation: "fsync journal", path: path, code: errno) }
    }

    private static func header() -> [UInt8] {
        var header = JournalFormat.magic
        withUnsafeBytes(of: JournalFormat.version.littleEndian) { header.append(contentsOf: $0) }
        header += [0, 0]
        withUnsafeBytes(of: CRC32C.checksum(header).littleEndian) { header.append(contentsOf: $0) }
        return header
    }

    private func replay(_ visit: (CoordinatorEvent) throws -> Void) throws -> JournalReplay {
        let end = try fileSize()
        let headerSize = Int64(JournalFormat.headerSize)
        if end < headerSize {
            // Empty, or a crash while the header was written: start afresh.
            let existing = try read(Int(end), at: 0)
            guard Array(Self.header().prefix(existing.count)) == existing || existing.allSatisfy({ $0 == 0 }) else {
                throw fail(0, "not an actcluster journal (\(Printable.bytes(existing))); choose another --out folder or remove the file")
            }
            try truncate(to: 0)
            let header = Self.header()
            try writeAll(header, at: 0)
            guard fsync(descriptor) == 0 else { throw FileError(operation: "fsync journal", path: path, code: errno) }
            try AtomicFile.syncDirectory(containing: path)
            size = headerSize
            return JournalReplay(records: 0, events: 0, validBytes: headerSize, truncatedBytes: end, created: true)
        }
        let header = try read(JournalFormat.headerSize, at: 0)
        guard header.starts(with: JournalFormat.magic) else {
            throw fail(0, "not an actcluster journal: expected magic ACTJOURN, found \(Printable.bytes(header.prefix(8)))")
        }
        guard header == Self.header() else {
            let version = UInt16(header[8]) | UInt16(header[9]) << 8
            if version != JournalFormat.version {
                throw fail(8, "journal format version \(version); this actcluster reads version \(JournalFormat.version)")
            }
            throw fail(0, "the journal header fails its CRC-32C check")
        }

        var offset = headerSize
        var records = 0
        var events = 0
        let recordHeaderSize = Int64(JournalFormat.recordHeaderSize)
        while offset < end {
            // A torn last record: cut it off, it was never acknowledged.
            func torn() throws -> JournalReplay {
                try truncate(to: offset)
                size = offset
                return JournalReplay(records: records, events: events, validBytes: offset, truncatedBytes: end - offset, created: false)
            }
            if end - offset < recordHeaderSize { return try torn() }
            let recordHeader = try read(JournalFormat.recordHeaderSize, at: offset)
            let lengthBytes = Array(recordHeader[0..<4])
            let length = Int64(littleEndian: lengthBytes, at: 0)
            let lengthCRC = UInt32(truncatingIfNeeded: Int64(littleEndian: recordHeader, at: 4))
            let payloadCRC = UInt32(truncatingIfNeeded: Int64(littleEndian: recordHeader, at: 8))
            guard CRC32C.checksum(lengthBytes) == lengthCRC else {
                if try zeros(from: offset, to: end) { return try torn() }
                throw fail(offset, "record \(records + 1) has a damaged length (CRC-32C mismatch) and intact data follows; the journal is corrupt in the middle. Restore it from a backup, or move it away to start the run again")
            }
            guard length >= 1, length <= Int64(JournalFormat.maxRecordBytes) else {
                throw fail(offset, "record \(records + 1) claims \(length) bytes; records hold 1 … \(JournalFormat.maxRecordBytes)")
            }
            let recordEnd = offset + recordHeaderSize + length
            if recordEnd > end { return try torn() }
            let payload = try read(Int(length), at: offset + recordHeaderSize)
            guard CRC32C.checksum(payload) == payloadCRC else {
                if try zeros(from: recordEnd, to: end) { return try torn() }
                throw fail(offset, "record \(records + 1) fails its CRC-32C check and intact data follows; the journal is corrupt in the middle. Restore it from a backup, or move it away to start the run again")
            }
            var entryStart = 0
            while entryStart < payload.count {
                guard payload.count - entryStart >= 4 else {
                    throw fail(offset, "record \(records + 1) passes its checksum but ends inside an event's length")
                }
                let entryLength = Int(Int64(littleEndian: payload, at: entryStart))
                let bodyStart = entryStart + 4
                guard entryLength >= 1, entryLength <= payload.count - bodyStart else {
                    throw fail(offset, "record \(records + 1) passes its checksum but event \(events + 1) claims \(entryLength) of the \(payload.count - bodyStart) bytes left")
                }
                let event: CoordinatorEvent
                do {
                    event = try CoordinatorEvent.decode(Array(payload[bodyStart..<(bodyStart + entryLength)]))
                } catch {
                    throw fail(offset, "record \(records + 1) passes its checksum but event \(events + 1) cannot be decoded: \(error)")
                }
                do {
                    try visit(event)
                } catch {
                    throw fail(offset, "event \(events + 1) (\(event.kind)) in record \(records + 1): \(error)")
                }
                events += 1
                entryStart = bodyStart + entryLength
            }
            records += 1
            offset = recordEnd
        }
        size = offset
        return JournalReplay(records: records, events: events, validBytes: offset, truncatedBytes: 0, created: false)
    }

    // MARK: Appending

    /// Buffers an event; it is durable after the next ``sync()``. Throws, and buffers
    /// nothing, if the event is too large or would not decode again on replay (a value out of
    /// the protocol's ranges): a journal that cannot be replayed would stop the next start.
    ///
    /// `body` is the control body a DONE was decoded from: it is journaled as it came, which is
    /// what encoding the event again would give (replay decodes it with the same codec) at a
    /// fraction of the cost.
    public func append(_ event: CoordinatorEvent, decodedFrom body: [UInt8]? = nil) throws {
        if let body {
            guard case .done = event else { preconditionFailure("only a DONE is journaled from the body it was decoded from") }
            try appendEntry(kind: event.kind, body: body, event: event)
            return
        }
        switch event {
        case .leased, .planned: try appendInPlace(event)
        default: try appendEntry(kind: nil, body: event.encoded(), event: event)
        }
    }

    /// Encodes a LEASED or PLANNED (two per unit) straight into the buffer: no array of its
    /// own, and no replay check (see ``appendEntry(kind:body:event:)``).
    private func appendInPlace(_ event: CoordinatorEvent) throws {
        let start = beginEntry()
        // The buffer moves into the writer and back: one owner at a time, so no copy.
        var bytes: [UInt8] = []
        swap(&bytes, &buffered)
        var writer = FieldWriter(continuing: consume bytes)
        event.write(to: &writer)
        buffered = writer.take()
        let count = buffered.count - start - 4
        do {
            try checkSize(count, of: event)
        } catch {
            buffered.removeLast(count + 4)
            throw error
        }
        endEntry(at: start)
    }

    /// Buffers `kind · body` (or `body`, which starts with its kind, when `kind` is nil).
    private func appendEntry(kind: JournalFormat.RecordKind?, body entry: [UInt8], event: CoordinatorEvent) throws {
        try checkSize(entry.count + (kind == nil ? 0 : 1), of: event)
        // The events of every unit are not decoded again, which would double the journal's
        // cost at dispatch rates: DONE and LEASED carry only what the same codec decoded from
        // a worker's message (a LEASED names a worker from its READY), PLANNED only what the
        // planner cut (CoordinatorState checked it continues the plan before it is appended),
        // so they replay. LEASED and PLANNED are appended in place. Every other event is checked.
        switch event {
        case .done: break
        default: try verifyReplay(entry, event)
        }
        let start = beginEntry()
        if let kind { buffered.append(kind.rawValue) }
        buffered += entry
        endEntry(at: start)
    }

    private func checkSize(_ count: Int, of event: CoordinatorEvent) throws {
        guard count <= JournalFormat.maxEventBytes else {
            throw fail(size, "a \(event.kind) event of \(count) bytes is over the limit of \(JournalFormat.maxEventBytes)")
        }
    }

    /// Starts an entry: room for its length. Returns where the entry starts.
    private func beginEntry() -> Int {
        let start = buffered.count
        buffered.append(contentsOf: repeatElement(0, count: 4))
        return start
    }

    /// Ends the entry begun at `start`: fills in its length, and moves it to a record of its
    /// own if the buffer would outgrow one (very rare: a commit of several huge events).
    private func endEntry(at start: Int) {
        let count = buffered.count - start - 4
        withUnsafeBytes(of: UInt32(count).littleEndian) { buffered.replaceSubrange(start..<(start + 4), with: $0) }
        if start > 0 && buffered.count > JournalFormat.maxRecordBytes {
            let entry = Array(buffered[start...])
            buffered.removeLast(buffered.count - start)
            pendingRecords.append(buffered)
            buffered = entry
        }
        bufferedEvents += 1
        appendedEvents += 1
    }

    private func verifyReplay(_ entry: [UInt8], _ event: CoordinatorEvent) throws {
        do {
            guard try CoordinatorEvent.decode(entry) == event else {
                throw fail(size, "a \(event.kind) event does not decode to itself; it is not journaled")
            }
        } catch let error as ProtocolError {
            throw fail(size, "a \(event.kind) event would not replay (\(error)); it is not journaled")
        }
    }

    private var pendingRecords: [[UInt8]] = []

    /// Appends `payload` as one record: its length, the CRC-32C of the length, the CRC-32C of
    /// the payload, then the payload.
    private static func appendRecord(_ payload: [UInt8], to bytes: inout [UInt8]) {
        let length = UInt32(payload.count).littleEndian
        let lengthCRC = withUnsafeBytes(of: length) { CRC32C.checksum($0) }
        withUnsafeBytes(of: length) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: lengthCRC.littleEndian) { bytes.append(contentsOf: $0) }
        withUnsafeBytes(of: CRC32C.checksum(payload).littleEndian) { bytes.append(contentsOf: $0) }
        bytes += payload
    }

    /// Takes the buffered events as one record to write and sync, on this thread or another
    /// (``JournalCommit/perform()``); nil if nothing is buffered. Only one commit is in flight
    /// at a time, so only the last record of the file can be unsynced when the process dies.
    public func prepareCommit() throws -> JournalCommit? {
        if let broken { throw broken }
        precondition(!commitInFlight, "a journal commit is already in flight")
        guard !buffered.isEmpty else { return nil }
        precondition(descriptor >= 0, "journal used after close")
        // Sized once and written in place: a commit holds some milliseconds of events.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(pendingRecords.reduce(buffered.count) { $0 + $1.count } + (pendingRecords.count + 1) * JournalFormat.recordHeaderSize)
        for payload in pendingRecords { Self.appendRecord(payload, to: &bytes) }
        Self.appendRecord(buffered, to: &bytes)
        buffered.removeAll(keepingCapacity: true)
        pendingRecords.removeAll()
        bufferedEvents = 0
        commitInFlight = true
        return JournalCommit(descriptor: descriptor, path: path, offset: size, bytes: bytes, events: appendedEvents)
    }

    /// Records how the commit went. After a failed write the journal cuts the partial record
    /// off again and refuses further use: a coordinator that cannot journal must stop.
    public func finishCommit(_ commit: JournalCommit, error: (any Error)?) throws {
        precondition(commitInFlight && commit.offset == size, "finishing a journal commit that is not in flight")
        commitInFlight = false
        if let error {
            _ = ftruncate(descriptor, off_t(size))
            broken = fail(size, "an append failed (\(error)); the coordinator must stop and be restarted once the cause is fixed")
            throw error
        }
        size += Int64(commit.bytes.count)
        durableEvents = commit.events
    }

    /// Writes the buffered events as one record and makes it durable (`fdatasync`), on this
    /// thread. No other commit may be in flight.
    public func sync() throws {
        guard let commit = try prepareCommit() else { return }
        var failure: (any Error)?
        do { try commit.perform() } catch { failure = error }
        try finishCommit(commit, error: failure)
    }

    /// Appends one event and syncs.
    public func write(_ event: CoordinatorEvent) throws {
        try append(event)
        try sync()
    }

    private func writeAll(_ bytes: [UInt8], at offset: Int64) throws {
        try Self.writeAll(bytes, at: offset, descriptor: descriptor, path: path)
    }

    fileprivate static func writeAll(_ bytes: [UInt8], at offset: Int64, descriptor: Int32, path: String) throws {
        var done = 0
        while done < bytes.count {
            let written = bytes.withUnsafeBytes { pwrite(descriptor, $0.baseAddress! + done, bytes.count - done, off_t(offset) + off_t(done)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw FileError(operation: "write journal", path: path, code: errno)
            }
            done += written
        }
    }
}

/// One journal record on its way to disk: ``perform()`` writes and syncs it, on any thread,
/// and ``Journal/finishCommit(_:error:)`` tells the journal how it went.
public struct JournalCommit: Sendable {
    let descriptor: Int32
    let path: String
    let offset: Int64
    let bytes: [UInt8]
    /// ``Journal/appendedEvents`` when it was prepared: durable up to here once finished.
    public let events: Int

    /// `pwrite` and `fdatasync`; touches nothing but the file.
    public func perform() throws {
        try Journal.writeAll(bytes, at: offset, descriptor: descriptor, path: path)
        guard fdatasync(descriptor) == 0 else { throw FileError(operation: "fdatasync journal", path: path, code: errno) }
    }
}

extension Int64 {
    /// Four little-endian bytes at `offset` as an unsigned value.
    fileprivate init(littleEndian bytes: [UInt8], at offset: Int) {
        self = Int64(bytes[offset]) | Int64(bytes[offset + 1]) << 8 | Int64(bytes[offset + 2]) << 16 | Int64(bytes[offset + 3]) << 24
    }
}

/// A journal that belongs to another run, or a record that does not apply.
public struct CoordinatorStateError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension CoordinatorState {
    /// Rebuilds the state from the journal at `path`, or starts a new journal for `run`.
    /// An existing journal must hold a run with the same definition (its run id is kept);
    /// every record must apply. Returns the state, the open journal (ready for appends) and
    /// what the replay found.
    public static func recover(journalAt path: String, run: RunDefinition) throws -> (CoordinatorState, Journal, JournalReplay) {
        var state: CoordinatorState?
        let (journal, replay) = try Journal.open(path: path) { event in
            guard state != nil else {
                guard case .started(let definition) = event else {
                    throw CoordinatorStateError("the first event must start the run, not \(event.kind)")
                }
                state = CoordinatorState(run: definition)
                return
            }
            // Mutates in place: a copy per event would copy the whole state every time.
            let transition = state!.apply(event)
            guard transition.changed else {
                throw CoordinatorStateError("it does not apply to the state rebuilt so far: \(transition.reason ?? "")")
            }
        }
        guard let state else {
            do {
                try journal.write(.started(run))
            } catch {
                journal.close()
                throw error
            }
            return (CoordinatorState(run: run), journal, replay)
        }
        let differences = state.run.differences(from: run)
        guard differences.isEmpty else {
            journal.close()
            throw CoordinatorStateError(
                "the journal \(path) belongs to a run with other settings (\(differences.joined(separator: "; "))); restart with the original arguments, or use another output folder")
        }
        return (state, journal, replay)
    }
}
