import ClusterProtocol
import Corpus
import Foundation
import Shards

/// A small deterministic generator (SplitMix64), so fuzz runs repeat exactly.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func scratchDirectory(_ name: String) throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(name)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    return directory
}

func writeFile(_ path: String, _ text: String) throws {
    try Data(text.utf8).write(to: URL(fileURLWithPath: path))
}

extension Result {
    var value: Success? { try? get() }
}

enum Samples {
    static let model = ModelReference(path: "/models/all-MiniLM-L6-v2", name: "all-MiniLM-L6-v2", configSHA256: (0..<32).map { UInt8($0 * 7 % 256) })
    static let hooks = ["blocks.3.hook_resid_post", "blocks.5.hook_mlp_out"]

    static let settings = UnitSettings(
        hooks: hooks, context: 128, dtype: .bf16, skipSpecial: true, batchWindows: 32, blockRows: 256, model: model, outputDirectory: "/data/out",
        trainerEndpoint: "tcp://trainer:5557")

    static func run(maxAttempts: Int = 3, paths: [String] = ["/corpus/a.jsonl", "/corpus/b.jsonl"]) -> RunDefinition {
        RunDefinition(
            run: 0xC0FFEE, corpus: CorpusSpec(paths: paths, format: .jsonl, textField: "text", unitTokens: 16),
            settings: settings, maxAttempts: maxAttempts)
    }

    static func statistics(width: Int, count: Int, seed: Double = 1) -> HookStatistics {
        HookStatistics(
            count: count, mean: (0..<width).map { Double($0) * 0.25 - seed }, variance: (0..<width).map { Double($0) * 0.5 + seed },
            meanNorm: 3.5 * seed)
    }

    static func done(unit: UnitID, lease: LeaseID, rows: Int = 40, width: Int = 4, hooks: [String] = hooks) -> UnitDone {
        UnitDone(
            unit: unit, lease: lease,
            shards: hooks.enumerated().map { index, hook in
                ShardReport(
                    hook: hook, file: ClusterWire.shardFileName(unit: unit.rawValue, lease: lease.rawValue, hook: hook), rows: rows,
                    bytes: 1000 + index, crc32c: 0xDEAD_BEEF &+ UInt32(index))
            },
            statistics: Dictionary(uniqueKeysWithValues: hooks.map { ($0, statistics(width: width, count: rows)) }),
            skipped: ["invalid_utf8": 2, "empty_document": 1], documents: 7, windows: 3, rows: rows, tokens: 48,
            timings: UnitTimings(tokenize: 0.01, forward: 0.5, encode: 0.02, wall: 0.6))
    }

    static let plan = UnitPlan(unit: 17, fileIndex: 1, byteRange: 1000..<1100, firstDocumentID: 500, firstLine: 41, lineCount: 5,
        textBytes: lines.reduce(0) { $0 + (($1.content.map { $0.utf8.count }).value ?? 0) })

    static let lines: [UnitLine] = [
        UnitLine(rawBytes: 30, content: .success("first document")),
        UnitLine(rawBytes: 10, content: .failure(.invalidUTF8)),
        UnitLine(rawBytes: 20, content: .success("café ☕ naïve")),
        UnitLine(rawBytes: 15, content: .failure(.emptyDocument)),
        UnitLine(rawBytes: 25, content: .success("last")),
    ]

    static let assignment = Assignment(
        run: 0xC0FFEE, lease: 42, attempt: 2, heartbeatInterval: .milliseconds(1500), liveness: 3, settings: settings,
        file: "/corpus/b.jsonl", plan: plan, lines: lines)

    static let workerMessages: [WorkerMessage] = [
        .ready(Ready(worker: "w1")),
        .ready(Ready(worker: "gpu-host-3/worker-2", host: "gpu-host-3", processID: 4242, threads: 2, software: "0.1.0", loadedModelSHA256: model.configSHA256)),
        .heartbeat(WorkerHeartbeat(worker: "w1")),
        .heartbeat(WorkerHeartbeat(worker: "w1", lease: 42, unit: 17, tokens: 12345)),
        .done(done(unit: 17, lease: 42)),
        .done(UnitDone(unit: 0, lease: 1, shards: [ShardReport(hook: "h", file: ClusterWire.shardFileName(unit: 0, lease: 1, hook: "h"), rows: 0, bytes: 120, crc32c: 0)], statistics: ["h": statistics(width: 1, count: 0)], documents: 0, windows: 0, rows: 0, tokens: 0)),
        .failed(UnitFailed(unit: 17, lease: 42, disposition: .failed, reason: "forward pass: out of memory")),
        .failed(UnitFailed(unit: 17, lease: 43, disposition: .released, reason: "worker shutting down (SIGTERM)")),
    ]

    static let coordinatorMessages: [CoordinatorMessage] = [
        .assign(assignment),
        .assign(Assignment(
            run: 1, lease: 1, attempt: 1, settings: UnitSettings(hooks: ["h"], model: model, outputDirectory: "out"), file: "c.txt",
            plan: UnitPlan(unit: 0, fileIndex: 0, byteRange: 0..<3, firstDocumentID: 0, firstLine: 1, lineCount: 1, textBytes: 2),
            lines: [UnitLine(rawBytes: 3, content: .success("hi"))])),
        .heartbeat(CoordinatorHeartbeat()),
        .heartbeat(CoordinatorHeartbeat(run: 0xC0FFEE)),
        .ack(Acknowledgement(unit: 17, lease: 42, outcome: .accepted)),
        .ack(Acknowledgement(unit: 17, lease: 43, outcome: .ignored, reason: "unit 17 is done under lease 42")),
        .ack(Acknowledgement(unit: 17, lease: 42, outcome: .alreadyAccepted)),
        .ack(Acknowledgement(unit: 99, lease: 7, outcome: .rejected, reason: "unknown unit")),
        .cancel(Cancel(unit: 17, lease: 43, reason: "unit 17 was finished under lease 42")),
        .shutdown(reason: "all units are done"),
        .disconnect(reason: "unknown worker; send READY"),
    ]

    static let statusMessages: [StatusMessage] = [
        .request(StatusRequest()),
        .request(StatusRequest(includeWorkers: false)),
        .reply(StatusReport(run: 9)),
        .reply(StatusReport(
            run: 0xC0FFEE, phase: .draining, uptimeSeconds: 61.5, planningComplete: true, unitsPlanned: 10, unitsDone: 5, unitsLeased: 2,
            unitsPending: 2, unitsFailed: 1, rows: 123_456, tokens: 130_000, tokensPerSecond: 9123.5, etaSeconds: 12.25,
            workers: [
                WorkerStatus(name: "w1", unit: 3, lease: 11, tokensPerSecond: 4000, lastSeenSeconds: 0.2, unitsDone: 3),
                WorkerStatus(name: "w2", tokensPerSecond: 0, lastSeenSeconds: 1.5, unitsDone: 2),
            ],
            failures: [FailureReport(unit: 4, reason: "lease 9 expired: worker w3 stopped sending heartbeats")])),
    ]

    static func batchRows(rows: Int, width: Int, seed: UInt64 = 1) -> ShardRows {
        var generator = SeededGenerator(seed: seed)
        return ShardRows(
            width: width, activations: (0..<(rows * width)).map { _ in Float.random(in: -4...4, using: &generator) },
            tokens: (0..<rows).map { Int32($0 % 7 + 100) }, documents: (0..<rows).map { Int64($0 / 5) },
            windows: (0..<rows).map { Int64(17 << 32 | $0 / 16) }, positions: (0..<rows).map { Int32($0 % 16) })
    }

    static func batch(dtype: ShardDType, rows: Int = 37, width: Int = 12) throws -> ActivationBatch {
        let content = batchRows(rows: rows, width: width)
        var statistics = RunningStatistics(width: width)
        statistics.add(content.activations)
        let header = ActivationBatchHeader(
            run: 0xC0FFEE, worker: "w1", unit: 17, lease: 42, hook: hooks[0], sequence: 3, final: false, dtype: dtype, width: width, rows: rows,
            statistics: rows > 0 ? HookStatistics(statistics) : nil)
        return try ActivationBatch(header: header, rows: content)
    }

    static var events: [CoordinatorEvent] {
        [
            .started(run()),
            .leasesReserved(through: 65_536),
            .planned(UnitPlan(unit: 0, fileIndex: 0, byteRange: 0..<70, firstDocumentID: 0, firstLine: 1, lineCount: 3, textBytes: 40)),
            .planningFinished,
            .leased(unit: 0, lease: 1, worker: "w1"),
            .expired(unit: 0, lease: 1),
            .failed(UnitFailed(unit: 0, lease: 2, disposition: .failed, reason: "boom")),
            .failed(UnitFailed(unit: 0, lease: 3, disposition: .released, reason: "draining")),
            .done(done(unit: 0, lease: 4)),
            .completed,
        ]
    }
}
