import ClusterProtocol
import Monitoring

/// Everything a coordinator needs to run. The run's definition goes into the journal; the
/// rest (endpoints, keys, timing) may change between restarts.
public struct CoordinatorConfiguration: Sendable {
    /// CURVE security for the worker and status sockets.
    public struct Curve: Sendable {
        /// The coordinator's secret key (Z85).
        public var secretKey: String
        /// Worker and status-client public keys (Z85) to admit; nil admits any client that
        /// knows the coordinator's public key.
        public var allowedClientKeys: Set<String>?

        public init(secretKey: String, allowedClientKeys: Set<String>? = nil) {
            self.secretKey = secretKey
            self.allowedClientKeys = allowedClientKeys
        }
    }

    public var run: RunDefinition
    /// Where workers connect, e.g. `tcp://*:5555`.
    public var bind: String
    /// Where `actcluster status` connects; nil for no status socket.
    public var statusBind: String?
    public var curve: Curve?
    /// How often each side of the worker channel speaks at least.
    public var heartbeatInterval: Duration = ClusterWire.Defaults.heartbeatInterval
    /// Silent intervals after which a worker is lost and its lease expires.
    public var liveness = ClusterWire.Defaults.liveness
    /// How long a drain (SIGINT/SIGTERM) waits for in-flight units before releasing them.
    public var drainTimeout: Duration = .seconds(60)
    /// Units planned ahead, beyond one for each worker waiting for a unit.
    public var lookahead = 64
    /// Check that a DONE's shard files exist with the reported sizes before accepting it.
    /// Only `bench dispatch`, whose null workers write no files, turns this off.
    public var checkShardFiles = true
    /// Most worker messages handled between two journal commits.
    public var messagesPerCommit = 4096
    /// Least time between the starts of two journal commits while a message a worker may be
    /// waiting for waits for one: an ACK that may not linger, a CANCEL, the next ASSIGN of a
    /// worker without `assign_before_ack`. Each commit is a write and an `fdatasync` (a VM exit
    /// on virtual disks) plus two thread wake-ups; when reports trickle in one by one,
    /// committing each at once would cost more than handling it.
    public var commitInterval = Self.defaultCommitInterval
    /// The same while only ACKs that may linger wait (or nothing does): no worker waits for
    /// those, and they wait for the worker's next message anyway (``ackLinger``). At 20,000
    /// units/s, commits every 2 ms took a third of the CPU the coordinator spent beyond the
    /// floor in `bench dispatch`'s paced phase; 100 ms apart rather than 20 took another 1–2 µs
    /// per unit off, and a fifth of the VM exits (one of which, on a virtual disk, once held a
    /// core for 10 ms). Well under the liveness period, after which a worker sends an
    /// unacknowledged report again. Events buffered at a crash are lost as in any other
    /// commit: nothing was acknowledged on them, and the workers report again.
    public var lingeringCommitInterval = Self.defaultLingeringCommitInterval

    public static let defaultCommitInterval: Duration = .milliseconds(2)
    public static let defaultLingeringCommitInterval: Duration = .milliseconds(100)
    /// How long a durable ACK the worker does not wait for (its report carried `ready`, and
    /// the worker took the next ASSIGN before it) may wait to leave with the next message to
    /// that worker, in one write with it; nil for a quarter of the heartbeat interval, zero to
    /// send every ACK as soon as it is durable. Well under the liveness period, after which a
    /// worker sends an unacknowledged report again.
    public var ackLinger: Duration?
    /// Where to publish gauges and counters for Prometheus (`--metrics-bind`), if anywhere.
    public var metrics: MetricsRegistry?
    /// The scheduler slice the loop and libzmq's I/O threads ask for (``SchedulerSlice``); nil
    /// or zero keeps the kernel's (about 1.4 ms on 2 cores). Every lease waits for both
    /// threads, and when the machine is busy each wake-up of theirs waited behind whatever ran
    /// a full slice. In `bench dispatch` on a busy 2-core host a 0.3 ms slice met the p99 goal
    /// in 30 of 30 rounds against 27 of 30 without; with the whole bench on one core the
    /// record is mixed (84 of 102 against 79 of 102).
    public var schedulerSlice: Duration? = Self.defaultSchedulerSlice

    public static let defaultSchedulerSlice: Duration = .microseconds(defaultSchedulerSliceMicroseconds)
    /// `--scheduler-slice` takes microseconds.
    public static let defaultSchedulerSliceMicroseconds = 300

    /// Why `--scheduler-slice` cannot be `microseconds`: nil for 0 (the kernel's) and for the
    /// 100–100,000 Linux accepts.
    public static func schedulerSliceProblem(microseconds: Int) -> String? {
        microseconds == 0 || (100...100_000).contains(microseconds)
            ? nil : "--scheduler-slice must be 0 (the kernel's) or 100 to 100000 microseconds, the range Linux accepts"
    }

    public init(run: RunDefinition, bind: String, statusBind: String? = nil, curve: Curve? = nil) {
        self.run = run
        self.bind = bind
        self.statusBind = statusBind
        self.curve = curve
    }

    public var outputDirectory: String { run.settings.outputDirectory }
    public var journalPath: String { outputDirectory + "/" + JournalFormat.defaultFileName }
    /// A lease or worker is dead after this much silence.
    public var livenessPeriod: Duration { heartbeatInterval * liveness }
    public var effectiveAckLinger: Duration { ackLinger ?? heartbeatInterval / 4 }
}

/// How a coordinator's run ended.
public enum CoordinatorOutcome: Equatable, Sendable {
    /// Every unit is done or failed and the manifest is written.
    case completed(CoordinatorSummary)
    /// Stopped by a signal before the end; the journal holds everything done so far.
    case drained(CoordinatorSummary)
}

/// Figures for the closing log line and the CLI's summary.
public struct CoordinatorSummary: Equatable, Sendable {
    public var unitsPlanned: Int
    public var unitsDone: Int
    public var unitsFailed: Int
    public var rows: Int
    public var tokens: Int
    public var documents: Int
    public var seconds: Double
    public var manifestPath: String?
    /// Failed units with the reason of their last attempt.
    public var failures: [(unit: UnitID, reason: String)]

    public static func == (a: CoordinatorSummary, b: CoordinatorSummary) -> Bool {
        a.unitsPlanned == b.unitsPlanned && a.unitsDone == b.unitsDone && a.unitsFailed == b.unitsFailed && a.rows == b.rows
            && a.tokens == b.tokens && a.documents == b.documents && a.manifestPath == b.manifestPath
            && a.failures.map(\.unit) == b.failures.map(\.unit) && a.failures.map(\.reason) == b.failures.map(\.reason)
    }
}

/// Why a coordinator cannot start or go on, as a sentence for the user.
public struct CoordinatorError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
