import ClusterProtocol
import Foundation
import Logging
import Shards
import Testing
import Trainer
import ZeroMQ

@testable import TrainerService

let hook = "blocks.0.hook_resid_post"
let silentLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

/// Rows from a known sparse dictionary: `count` unit atoms in `width` dimensions, `active`
/// per row with magnitudes in [0.5, 1.5), Gaussian noise, then scaled and offset.
struct SparseRows {
    let width: Int, count: Int, active: Int
    let atoms: [Float]

    init(width: Int, count: Int, active: Int, random: inout SplitMix64) {
        self.width = width
        self.count = count
        self.active = active
        var atoms = [Float](repeating: 0, count: count * width)
        for a in 0..<count {
            let v = (0..<width).map { _ in random.nextNormal() }
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            for c in 0..<width { atoms[a * width + c] = Float(v[c] / norm) }
        }
        self.atoms = atoms
    }

    func rows(_ n: Int, random: inout SplitMix64) -> [Float] {
        var out = [Float](repeating: 0, count: n * width)
        for r in 0..<n {
            var chosen = Set<Int>()
            while chosen.count < active { chosen.insert(Int(random.next() % UInt64(count))) }
            for a in chosen {
                let magnitude = Float(0.5 + random.nextUnit())
                for c in 0..<width { out[r * width + c] += magnitude * atoms[a * width + c] }
            }
            for c in 0..<width { out[r * width + c] = 3 * (out[r * width + c] + Float(random.nextNormal() * 0.02)) + 0.5 }
        }
        return out
    }
}

/// A BATCH of `activations` ([n, width]) encoded with the cluster codec.
func batchFrames(
    _ activations: [Float], width: Int, unit: UInt64, sequence: Int, dtype: ShardDType, hook: String = hook, statistics: Bool = true,
    lease: UInt64 = 1, worker: String = "w1"
) throws -> [[UInt8]] {
    let n = activations.count / width
    var running = RunningStatistics(width: width)
    running.add(activations)
    let header = ActivationBatchHeader(
        run: 7, worker: worker, unit: UnitID(unit), lease: LeaseID(lease), hook: hook, sequence: sequence, final: false, dtype: dtype, width: width,
        rows: n, statistics: statistics ? HookStatistics(running) : nil)
    let rows = ShardRows(
        width: width, activations: activations, tokens: [Int32](repeating: 5, count: n), documents: (0..<n).map { Int64($0 / 64) },
        windows: (0..<n).map { Int64($0 / 64) }, positions: (0..<n).map { Int32($0 % 64) })
    return try ActivationBatch(header: header, rows: rows).encode()
}

/// Pushes messages from its own thread (a PUSH blocks at the high-water mark).
final class Pusher: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    private(set) var error: (any Error)?

    init(endpoint: String, messages: [[[UInt8]]]) {
        let thread = Thread { [self] in
            do {
                let context = try ZeroMQContext()
                let socket = try context.socket(.push)
                try socket.set(.linger, 5000)
                try socket.connect(endpoint)
                for frames in messages { try socket.send(multipart: frames) }
                socket.close()
            } catch {
                self.error = error
            }
            done.signal()
        }
        thread.start()
    }

    func wait() { done.wait() }
}

func temporaryFolder() -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("live-trainer-\(UUID().uuidString)").path
}

@Suite(.serialized) struct LiveTrainerTests {
    /// Real BATCH messages over tcp://127.0.0.1 into the live source and the training engine:
    /// duplicates, garbage, corrupt payloads and other hooks are dropped; the rest trains.
    @Test func trainsFromStreamedBatches() throws {
        let width = 32, rowsPerBatch = 512, batches = 40, batchTokens = 256
        var random = SplitMix64(seed: 21)
        let data = SparseRows(width: width, count: 96, active: 3, random: &random)
        let source = try LiveBatchSource(
            configuration: LiveSourceConfiguration(bind: "tcp://127.0.0.1:0", hook: hook, queueRows: 4 * batchTokens, idleTimeout: .seconds(3)),
            logger: silentLogger)
        #expect(source.endpoint.hasPrefix("tcp://127.0.0.1:"))
        #expect(!source.endpoint.hasSuffix(":0"))

        var messages: [[[UInt8]]] = []
        var expectedDuplicates = 0, expectedRejected = 0, expectedOther = 0
        let dtypes: [ShardDType] = [.fp32, .bf16, .fp16]
        for b in 0..<batches {
            let unit = UInt64(b / 4), sequence = b % 4
            let rows = data.rows(rowsPerBatch, random: &random)
            let frames = try batchFrames(rows, width: width, unit: unit, sequence: sequence, dtype: dtypes[b % 3], statistics: b % 5 != 0)
            if b == 5 {
                // A corrupt copy first: rejected, and it must not hide the good copy.
                var corrupt = frames
                corrupt[3][corrupt[3].count / 2] ^= 0xFF
                messages.append(corrupt)
                expectedRejected += 1
            }
            messages.append(frames)
            if b % 7 == 3 {
                // The same key again from another lease (a retried unit): kept once.
                messages.append(try batchFrames(rows, width: width, unit: unit, sequence: sequence, dtype: .fp32, lease: 2, worker: "w2"))
                expectedDuplicates += 1
            }
            if b % 10 == 4 {
                messages.append([Array("garbage".utf8)])
                messages.append([Array("ACTB01".utf8), [0x31], [1, 2, 3], [9, 9]])
                messages.append([Array("ACTW01".utf8), [0x01], []])
                expectedRejected += 3
                messages.append(try batchFrames(data.rows(16, random: &random), width: width, unit: unit, sequence: sequence, dtype: .bf16, hook: "blocks.1.hook_resid_post"))
                expectedOther += 1
            }
        }
        // Another width for the same hook, after the first batch fixed it.
        messages.append(try batchFrames([Float](repeating: 1, count: 8 * 16), width: 16, unit: 99, sequence: 0, dtype: .fp32))
        expectedRejected += 1
        source.start()
        let pusher = Pusher(endpoint: source.endpoint, messages: messages)
        #expect(source.waitForFirstBatch())

        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let tokens = batches * rowsPerBatch
        let training = TrainingConfig(learningRate: 3e-3, batchTokens: batchTokens, totalTokens: tokens, auxK: 16, deadTokens: 1024, warmupSteps: 5)
        let run = try TrainingRun(
            source: source, architecture: .topk, latents: 128, k: 4, training: training,
            options: RunOptions(outDirectory: out, bufferRows: 2048, threads: 2, checkpointEvery: 30, logEvery: 10), logger: silentLogger)
        let checkpoint = try run.run()
        pusher.wait()
        #expect(pusher.error == nil)
        let deadline = ContinuousClock.now + .seconds(20)
        while source.snapshot.messages < messages.count && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        source.stop()
        let counters = source.snapshot
        print("live trainer: \(counters), steps \(run.trainer.step), tokens \(run.trainer.tokens)")
        #expect(counters.accepted == batches)
        #expect(counters.rows == tokens)
        #expect(counters.duplicates == expectedDuplicates)
        #expect(counters.rejected == expectedRejected)
        #expect(counters.otherHooks == expectedOther)
        #expect(counters.messages == messages.count)
        #expect(run.trainer.step == tokens / batchTokens)
        #expect(run.trainer.tokens == tokens)

        // The normalisation came from the streamed statistics (carried and computed).
        let statistics = try #require(source.receivedStatistics)
        #expect(statistics.count == tokens)
        let scale = Float(Double(width).squareRoot() / statistics.meanNorm)
        // Fixed when the buffer first filled, from the batches received by then.
        #expect(abs(run.trainer.model.config.normalizationScale - scale) <= 0.02 * scale)

        // Trained: EV of the last metrics window, and a checkpoint that loads.
        let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let last = try JSONSerialization.jsonObject(with: Data(metrics.last!.utf8)) as! [String: Any]
        let ev = (last["explained_variance"] as! NSNumber).doubleValue
        print("live trainer: EV of the last window = \(ev) after \(tokens) tokens")
        #expect(ev > 0.5)
        #expect(checkpoint.hasSuffix("step-00000080"))
        #expect(FileManager.default.fileExists(atPath: out + "/checkpoints/step-00000060"))  // the newest two are kept
        let (model, _) = try Checkpoint.loadModel(out)
        #expect(model.config.hook == hook)
        #expect(model.config.width == width)
    }

    /// Idle timeout: the source ends after the last batch; the run drains its buffer and stops
    /// early with a checkpoint, before the token budget. The timeout is seconds: the receiver
    /// must not take a loaded host's pause between two batches for the end.
    @Test func stopsWhenIdle() throws {
        let width = 16
        var random = SplitMix64(seed: 5)
        let data = SparseRows(width: width, count: 32, active: 2, random: &random)
        let source = try LiveBatchSource(
            configuration: LiveSourceConfiguration(bind: "tcp://127.0.0.1:0", hook: hook, queueRows: 256, idleTimeout: .seconds(3)),
            logger: silentLogger)
        source.start()
        let messages = try (0..<6).map { try batchFrames(data.rows(200, random: &random), width: width, unit: 0, sequence: $0, dtype: .bf16) }
        let pusher = Pusher(endpoint: source.endpoint, messages: messages)
        #expect(source.waitForFirstBatch())
        let out = temporaryFolder()
        defer { try? FileManager.default.removeItem(atPath: out) }
        let training = TrainingConfig(learningRate: 3e-3, batchTokens: 128, totalTokens: 1_000_000, auxK: 8, deadTokens: 1024, warmupSteps: 2)
        let run = try TrainingRun(
            source: source, architecture: .batchtopk, latents: 64, k: 3, training: training,
            options: RunOptions(outDirectory: out, bufferRows: 512, threads: 1, checkpointEvery: 0, logEvery: 5), logger: silentLogger)
        let started = ContinuousClock.now
        try run.run()
        pusher.wait()
        source.stop()
        #expect(run.sourceEnded)
        #expect(run.trainer.tokens == 1200)  // every row once, the buffer drained
        #expect(ContinuousClock.now - started < .seconds(30))
        #expect(FileManager.default.fileExists(atPath: out + "/checkpoints/latest"))
    }

    /// Backpressure: with nobody reading, the receiver holds at most the queue plus one batch.
    @Test func stopsReceivingWhenTheQueueIsFull() throws {
        let width = 8
        let source = try LiveBatchSource(
            configuration: LiveSourceConfiguration(bind: "tcp://127.0.0.1:0", hook: hook, queueRows: 100), logger: silentLogger)
        source.start()
        let messages = try (0..<12).map { try batchFrames([Float](repeating: Float($0), count: 60 * width), width: width, unit: 1, sequence: $0, dtype: .fp32) }
        let pusher = Pusher(endpoint: source.endpoint, messages: messages)
        #expect(source.waitForFirstBatch())
        // 60 rows, then 120 ≥ 100: stop receiving. Waited for, then given time to overshoot.
        let deadline = ContinuousClock.now + .seconds(10)
        while source.snapshot.accepted < 2 && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.01) }
        Thread.sleep(forTimeInterval: 0.5)
        #expect(source.snapshot.accepted == 2)
        // Reading frees room; every batch arrives in order.
        var seen: [Float] = []
        while seen.count < 12 {
            let rows = try source.read(maxRows: 60)
            for r in stride(from: 0, to: rows.count, by: 60 * width) { seen.append(rows[r]) }
        }
        #expect(seen == (0..<12).map(Float.init))
        pusher.wait()
        source.stop()
        #expect(try source.read(maxRows: 10).isEmpty)
    }
}


/// With a CURVE secret key, a worker that knows the trainer's public key gets its batches in.
@Test func curveServerAcceptsAClientWithTheServerKey() throws {
    let server = try CurveKeyPair.generate(), client = try CurveKeyPair.generate()
    let source = try LiveBatchSource(
        configuration: LiveSourceConfiguration(bind: "tcp://127.0.0.1:0", hook: hook, curveSecretKey: server.secretKey, queueRows: 1000),
        logger: silentLogger)
    source.start()
    defer { source.stop() }
    let context = try ZeroMQContext()
    let push = try context.socket(.push)
    try push.set(.linger, 2000)
    try push.makeCurveClient(serverPublicKey: server.publicKey, keyPair: client)
    try push.connect(source.endpoint)
    try push.send(multipart: try batchFrames([Float](repeating: 0.5, count: 10 * 4), width: 4, unit: 1, sequence: 0, dtype: .fp16))
    #expect(source.waitForFirstBatch())
    #expect(source.description.width == 4)
    #expect(try source.read(maxRows: 100) == [Float](repeating: 0.5, count: 40))
    push.close()
}

/// With an allow-list, a client that knows the trainer's public key but is not listed gets
/// nothing in; a listed one does.
@Test func curveAllowListAdmitsOnlyListedClients() throws {
    let server = try CurveKeyPair.generate(), listed = try CurveKeyPair.generate(), stranger = try CurveKeyPair.generate()
    let source = try LiveBatchSource(
        configuration: LiveSourceConfiguration(
            bind: "tcp://127.0.0.1:0", hook: hook, curveSecretKey: server.secretKey, curveAllowedClientKeys: [listed.publicKey], queueRows: 1000),
        logger: silentLogger)
    source.start()
    defer { source.stop() }
    let context = try ZeroMQContext()
    func pusher(_ keys: CurveKeyPair) throws -> ZeroMQSocket {
        let push = try context.socket(.push)
        try push.set(.linger, 0)
        try push.makeCurveClient(serverPublicKey: server.publicKey, keyPair: keys)
        try push.connect(source.endpoint)
        return push
    }
    // The stranger's batch is queued on its side, but its handshake is refused.
    let refused = try pusher(stranger)
    try refused.send(multipart: try batchFrames([Float](repeating: 9, count: 10 * 4), width: 4, unit: 1, sequence: 0, dtype: .fp16), dontWait: true)
    let admitted = try pusher(listed)
    try admitted.send(multipart: try batchFrames([Float](repeating: 0.5, count: 10 * 4), width: 4, unit: 2, sequence: 0, dtype: .fp16))
    #expect(source.waitForFirstBatch())
    #expect(try source.read(maxRows: 100) == [Float](repeating: 0.5, count: 40))
    // Give the stranger time to retry its handshake: still nothing arrives from it.
    Thread.sleep(forTimeInterval: 0.5)
    #expect(source.snapshot.messages == 1, "only the listed worker's batch was received")
    refused.close()
    admitted.close()
}
