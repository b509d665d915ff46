import ClusterProtocol
import Corpus
import Foundation
import Logging
import Platform
import Shards
import Testing
import Worker
import ZeroMQ

/// The real MiniLM folder; the tests that need it are skipped without it.
let testModel = ProcessInfo.processInfo.environment["ACTCLUSTER_TEST_MODEL"]
let hasTestModel = testModel != nil
let skipMessage: Comment = "set ACTCLUSTER_TEST_MODEL to the all-MiniLM-L6-v2 folder (deploy/test.sh does)"

let patience: Duration = .seconds(60)

func scratchDirectory() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("worker-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func configSHA256(_ model: String) throws -> [UInt8] { SHA256.hash(try readFile(model + "/config.json")) }

/// Keeps every log record, for checking which events a worker logged.
final class LogRecorder: @unchecked Sendable {
    struct Record {
        var level: Logger.Level
        var event: String
        var metadata: Logger.Metadata
    }
    private let lock = NSLock()
    private var records: [Record] = []

    func append(_ record: Record) { lock.withLock { records.append(record) } }
    var all: [Record] { lock.withLock { records } }
    func events(_ name: String) -> [Record] { all.filter { $0.event == name } }

    var logger: Logger {
        var logger = Logger(label: "test.worker") { _ in RecordingHandler(recorder: self) }
        logger.logLevel = .debug
        return logger
    }
}

struct RecordingHandler: LogHandler {
    let recorder: LogRecorder
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .debug

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        recorder.append(.init(level: event.level, event: "\(event.message)", metadata: merged))
    }
}

/// A real `Worker` on a thread of its own, as `actcluster worker` runs it.
final class RunningWorker: @unchecked Sendable {
    let worker: Worker
    let log = LogRecorder()
    private let lock = NSLock()
    private var result: Result<Void, any Error>?

    init(_ configuration: WorkerConfiguration) throws {
        worker = try Worker(configuration: configuration, logger: log.logger)
        let thread = Thread { [self] in
            let outcome = Result { try worker.run() }
            lock.withLock { result = outcome }
        }
        thread.start()
    }

    var exit: Result<Void, any Error>? { lock.withLock { result } }

    /// Waits for `run()` to return.
    func waitForExit(timeout: Duration = patience) -> Result<Void, any Error>? {
        let clock = ContinuousClock(), deadline = clock.now + timeout
        while clock.now < deadline {
            if let exit { return exit }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return nil
    }
}

/// A scripted coordinator: a ROUTER on tcp://127.0.0.1, one worker peer, heartbeats sent
/// while it waits (unless told to fall silent).
final class FakeCoordinator {
    let context: ZeroMQContext
    let router: ZeroMQSocket
    let endpoint: String
    var peer: Envelope?
    var heartbeat: Duration = .milliseconds(50)
    var keepAlive = true
    private let clock = ContinuousClock()
    private var lastHeartbeat = ContinuousClock.now

    init(curveSecretKey: String? = nil) throws {
        context = try ZeroMQContext()
        router = try context.socket(.router)
        try router.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.coordinatorMaxMessageBytes)
        if let curveSecretKey { try router.makeCurveServer(secretKey: curveSecretKey) }
        endpoint = try router.bind("tcp://127.0.0.1:0")
    }

    func send(_ message: CoordinatorMessage) throws {
        try sendRaw(message.encode())
    }

    func sendRaw(_ frames: [[UInt8]]) throws {
        let peer = try #require(peer, "no worker has spoken yet")
        try router.send(multipart: peer.wrap(frames))
    }

    /// The next message from the worker (the peer becomes whoever sent it).
    func receive(timeout: Duration = patience) throws -> (Envelope, WorkerMessage) {
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if keepAlive, peer != nil, clock.now - lastHeartbeat >= heartbeat {
                try send(.heartbeat(CoordinatorHeartbeat(run: 1)))
                lastHeartbeat = clock.now
            }
            guard let frames = try router.receiveMultipart(timeout: .milliseconds(10)) else { continue }
            let (envelope, body) = try Envelope.split(frames.map(\.bytes))
            peer = envelope
            return (envelope, try WorkerMessage.decode(frames: body))
        }
        Issue.record("the worker sent nothing for \(timeout)")
        throw CancellationError()
    }

    /// Keeps the worker's connection alive while the test does something else: a heartbeat
    /// when one is due, and whatever the worker sent is read (its envelope kept) and dropped.
    func tick() throws {
        if keepAlive, peer != nil, clock.now - lastHeartbeat >= heartbeat {
            try send(.heartbeat(CoordinatorHeartbeat(run: 1)))
            lastHeartbeat = clock.now
        }
        while let frames = try router.receiveMultipart(timeout: .zero) {
            peer = try Envelope.split(frames.map(\.bytes)).0
        }
    }

    /// Messages other than heartbeats that arrive within `duration` (none expected, usually).
    func messagesBesidesHeartbeats(within duration: Duration) throws -> [WorkerMessage] {
        var others: [WorkerMessage] = []
        let deadline = clock.now + duration
        while clock.now < deadline {
            try tick(keeping: &others)
        }
        return others
    }

    private func tick(keeping others: inout [WorkerMessage]) throws {
        if keepAlive, peer != nil, clock.now - lastHeartbeat >= heartbeat {
            try send(.heartbeat(CoordinatorHeartbeat(run: 1)))
            lastHeartbeat = clock.now
        }
        guard let frames = try router.receiveMultipart(timeout: .milliseconds(10)) else { return }
        let (envelope, body) = try Envelope.split(frames.map(\.bytes))
        peer = envelope
        let message = try WorkerMessage.decode(frames: body)
        if message.command != .heartbeat { others.append(message) }
    }

    /// Skips heartbeats until another message arrives; returns it and the heartbeats seen.
    func receiveSkippingHeartbeats(timeout: Duration = patience) throws -> (WorkerMessage, [WorkerHeartbeat]) {
        var heartbeats: [WorkerHeartbeat] = []
        let deadline = clock.now + timeout
        while true {
            let (_, message) = try receive(timeout: deadline - clock.now)
            guard case .heartbeat(let heartbeat) = message else { return (message, heartbeats) }
            heartbeats.append(heartbeat)
        }
    }
}

/// Documents for a unit: `count` texts, plus one broken JSON line after the second.
func unitLines(count: Int, words: Int = 12) -> [UnitLine] {
    var lines: [UnitLine] = []
    for index in 0..<count {
        let text = "Document \(index) says: " + (0..<words).map { "word\(($0 * 7 + index) % 23)" }.joined(separator: " ") + "."
        lines.append(UnitLine(rawBytes: Int64(text.utf8.count + 12), content: .success(text)))
        if index == 1 { lines.append(UnitLine(rawBytes: 9, content: .failure(.invalidJSON))) }
    }
    return lines
}

func assignment(
    unit: UnitID, lease: LeaseID, lines: [UnitLine], model: String, sha: [UInt8], output: String, trainer: String? = nil,
    batchWindows: Int = 4, heartbeat: Duration = .milliseconds(50), liveness: Int = 4,
    hooks: [String] = ["blocks.1.hook_resid_post", "blocks.4.hook_resid_post"]
) -> Assignment {
    let settings = UnitSettings(
        hooks: hooks, context: 32, dtype: .bf16, skipSpecial: false,
        batchWindows: batchWindows, blockRows: 64, model: ModelReference(path: model, name: "all-MiniLM-L6-v2", configSHA256: sha),
        outputDirectory: output, trainerEndpoint: trainer)
    let raw = lines.reduce(Int64(0)) { $0 + $1.rawBytes }
    let text = lines.reduce(0) { total, line in
        if case .success(let document) = line.content { return total + document.utf8.count }
        return total
    }
    let plan = UnitPlan(
        unit: unit, fileIndex: 0, byteRange: 1000..<(1000 + raw), firstDocumentID: 500, firstLine: 11, lineCount: lines.count, textBytes: text)
    return Assignment(
        run: 1, lease: lease, attempt: 1, heartbeatInterval: heartbeat, liveness: liveness, settings: settings, file: "corpus.jsonl",
        plan: plan, lines: lines)
}

/// Files of a lease left in a folder, temporary ones included.
func leaseFiles(_ directory: String, unit: UnitID, lease: LeaseID) throws -> [String] {
    let prefix = String(ClusterWire.shardFileName(unit: unit.rawValue, lease: lease.rawValue, hook: "").dropLast(".shard".count))
    return try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix(prefix) || $0.hasPrefix("." + prefix) }
}

func workerConfiguration(_ endpoint: String, name: String = "test-worker") -> WorkerConfiguration {
    var configuration = WorkerConfiguration(endpoint: endpoint, name: name, threads: 1, software: "test")
    configuration.heartbeatInterval = .milliseconds(100)
    configuration.liveness = 5
    configuration.reconnectInitial = .milliseconds(100)
    configuration.reconnectMaximum = .milliseconds(400)
    return configuration
}

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Reference/fixtures")

/// A copy of the tiny BERT fixture whose embedding LayerNorm bias is NaN, so every
/// activation is NaN while config.json (and its digest) stay the same.
func brokenTinyBERT(in directory: String) throws -> String {
    let source = fixtures.appendingPathComponent("tiny-bert").path
    let folder = directory + "/tiny-bert-nan"
    try FileManager.default.copyItem(atPath: source, toPath: folder)
    var bytes = try readFile(folder + "/model.safetensors")
    let headerLength = bytes[0..<8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    let header = try #require(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as? [String: Any])
    let entry = try #require(header["embeddings.LayerNorm.bias"] as? [String: Any])
    let offsets = try #require(entry["data_offsets"] as? [Int])
    let nan = Float.nan.bitPattern
    for offset in stride(from: 8 + headerLength + offsets[0], to: 8 + headerLength + offsets[1], by: 4) {
        for byte in 0..<4 { bytes[offset + byte] = UInt8(truncatingIfNeeded: nan >> (8 * UInt32(byte))) }
    }
    try Data(bytes).write(to: URL(fileURLWithPath: folder + "/model.safetensors"))
    return folder
}
