import ClusterProtocol
import Coordinator
import Corpus
import Foundation
import Logfmt
import Logging
import Platform
import Shards
import Synchronization
import ZeroMQ

/// Test doubles around the real coordinator: it runs on its own thread with real sockets on
/// loopback, and scripted workers (plain DEALER sockets) talk to it message by message.

func scratchDirectory(_ name: String) throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("coordinator-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return directory
}

/// A txt corpus of `documents` lines, every `badEvery`-th line (if any) invalid UTF-8.
func writeCorpus(_ path: String, documents: Int, badEvery: Int? = nil) throws {
    var bytes: [UInt8] = []
    for index in 0..<documents {
        if let badEvery, index % badEvery == badEvery - 1 {
            bytes += [0xFF, 0xFE, 0x0A]
        } else {
            bytes += Array("document \(index) has a few words in it, enough for a unit of its own\n".utf8)
        }
    }
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

enum Fixture {
    static let hooks = ["blocks.0.hook_resid_post", "blocks.1.hook_mlp_out"]

    static func run(corpus: [String], out: String, unitTokens: Int = 32, maxAttempts: Int = 3) -> RunDefinition {
        let model = ModelReference(path: "/models/tiny", name: "tiny", configSHA256: (0..<32).map { UInt8($0) })
        let settings = UnitSettings(hooks: hooks, context: 16, dtype: .bf16, model: model, outputDirectory: out)
        return RunDefinition(
            corpus: CorpusSpec(paths: corpus, format: .txt, unitTokens: unitTokens), settings: settings, maxAttempts: maxAttempts)
    }
}

/// Counts stop requests the way SIGINT does for the CLI.
final class StopSwitch: Sendable {
    private let count = Atomic<Int>(0)
    func press() { count.add(1, ordering: .relaxed) }
    var presses: Int { count.load(ordering: .relaxed) }
}

/// The real coordinator on a background thread.
final class RunningCoordinator: @unchecked Sendable {
    let coordinator: Coordinator
    let log = InMemoryLogOutput()
    let stop = StopSwitch()
    private let finished = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var result: Result<CoordinatorOutcome, Error>?

    init(_ configure: (inout CoordinatorConfiguration) -> Void = { _ in }, run: RunDefinition, bind: String = "tcp://127.0.0.1:0", statusBind: String? = nil) throws {
        var configuration = CoordinatorConfiguration(run: run, bind: bind, statusBind: statusBind)
        configuration.heartbeatInterval = .milliseconds(100)
        configuration.liveness = 3
        configure(&configuration)
        let output = log
        let logger = Logger(label: "test.coordinator") { _ in LogfmtLogHandler(role: "coordinator", output: output, level: .debug) }
        let stop = self.stop
        coordinator = try Coordinator(configuration: configuration, logger: logger, stopRequests: { stop.presses })
        let thread = Thread { [self] in
            let outcome = Result { try coordinator.run() }
            lock.withLock { result = outcome }
            finished.signal()
        }
        thread.stackSize = 4 << 20
        thread.start()
    }

    var endpoint: String { coordinator.workerEndpoint }

    /// A coordinator over a corpus of `documents` lines in a new scratch folder, one unit per
    /// line; the folder is also the run's output.
    static func onePerLine(
        _ name: String, documents: Int, _ configure: (inout CoordinatorConfiguration) -> Void = { _ in }
    ) throws -> (coordinator: RunningCoordinator, directory: String) {
        let directory = try scratchDirectory(name)
        let corpus = directory + "/corpus.txt"
        try writeCorpus(corpus, documents: documents)
        return (try RunningCoordinator(configure, run: Fixture.run(corpus: [corpus], out: directory, unitTokens: 8)), directory)
    }

    /// Waits for the run to end; throws what the coordinator threw.
    func outcome(timeout: Duration = .seconds(30)) throws -> CoordinatorOutcome {
        guard finished.wait(timeout: .now() + timeout.seconds) == .success else { throw HarnessError("the coordinator did not finish within \(timeout)") }
        finished.signal()
        return try lock.withLock { result! }.get()
    }

    /// One STATUS round trip to the status endpoint.
    func status(_ context: ZeroMQContext) throws -> StatusReport {
        let client = try context.socket(.request)
        defer { client.close() }
        try client.configure(linger: .zero)
        try client.connect(coordinator.statusEndpoint!)
        try client.send(multipart: StatusMessage.request(StatusRequest()).encode())
        guard let frames = try client.receiveMultipart(timeout: .seconds(5)), case .reply(let report) = try StatusMessage.decode(frames: frames.map(\.bytes))
        else { throw HarnessError("no status reply") }
        return report
    }

    func events(_ name: String) -> [String] { log.lines.filter { $0.contains("event=\(name) ") || $0.hasSuffix("event=\(name)") } }
}

/// Calls `condition` until it holds (it paces itself); throws after `timeout`.
func waitFor(_ what: String, timeout: Duration = .seconds(10), _ condition: () throws -> Bool) throws {
    let deadline = ContinuousClock.now + timeout
    while try !condition() {
        guard ContinuousClock.now < deadline else { throw HarnessError("timed out after \(timeout) waiting until \(what)") }
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A worker played by the test: a DEALER socket and nothing else.
final class ScriptedWorker {
    let name: String
    let socket: ZeroMQSocket
    let directory: String

    init(_ context: ZeroMQContext, endpoint: String, name: String, directory: String, configure: (ZeroMQSocket) throws -> Void = { _ in }) throws {
        self.name = name
        self.directory = directory
        socket = try context.socket(.dealer)
        try socket.configure(linger: .zero)
        try configure(socket)
        try socket.connect(endpoint)
    }

    deinit { socket.close() }

    func send(_ message: WorkerMessage) throws { try socket.send(multipart: message.encode()) }

    func ready() throws { try send(.ready(Ready(worker: name, processID: 1, threads: 1))) }

    /// READY saying whether it takes its next ASSIGN before the ACK of its report.
    func ready(assignBeforeAck: Bool) throws { try send(.ready(Ready(worker: name, assignBeforeAck: assignBeforeAck))) }

    func heartbeat(_ assignment: Assignment?) throws {
        try send(.heartbeat(WorkerHeartbeat(worker: name, lease: assignment?.lease, unit: assignment?.unit, tokens: assignment == nil ? nil : 1)))
    }

    /// Whether it heartbeats while it waits, as a real worker does (a silent one does not).
    var heartbeats = true

    /// The next message other than a heartbeat, or nil after `timeout`. Heartbeats every
    /// 50 ms while it waits.
    func next(timeout: Duration = .seconds(5)) throws -> CoordinatorMessage? {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            // Without a connection (a refused CURVE handshake) a DEALER send would block.
            if heartbeats { try? socket.send(multipart: WorkerMessage.heartbeat(WorkerHeartbeat(worker: name)).encode(), dontWait: true) }
            guard let frames = try socket.receiveMultipart(timeout: min(.milliseconds(50), deadline - ContinuousClock.now)) else { continue }
            let message = try CoordinatorMessage.decode(frames: frames.map(\.bytes))
            if case .heartbeat = message { continue }
            return message
        }
        return nil
    }

    func assignment(timeout: Duration = .seconds(5)) throws -> Assignment {
        guard let message = try next(timeout: timeout) else { throw HarnessError("\(name): no ASSIGN within \(timeout)") }
        guard case .assign(let assignment) = message else { throw HarnessError("\(name): expected ASSIGN, got \(message.command)") }
        return assignment
    }

    /// The next ACK. CANCEL and SHUTDOWN before it are skipped: a worker that has sent DONE
    /// for a lease ignores CANCEL of it, and finishes its report before it shuts down.
    func acknowledgement(timeout: Duration = .seconds(5)) throws -> Acknowledgement {
        var message = try next(timeout: timeout)
        while let skipped = message, skipped.command == .cancel || skipped.command == .shutdown { message = try next(timeout: timeout) }
        guard let message else { throw HarnessError("\(name): no ACK within \(timeout)") }
        guard case .ack(let ack) = message else { throw HarnessError("\(name): expected ACK, got \(message.command)") }
        return ack
    }

    /// Writes stand-in shard files for the assignment and returns the DONE that reports them:
    /// one row per text line, so the counts can be checked against the corpus.
    func finish(_ assignment: Assignment) throws -> UnitDone {
        let texts = assignment.lines.filter { if case .success = $0.content { true } else { false } }.count
        var skipped: [String: Int] = [:]
        for line in assignment.lines { if case .failure(let reason) = line.content { skipped[reason.rawValue, default: 0] += 1 } }
        var shards: [ShardReport] = []
        var statistics: [String: HookStatistics] = [:]
        for hook in assignment.settings.hooks {
            let file = ClusterWire.shardFileName(unit: assignment.unit.rawValue, lease: assignment.lease.rawValue, hook: hook)
            let bytes = Array("unit \(assignment.unit) lease \(assignment.lease) \(hook)\n".utf8)
            try Data(bytes).write(to: URL(fileURLWithPath: directory + "/" + file))
            shards.append(ShardReport(hook: hook, file: file, rows: texts, bytes: bytes.count, crc32c: CRC32C.checksum(bytes)))
            statistics[hook] = HookStatistics(count: texts, mean: [1, 2], variance: [0.5, 0.25], meanNorm: 2)
        }
        return UnitDone(
            unit: assignment.unit, lease: assignment.lease, shards: shards, statistics: statistics, skipped: skipped, documents: texts, windows: texts,
            rows: texts, tokens: texts, timings: UnitTimings(wall: 0.01))
    }

    /// Sends the DONE of `assignment` with `ready`: the worker asks for its next unit with it.
    func finishAsking(_ assignment: Assignment) throws {
        var done = try finish(assignment)
        done.ready = true
        try send(.done(done))
    }

    /// READY, ASSIGN, DONE, ACK; returns the assignment, or nil when told to shut down.
    @discardableResult
    func work(_ expectedOutcome: Acknowledgement.Outcome = .accepted) throws -> Assignment? {
        try ready()
        guard let message = try next() else { throw HarnessError("\(name): nothing after READY") }
        switch message {
        case .assign(let assignment):
            try send(.done(try finish(assignment)))
            let ack = try acknowledgement()
            guard ack.outcome == expectedOutcome, ack.lease == assignment.lease else {
                throw HarnessError("\(name): ACK \(ack.outcome) for lease \(ack.lease), expected \(expectedOutcome) for \(assignment.lease)")
            }
            return assignment
        case .shutdown: return nil
        default: throw HarnessError("\(name): expected ASSIGN or SHUTDOWN, got \(message.command)")
        }
    }
}
