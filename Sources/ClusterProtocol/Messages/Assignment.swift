import Corpus

/// One line of a unit as ASSIGN carries it: its raw length in the corpus file, and its
/// text or why it is skipped.
public struct UnitLine: Equatable, Hashable, Sendable {
    /// Bytes of the line in the corpus file, newline included.
    public var rawBytes: Int64
    public var content: Result<String, SkipReason>

    public init(rawBytes: Int64, content: Result<String, SkipReason>) {
        self.rawBytes = rawBytes
        self.content = content
    }

    /// Exhaustive both ways: a new skip reason in Corpus must get a status byte here.
    static func status(_ reason: SkipReason) -> ClusterWire.LineStatus {
        switch reason {
        case .invalidUTF8: .invalidUTF8
        case .invalidJSON: .invalidJSON
        case .missingField: .missingField
        case .emptyDocument: .emptyDocument
        case .lineTooLong: .lineTooLong
        }
    }

    static func reason(_ status: ClusterWire.LineStatus) -> SkipReason? {
        switch status {
        case .text: nil
        case .invalidUTF8: .invalidUTF8
        case .invalidJSON: .invalidJSON
        case .missingField: .missingField
        case .emptyDocument: .emptyDocument
        case .lineTooLong: .lineTooLong
        }
    }
}

/// ASSIGN: a unit for a worker, under a lease, with everything needed to collect it: the
/// run's settings, the unit's place in the corpus, and the text of its lines (so workers
/// need no access to the corpus files).
public struct Assignment: Equatable, Hashable, Sendable {
    public var run: UInt64
    public var lease: LeaseID
    /// 1 for the unit's first lease, 2 for the next, …
    public var attempt: Int
    /// How often the worker MUST send HEARTBEAT while it holds the lease.
    public var heartbeatInterval: Duration
    /// Intervals without a message after which the lease expires.
    public var liveness: Int
    public var settings: UnitSettings
    /// The corpus file's path on the coordinator (for log lines).
    public var file: String
    public var plan: UnitPlan
    public var lines: [UnitLine]

    public var unit: UnitID { plan.unit }

    public init(
        run: UInt64, lease: LeaseID, attempt: Int, heartbeatInterval: Duration = ClusterWire.Defaults.heartbeatInterval,
        liveness: Int = ClusterWire.Defaults.liveness, settings: UnitSettings, file: String, plan: UnitPlan, lines: [UnitLine]
    ) {
        precondition(lines.count == plan.lineCount, "a plan of \(plan.lineCount) lines with \(lines.count) lines")
        self.run = run
        self.lease = lease
        self.attempt = attempt
        self.heartbeatInterval = heartbeatInterval
        self.liveness = liveness
        self.settings = settings
        self.file = file
        self.plan = plan
        self.lines = lines
    }

    /// An assignment of the corpus lines a ``UnitReader`` returned for `plan`.
    public init(
        run: UInt64, lease: LeaseID, attempt: Int, heartbeatInterval: Duration = ClusterWire.Defaults.heartbeatInterval,
        liveness: Int = ClusterWire.Defaults.liveness, settings: UnitSettings, file: String, plan: UnitPlan, corpusLines: [CorpusLine]
    ) {
        self.init(
            run: run, lease: lease, attempt: attempt, heartbeatInterval: heartbeatInterval, liveness: liveness, settings: settings, file: file,
            plan: plan, lines: corpusLines.map { UnitLine(rawBytes: $0.byteRange.upperBound - $0.byteRange.lowerBound, content: $0.content) })
    }

    /// The lines as the collector takes them: document ids, line numbers and byte ranges
    /// follow from the plan.
    public var corpusLines: [CorpusLine] {
        var offset = plan.byteRange.lowerBound
        return lines.enumerated().map { index, line in
            defer { offset += line.rawBytes }
            return CorpusLine(
                documentID: plan.firstDocumentID + Int64(index), file: file, line: plan.firstLine + index,
                byteRange: offset..<(offset + line.rawBytes), content: line.content)
        }
    }

    /// The settings as ASSIGN carries them, for ``CoordinatorMessage/assign(_:encodedSettings:)``:
    /// a coordinator sends the same settings with every unit and encodes them once.
    public static func encodedSettings(_ settings: UnitSettings) -> [UInt8] {
        var writer = FieldWriter()
        settings.write(to: &writer)
        return writer.bytes
    }

    /// The unit and lease of an ASSIGN (frames as ``CoordinatorMessage/decode(frames:)`` takes
    /// them), nil for another command, without decoding its settings and lines: for simulated
    /// workers that compute nothing (`bench dispatch`), which must not cost the coordinator
    /// they share the machine with more than the protocol needs.
    public static func unitAndLease(frames: [[UInt8]]) throws(ProtocolError) -> (unit: UnitID, lease: LeaseID)? {
        guard try FrameCheck.command(frames, channel: .worker) == .assign else { return nil }
        let fields = try FrameCheck.body(frames, .assign, frameCount: 5)
        return (try fields.unit(), try fields.lease())
    }

    init(frames: [[UInt8]]) throws(ProtocolError) {
        let command = ClusterWire.Command.assign
        let fields = try FrameCheck.body(frames, command, frameCount: 5)
        let limits = ClusterWire.Limits.self
        run = try fields.uint(.run)
        let unit = try fields.unit()
        lease = try fields.lease()
        attempt = try fields.int(.attempt, in: 1...Int(Int32.max))
        heartbeatInterval = .milliseconds(Int64(try fields.uint(.heartbeatMilliseconds, in: 1...limits.maxHeartbeatMilliseconds)))
        liveness = try fields.int(.liveness, in: 1...limits.maxLiveness)
        settings = try UnitSettings(try fields.nested(.settings))
        let corpus = try fields.nested(.corpus)
        file = try corpus.string(.file, maxBytes: limits.maxPathBytes)
        plan = try UnitPlan(unit: unit, position: corpus)

        // Frame 3: the line table.
        let table = frames[3], text = frames[4]
        func fail(_ location: String, _ expected: String, _ found: String) -> ProtocolError {
            ProtocolError(.payload, message: command.name, location: location, expected: expected, found: found)
        }
        guard table.count == plan.lineCount * ClusterWire.lineRecordSize else {
            throw fail("frame 3 (line table)", "\(plan.lineCount) records of \(ClusterWire.lineRecordSize) bytes", "\(table.count) bytes")
        }
        guard text.count <= limits.maxUnitTextBytes else {
            throw ProtocolError(.tooLarge, message: command.name, location: "frame 4 (text)", expected: "at most \(limits.maxUnitTextBytes) bytes", found: "\(text.count) bytes")
        }
        guard text.count == plan.textBytes else {
            throw fail("frame 4 (text)", "text_bytes \(plan.textBytes) bytes", "\(text.count) bytes")
        }
        var lines: [UnitLine] = []
        lines.reserveCapacity(plan.lineCount)
        var rawTotal: Int64 = 0
        var textOffset = 0
        for index in 0..<plan.lineCount {
            let record = index * ClusterWire.lineRecordSize
            var raw: UInt64 = 0
            for byte in 0..<8 { raw |= UInt64(table[record + byte]) << (8 * byte) }
            let status = table[record + 8]
            let length = Int(table[record + 9]) | Int(table[record + 10]) << 8 | Int(table[record + 11]) << 16 | Int(table[record + 12]) << 24
            let location = "frame 3 (line table), line \(index)"
            guard raw >= 1, raw <= UInt64(plan.byteRange.count) else {
                throw fail(location, "a raw length of 1 … \(plan.byteRange.count) bytes", "\(raw)")
            }
            rawTotal += Int64(raw)
            guard let lineStatus = ClusterWire.LineStatus(rawValue: status) else {
                throw fail(location, "status 0 (text) or a skip reason 1 … \(ClusterWire.LineStatus.allCases.count - 1)", "\(status)")
            }
            if let reason = UnitLine.reason(lineStatus) {
                guard length == 0 else { throw fail(location, "no text for a skipped line", "\(length) bytes") }
                lines.append(UnitLine(rawBytes: Int64(raw), content: .failure(reason)))
            } else {
                guard length >= 1, length <= text.count - textOffset else {
                    throw fail(location, "a text length of 1 … \(text.count - textOffset) bytes (what is left of frame 4)", "\(length)")
                }
                guard UInt64(length) <= raw else { throw fail(location, "text no longer than the line's \(raw) raw bytes", "\(length) bytes") }
                guard let document = String(validating: text[textOffset..<(textOffset + length)], as: UTF8.self) else {
                    throw fail("frame 4 (text), line \(index)", "UTF-8 text", "invalid UTF-8")
                }
                textOffset += length
                lines.append(UnitLine(rawBytes: Int64(raw), content: .success(document)))
            }
        }
        guard rawTotal == plan.byteRange.count else {
            throw fail("frame 3 (line table)", "raw lengths adding up to the unit's \(plan.byteRange.count) bytes", "\(rawTotal)")
        }
        guard textOffset == text.count else {
            throw fail("frame 4 (text)", "\(textOffset) bytes, the sum of the text lengths", "\(text.count) bytes")
        }
        self.lines = lines
    }
}

/// The fields every ASSIGN of a run holds alike, encoded once: the run (before the unit), and
/// the timing and settings (after the attempt).
public struct AssignmentPreamble: Sendable {
    fileprivate let head: [UInt8]
    fileprivate let middle: [UInt8]

    public init(run: UInt64, heartbeatInterval: Duration, liveness: Int, encodedSettings: [UInt8]) {
        var head = FieldWriter(capacity: 16)
        head.uint(.run, run)
        self.head = head.bytes
        var middle = FieldWriter(capacity: encodedSettings.count + 48)
        middle.uint(.heartbeatMilliseconds, UInt64(max(1, heartbeatInterval.wholeMilliseconds)))
        middle.int(.liveness, liveness)
        middle.fields(.settings, encoded: encodedSettings)
        self.middle = middle.bytes
    }
}

/// An ASSIGN with everything but its lease encoded ahead, so that leasing a unit writes only
/// the unit, lease and attempt fields: a coordinator prepares one per unit as it plans it.
/// The frames are byte for byte those of ``CoordinatorMessage/assign(_:encodedSettings:)``.
public struct AssignmentTemplate: Sendable {
    public let unit: UnitID
    /// Shared by the run's templates (arrays are not copied).
    private let preamble: AssignmentPreamble
    /// The corpus field (file and position), after the settings.
    private let corpus: [UInt8]
    private let table: [UInt8]
    private let text: [UInt8]

    public init(preamble: AssignmentPreamble, file: String, plan: UnitPlan, lines: [UnitLine]) {
        self.init(preamble: preamble, file: file, plan: plan, lines: lines) { $0 }
    }

    /// `line` gives each element of `lines` as a ``UnitLine``: the coordinator's corpus lines
    /// need no array of their own on the way.
    private init<Lines: Collection>(preamble: AssignmentPreamble, file: String, plan: UnitPlan, lines: Lines, line: (Lines.Element) -> UnitLine) {
        precondition(lines.count == plan.lineCount, "a plan of \(plan.lineCount) lines with \(lines.count) lines")
        unit = plan.unit
        self.preamble = preamble
        var corpus = FieldWriter(capacity: file.utf8.count + 128)
        corpus.fields(.corpus) { nested in
            nested.string(.file, file)
            plan.writePosition(to: &nested)
        }
        self.corpus = corpus.bytes
        var table = [UInt8]()
        table.reserveCapacity(lines.count * ClusterWire.lineRecordSize)
        var text = [UInt8]()
        text.reserveCapacity(plan.textBytes)
        for element in lines {
            let line = line(element)
            withUnsafeBytes(of: UInt64(line.rawBytes).littleEndian) { table.append(contentsOf: $0) }
            switch line.content {
            case .success(let document):
                let start = text.count
                text.append(contentsOf: document.utf8)
                table.append(ClusterWire.LineStatus.text.rawValue)
                withUnsafeBytes(of: UInt32(text.count - start).littleEndian) { table.append(contentsOf: $0) }
            case .failure(let reason):
                table.append(UnitLine.status(reason).rawValue)
                table.append(contentsOf: [0, 0, 0, 0])
            }
        }
        self.table = table
        self.text = text
    }

    public init(
        run: UInt64, heartbeatInterval: Duration, liveness: Int, encodedSettings: [UInt8], file: String, plan: UnitPlan, lines: [UnitLine]
    ) {
        self.init(
            preamble: AssignmentPreamble(run: run, heartbeatInterval: heartbeatInterval, liveness: liveness, encodedSettings: encodedSettings),
            file: file, plan: plan, lines: lines)
    }

    /// For the corpus lines a ``UnitReader`` returned for `plan`.
    public init(preamble: AssignmentPreamble, file: String, plan: UnitPlan, corpusLines: [CorpusLine]) {
        self.init(preamble: preamble, file: file, plan: plan, lines: corpusLines) {
            UnitLine(rawBytes: $0.byteRange.upperBound - $0.byteRange.lowerBound, content: $0.content)
        }
    }

    /// The whole message (protocol, command, body, line table, text) for one lease.
    public func frames(lease: LeaseID, attempt: Int) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        write(lease: lease, attempt: attempt, into: &frames)
        return frames
    }

    /// ``frames(lease:attempt:)`` written into `frames`, whose arrays are reused when no one
    /// else holds them: a coordinator leasing thousands of units a second keeps one set.
    public func write(lease: LeaseID, attempt: Int, into frames: inout [[UInt8]]) {
        FrameCheck.write(.worker, .assign, into: &frames, count: 5) { body in
            body.reserveCapacity(preamble.head.count + 3 * (ClusterWire.fieldHeaderSize + 8) + preamble.middle.count + corpus.count)
            body.raw(preamble.head)
            body.uint(.unit, unit.rawValue)
            body.uint(.lease, lease.rawValue)
            body.int(.attempt, attempt)
            body.raw(preamble.middle)
            body.raw(corpus)
        }
        frames[3] = table
        frames[4] = text
    }
}
