// The wire formats below are little-endian, and the codec copies integers and floats
// between memory and frames as they are.
#if _endian(big)
#error("the cluster protocol codec assumes a little-endian host")
#endif

/// Constants of the actcluster wire protocol, version 01, and of the coordinator's journal.
/// The articles <doc:WireProtocol> and <doc:JournalFile> in this module's documentation
/// catalog are the specification; this file is their only copy in code.
public enum ClusterWire {
    /// The protocol version every header frame ends with.
    public static let version = "01"

    // MARK: Channels and commands

    /// The three conversations of a cluster. Each has its own header frame, so a peer
    /// connected to the wrong endpoint is told so instead of being misunderstood.
    public enum Channel: String, CaseIterable, Sendable, CustomStringConvertible {
        /// Coordinator ROUTER ◄──► worker DEALER.
        case worker = "ACTW"
        /// Coordinator status ROUTER ◄──► `actcluster status` REQ or DEALER.
        case status = "ACTS"
        /// Worker PUSH ──► trainer PULL.
        case batch = "ACTB"

        /// Frame 0 of every message on this channel, e.g. `ACTW01`. Made once: every message
        /// sent or received uses it.
        public var header: [UInt8] {
            switch self {
            case .worker: Self.headers.worker
            case .status: Self.headers.status
            case .batch: Self.headers.batch
            }
        }

        private static let headers = (
            worker: Array((Channel.worker.rawValue + ClusterWire.version).utf8), status: Array((Channel.status.rawValue + ClusterWire.version).utf8),
            batch: Array((Channel.batch.rawValue + ClusterWire.version).utf8))

        public var description: String {
            switch self {
            case .worker: "worker channel"
            case .status: "status channel"
            case .batch: "activation batch channel"
            }
        }
    }

    /// Frame 1 of every message: one byte. Values are unique across channels.
    public enum Command: UInt8, CaseIterable, Sendable, CustomStringConvertible {
        /// Worker → coordinator: register (with capabilities) and ask for a unit.
        case ready = 0x01
        /// Coordinator → worker: a unit, its lease, its text and the collection settings.
        case assign = 0x02
        /// Both ways on the worker channel: liveness, and the lease a worker works on.
        case heartbeat = 0x03
        /// Worker → coordinator: a unit's shard files are durable; checksums and statistics.
        case done = 0x04
        /// Worker → coordinator: a unit could not be finished, or is given back.
        case failed = 0x05
        /// Coordinator → worker: a DONE or FAILED is recorded (or ignored), and how.
        case ack = 0x06
        /// Coordinator → worker: stop working on a lease; its unit is finished elsewhere.
        case cancel = 0x07
        /// Coordinator → worker: finish or give back the current unit, then exit.
        case shutdown = 0x08
        /// Coordinator → worker: unknown session (e.g. the coordinator restarted); send READY.
        case disconnect = 0x09
        /// Status client → coordinator.
        case statusRequest = 0x21
        /// Coordinator → status client.
        case statusReply = 0x22
        /// Worker → trainer: LZ4-compressed rows of one hook and their statistics.
        case batch = 0x31

        public var name: String {
            switch self {
            case .ready: "READY"
            case .assign: "ASSIGN"
            case .heartbeat: "HEARTBEAT"
            case .done: "DONE"
            case .failed: "FAILED"
            case .ack: "ACK"
            case .cancel: "CANCEL"
            case .shutdown: "SHUTDOWN"
            case .disconnect: "DISCONNECT"
            case .statusRequest: "STATUS"
            case .statusReply: "STATUS-REPLY"
            case .batch: "BATCH"
            }
        }

        public var description: String { name }

        /// The channel the command belongs to.
        public var channel: Channel {
            switch self {
            case .statusRequest, .statusReply: .status
            case .batch: .batch
            default: .worker
            }
        }

        /// Frame 1 of its messages, made once.
        public var frame: [UInt8] { Self.frames[Int(rawValue)] }

        private static let frames = (0...255).map { [UInt8($0)] }
    }

    // MARK: Control bodies

    /// The value type of a control-body field (byte 1 of the field).
    public enum FieldType: UInt8, Sendable, CustomStringConvertible {
        /// 8 bytes, unsigned little-endian.
        case uint = 1
        /// 1 byte, 0 or 1.
        case bool = 2
        /// 8 bytes, IEEE 754 binary64 little-endian.
        case double = 3
        /// UTF-8 text.
        case string = 4
        /// Raw bytes.
        case bytes = 5
        /// A multiple of 8 bytes: binary64 values.
        case doubles = 6
        /// A nested control body.
        case fields = 7

        public var description: String {
            switch self {
            case .uint: "uint"
            case .bool: "bool"
            case .double: "double"
            case .string: "string"
            case .bytes: "bytes"
            case .doubles: "doubles"
            case .fields: "fields"
            }
        }
    }

    /// Field tags of control bodies, one registry for every command and journal record.
    /// Each tag always has the same type. Receivers ignore tags they do not know.
    public enum Tag: UInt8, CaseIterable, Sendable, CustomStringConvertible {
        case unit = 0x01
        case lease = 0x02
        case attempt = 0x03
        case run = 0x04
        case worker = 0x05
        case reason = 0x06
        case host = 0x07
        case process = 0x08
        case threads = 0x09
        case software = 0x0A
        case modelSHA256 = 0x0B
        case tokens = 0x0C
        case rows = 0x0D
        case documents = 0x0E
        case windows = 0x0F
        case heartbeatMilliseconds = 0x10
        case liveness = 0x11
        case settings = 0x12
        case hook = 0x13
        case context = 0x14
        case dtype = 0x15
        case skipSpecial = 0x16
        case batchWindows = 0x17
        case blockRows = 0x18
        case modelPath = 0x19
        case modelName = 0x1A
        case outputDirectory = 0x1B
        case trainerEndpoint = 0x1C
        case corpus = 0x1D
        case file = 0x1E
        case fileIndex = 0x1F
        case byteStart = 0x20
        case byteEnd = 0x21
        case firstDocument = 0x22
        case firstLine = 0x23
        case lineCount = 0x24
        case shard = 0x25
        case bytes = 0x26
        case crc32c = 0x27
        case statistics = 0x28
        case count = 0x29
        case mean = 0x2A
        case variance = 0x2B
        case meanNorm = 0x2C
        case skipped = 0x2D
        case tokenizeSeconds = 0x2E
        case forwardSeconds = 0x2F
        case encodeSeconds = 0x30
        case wallSeconds = 0x31
        case disposition = 0x32
        case outcome = 0x33
        case sequence = 0x34
        case final = 0x35
        case width = 0x36
        case uncompressedBytes = 0x37
        case phase = 0x38
        case uptimeSeconds = 0x39
        case planningComplete = 0x3A
        case unitsPlanned = 0x3B
        case unitsDone = 0x3C
        case unitsLeased = 0x3D
        case unitsPending = 0x3E
        case unitsFailed = 0x3F
        case tokensPerSecond = 0x40
        case etaSeconds = 0x41
        case workerStatus = 0x42
        case lastSeenSeconds = 0x43
        case includeWorkers = 0x44
        case failure = 0x45
        case format = 0x46
        case textField = 0x47
        case unitTokens = 0x48
        case maxAttempts = 0x49
        case maxLineBytes = 0x4A
        case textBytes = 0x4B
        case linesBefore = 0x4C
        case byteOffset = 0x4D
        case ready = 0x4E
        case assignBeforeAck = 0x4F

        /// The one type this tag's values have.
        public var type: FieldType {
            switch self {
            case .worker, .reason, .host, .software, .hook, .dtype, .modelPath, .modelName, .outputDirectory,
                .trainerEndpoint, .file, .format, .textField:
                .string
            case .modelSHA256: .bytes
            case .skipSpecial, .final, .planningComplete, .includeWorkers, .ready, .assignBeforeAck: .bool
            case .meanNorm, .tokenizeSeconds, .forwardSeconds, .encodeSeconds, .wallSeconds, .uptimeSeconds,
                .tokensPerSecond, .etaSeconds, .lastSeenSeconds:
                .double
            case .mean, .variance: .doubles
            case .settings, .corpus, .shard, .statistics, .skipped, .workerStatus, .failure: .fields
            default: .uint
            }
        }

        public var description: String { name }

        /// The field's name in messages and documentation, e.g. `model_sha256`.
        public var name: String {
            switch self {
            case .unit: "unit"
            case .lease: "lease"
            case .attempt: "attempt"
            case .run: "run"
            case .worker: "worker"
            case .reason: "reason"
            case .host: "host"
            case .process: "process"
            case .threads: "threads"
            case .software: "software"
            case .modelSHA256: "model_sha256"
            case .tokens: "tokens"
            case .rows: "rows"
            case .documents: "documents"
            case .windows: "windows"
            case .heartbeatMilliseconds: "heartbeat_ms"
            case .liveness: "liveness"
            case .settings: "settings"
            case .hook: "hook"
            case .context: "context"
            case .dtype: "dtype"
            case .skipSpecial: "skip_special"
            case .batchWindows: "batch_windows"
            case .blockRows: "block_rows"
            case .modelPath: "model_path"
            case .modelName: "model_name"
            case .outputDirectory: "output_directory"
            case .trainerEndpoint: "trainer_endpoint"
            case .corpus: "corpus"
            case .file: "file"
            case .fileIndex: "file_index"
            case .byteStart: "byte_start"
            case .byteEnd: "byte_end"
            case .firstDocument: "first_document"
            case .firstLine: "first_line"
            case .lineCount: "line_count"
            case .shard: "shard"
            case .bytes: "bytes"
            case .crc32c: "crc32c"
            case .statistics: "statistics"
            case .count: "count"
            case .mean: "mean"
            case .variance: "variance"
            case .meanNorm: "mean_norm"
            case .skipped: "skipped"
            case .tokenizeSeconds: "tokenize_s"
            case .forwardSeconds: "forward_s"
            case .encodeSeconds: "encode_s"
            case .wallSeconds: "wall_s"
            case .disposition: "disposition"
            case .outcome: "outcome"
            case .sequence: "sequence"
            case .final: "final"
            case .width: "width"
            case .uncompressedBytes: "uncompressed_bytes"
            case .phase: "phase"
            case .uptimeSeconds: "uptime_s"
            case .planningComplete: "planning_complete"
            case .unitsPlanned: "units_planned"
            case .unitsDone: "units_done"
            case .unitsLeased: "units_leased"
            case .unitsPending: "units_pending"
            case .unitsFailed: "units_failed"
            case .tokensPerSecond: "tok_s"
            case .etaSeconds: "eta_s"
            case .workerStatus: "worker_status"
            case .lastSeenSeconds: "last_seen_s"
            case .includeWorkers: "include_workers"
            case .failure: "failure"
            case .format: "format"
            case .textField: "text_field"
            case .unitTokens: "unit_tokens"
            case .maxAttempts: "max_attempts"
            case .maxLineBytes: "max_line_bytes"
            case .textBytes: "text_bytes"
            case .linesBefore: "lines_before"
            case .byteOffset: "byte_offset"
            case .ready: "ready"
            case .assignBeforeAck: "assign_before_ack"
            }
        }
    }

    /// Bytes before a field's value: tag (1), type (1), value length (4, little-endian).
    public static let fieldHeaderSize = 6

    // MARK: ASSIGN line table

    /// Bytes per line in ASSIGN frame 3: raw byte length (8), status (1), text length (4).
    public static let lineRecordSize = 13

    /// Byte 8 of a line record: a document whose text is in frame 4, or why the line is
    /// skipped (the names are those of `SkipReason` in module Corpus).
    public enum LineStatus: UInt8, CaseIterable, Sendable {
        case text = 0
        case invalidUTF8 = 1
        case invalidJSON = 2
        case missingField = 3
        case emptyDocument = 4
        case lineTooLong = 5
    }

    // MARK: Timing

    public enum Defaults {
        /// How often each side of the worker channel sends HEARTBEAT when it has nothing
        /// else to send.
        public static let heartbeatInterval: Duration = .seconds(1)
        /// A peer (and a lease) is dead after this many intervals without any message.
        public static let liveness = 3
        /// A worker's first reconnect delay, doubled up to ``reconnectMaximum``.
        public static let reconnectInitial: Duration = .seconds(1)
        public static let reconnectMaximum: Duration = .seconds(32)
        /// How long a status client waits for STATUS-REPLY.
        public static let statusTimeout: Duration = .seconds(3)
        /// Approximate tokens per unit.
        public static let unitTokens = 65_536
        /// Bytes of corpus text assumed per token when cutting units.
        public static let bytesPerToken = 4
        /// Counted failures (FAILED or an expired lease) after which a unit is poisoned.
        public static let maxAttempts = 3
        public static let batchWindows = 32
    }

    // MARK: Limits

    /// Bounds every receiver checks before it allocates. Sockets set their ZeroMQ maximum
    /// message size (`ZMQ_MAXMSGSIZE`) from these.
    public enum Limits {
        /// Header frames are 6 bytes; a command frame is 1 byte.
        public static let headerFrameSize = 6
        /// Longest name (worker, host, hook, dtype, model name).
        public static let maxNameBytes = 1024
        /// Longest path or endpoint.
        public static let maxPathBytes = 4096
        /// Longest reason in FAILED, CANCEL, SHUTDOWN, DISCONNECT.
        public static let maxReasonBytes = 4096
        public static let maxHooks = 256
        public static let maxContext = 1 << 20
        public static let maxWidth = 1 << 20
        public static let maxBlockRows = 1 << 20
        public static let maxBatchWindows = 1 << 16
        public static let maxThreads = 4096
        public static let maxLiveness = 1000
        public static let maxHeartbeatMilliseconds: UInt64 = 3_600_000
        /// Unit ids must stay below 2³¹: a window id is `unit << 32 | index` in an Int64.
        public static let maxUnitID: UInt64 = (1 << 31) - 1
        /// Longest corpus line (document) the planner and the unit reader keep; longer lines
        /// are skipped as `line_too_long`. Equal to `actcluster collect`'s limit.
        public static let maxLineBytes = 64 << 20
        /// Largest `--unit-tokens`.
        public static let maxUnitTokens = 8 << 20
        /// Most lines in one unit; the planner closes a unit when it reaches this.
        public static let maxUnitLines = 1 << 20
        /// ASSIGN frame 4: at most one unit budget plus one longest line.
        public static let maxUnitTextBytes = maxUnitTokens * 4 + maxLineBytes
        /// Largest control body (frame 2) of any command. DONE carries per-hook statistics
        /// (16 bytes per dimension per hook), so it is the largest.
        public static let maxControlBodyBytes = 64 << 20
        /// Largest uncompressed activation batch.
        public static let maxBatchBytes = 256 << 20
        /// Largest compressed batch frame: LZ4 frames grow at most by about 1/255 plus headers.
        public static let maxBatchFrameBytes = maxBatchBytes + maxBatchBytes / 255 + (1 << 16)
        /// Most per-worker entries and failure entries in STATUS-REPLY.
        public static let maxStatusWorkers = 1 << 16
        public static let maxStatusFailures = 64

        /// `ZMQ_MAXMSGSIZE` for the coordinator's worker ROUTER (largest frame a worker sends).
        public static let coordinatorMaxMessageBytes = Int64(maxControlBodyBytes)
        /// `ZMQ_MAXMSGSIZE` for a worker's DEALER (ASSIGN text is the largest frame).
        public static let workerMaxMessageBytes = Int64(maxUnitTextBytes)
        /// `ZMQ_MAXMSGSIZE` for the coordinator's status ROUTER.
        public static let statusRequestMaxMessageBytes: Int64 = 64 << 10
        /// `ZMQ_MAXMSGSIZE` for a status client.
        public static let statusReplyMaxMessageBytes = Int64(maxControlBodyBytes)
        /// `ZMQ_MAXMSGSIZE` for the trainer's PULL.
        public static let trainerMaxMessageBytes = Int64(maxBatchFrameBytes)
    }

    // MARK: Shard file names

    /// The name a worker gives a shard it writes for a lease, e.g.
    /// `unit-00000017.lease-0000000042.blocks.3.hook_resid_post.shard`. The lease in the name
    /// keeps two attempts at one unit from ever writing the same file, so deleting the files
    /// of an ignored DONE cannot touch the accepted ones. `/` in a hook becomes `_`.
    public static func shardFileName(unit: UInt64, lease: UInt64, hook: String) -> String {
        // Built in place: the coordinator checks a name per DONE and makes one per manifest
        // line. The parts are written by functions that take the position and return the next,
        // not by closures capturing it: a captured position is checked for exclusive access at
        // every write. The hook is read as contiguous bytes, not through its UTF8View.
        String(unsafeUninitializedCapacity: 5 + 20 + 7 + 20 + 1 + hook.utf8.count + 6) { buffer in
            var at = put("unit-", into: buffer, at: 0)
            at = putPadded(unit, width: 8, into: buffer, at: at)
            at = put(".lease-", into: buffer, at: at)
            at = putPadded(lease, width: 10, into: buffer, at: at)
            let hookStart = put(".", into: buffer, at: at)
            var hook = hook
            let hookEnd = hook.withUTF8 { name in
                for (offset, byte) in name.enumerated() { buffer[hookStart + offset] = byte == UInt8(ascii: "/") ? UInt8(ascii: "_") : byte }
                return hookStart + name.count
            }
            return put(".shard", into: buffer, at: hookEnd)
        }
    }

    private static func put(_ text: StaticString, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) -> Int {
        let count = text.utf8CodeUnitCount
        (buffer.baseAddress! + start).update(from: text.utf8Start, count: count)
        return start + count
    }

    /// `value` in decimal, left-padded with zeros to `width` digits.
    private static func putPadded(_ value: UInt64, width: Int, into buffer: UnsafeMutableBufferPointer<UInt8>, at start: Int) -> Int {
        var digits = 1, rest = value
        while rest >= 10 {
            rest /= 10
            digits += 1
        }
        let end = start + max(digits, width)
        var position = end
        rest = value
        repeat {
            position -= 1
            buffer[position] = UInt8(ascii: "0") + UInt8(rest % 10)
            rest /= 10
        } while rest > 0
        while position > start {
            position -= 1
            buffer[position] = UInt8(ascii: "0")
        }
        return end
    }
}

/// Constants of the coordinator's journal file, version 1 (<doc:JournalFile>).
public enum JournalFormat {
    /// "ACTJOURN": the first 8 bytes of a journal.
    public static let magic: [UInt8] = Array("ACTJOURN".utf8)
    public static let version: UInt16 = 1
    /// Magic (8), version (2), reserved (2), CRC-32C of the first 12 bytes (4).
    public static let headerSize = 16
    /// Payload length (4), CRC-32C of those 4 bytes (4), CRC-32C of the payload (4).
    public static let recordHeaderSize = 12
    /// Largest event: a DONE body plus the kind byte.
    public static let maxEventBytes = ClusterWire.Limits.maxControlBodyBytes + 1
    /// Largest record payload (one commit of events, each with a 4-byte length). A commit
    /// larger than this is split into several records.
    public static let maxRecordBytes = 4 * (maxEventBytes + 4)
    /// The journal's conventional name in the output folder.
    public static let defaultFileName = "coordinator.journal"
    /// Lease ids reserved per `leases_reserved` record. The ASSIGNs after a block runs out wait
    /// for the sync that holds the next one, so a block lasts a minute at 20,000 units/s. A
    /// restart skips the unused rest of its block; file names pad ids to 10 digits, which
    /// thousands of restarts do not outgrow.
    public static let leaseBlock: UInt64 = 1 << 20

    /// Byte 0 of an event; the rest is a control body.
    public enum RecordKind: UInt8, CaseIterable, Sendable, CustomStringConvertible {
        case started = 1
        case planned = 2
        case planningFinished = 3
        case leased = 4
        case expired = 5
        case failed = 6
        case released = 7
        case done = 8
        case completed = 9
        case leasesReserved = 10

        public var description: String {
            switch self {
            case .started: "started"
            case .planned: "planned"
            case .planningFinished: "planning_finished"
            case .leased: "leased"
            case .expired: "expired"
            case .failed: "failed"
            case .released: "released"
            case .done: "done"
            case .completed: "completed"
            case .leasesReserved: "leases_reserved"
            }
        }
    }
}
