import Foundation
import Logging
import Shards
import Testing

@testable import Trainer

/// Writes `files` shards of synthetic rows (width 32) into a new temporary folder.
func writeSyntheticShards(files: Int, rowsPerFile: Int, seed: UInt64, hook: String = "blocks.0.hook_resid_post") throws -> String {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("trainer-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    var random = SplitMix64(seed: seed)
    let data = SyntheticDictionary(width: 32, count: 96, active: 3, noise: 0.02, random: &random)
    for file in 0..<files {
        let header = ShardHeader(dtype: .fp32, width: 32, blockRows: 128, hook: hook, model: ModelIdentity(name: "synthetic"), unitID: UInt64(file))
        let writer = try ShardWriter(path: folder + "/" + ShardManifest.shardFileName(unit: UInt64(file), hook: hook), header: header)
        let rows = data.rows(rowsPerFile, random: &random).map { $0 * 3 + 0.5 }  // an offset and a scale to normalise away
        let n = rowsPerFile
        try writer.append(
            ShardRows(
                width: 32, activations: rows, tokens: [Int32](repeating: 1, count: n), documents: (0..<n).map { Int64($0 / 50) },
                windows: (0..<n).map { Int64($0 / 50) }, positions: (0..<n).map { Int32($0 % 50) }))
        _ = try writer.finish()
    }
    return folder
}

let silentLogger = Logger(label: "test") { _ in SwiftLogNoOpLogHandler() }

@Suite struct TrainingRunTests {
    func training(tokens: Int) -> TrainingConfig {
        TrainingConfig(learningRate: 3e-3, batchTokens: 256, totalTokens: tokens, auxK: 16, deadTokens: 1024, warmupSteps: 5)
    }

    @Test func resumeEqualsUninterrupted() throws {
        let shards = try writeSyntheticShards(files: 3, rowsPerFile: 1500, seed: 11)
        defer { try? FileManager.default.removeItem(atPath: shards) }
        let tokens = 256 * 40  // more than two epochs of 4500 rows
        func options(_ out: String, stopAt: Int? = nil) -> RunOptions {
            var options = RunOptions(outDirectory: out, bufferRows: 1024, threads: 2, checkpointEvery: 0, logEvery: 10)
            options.stopAtStep = stopAt
            return options
        }
        let whole = shards + "/whole", parts = shards + "/parts"
        let uninterrupted = try TrainingRun(
            source: try ShardSource(directory: shards, hook: nil), architecture: .topk, latents: 128, k: 4, training: training(tokens: tokens),
            options: options(whole), logger: silentLogger)
        try uninterrupted.run()

        let first = try TrainingRun(
            source: try ShardSource(directory: shards, hook: nil), architecture: .topk, latents: 128, k: 4, training: training(tokens: tokens),
            options: options(parts, stopAt: 17), logger: silentLogger)
        try first.run()
        #expect(first.trainer.step == 17)
        let resumed = try TrainingRun(resuming: parts, source: try ShardSource(directory: shards, hook: nil), options: options(parts), logger: silentLogger)
        #expect(resumed.trainer.step == 17)
        try resumed.run()
        #expect(resumed.trainer.step == uninterrupted.trainer.step)
        #expect(resumed.trainer.tokens == uninterrupted.trainer.tokens)

        let (a, _) = try Checkpoint.loadModel(whole)
        let (b, _) = try Checkpoint.loadModel(parts)
        var worst: Float = 0
        for (x, y) in [(a.encoderWeight, b.encoderWeight), (a.encoderBias, b.encoderBias), (a.decoderWeight, b.decoderWeight), (a.decoderBias, b.decoderBias)] {
            for i in 0..<x.count { worst = max(worst, abs(x[i] - y[i])) }
        }
        print("resume vs uninterrupted: max |Δweight| = \(worst)")
        #expect(worst <= 1e-5)
        #expect(a.config == b.config)
        let metrics = try String(contentsOfFile: whole + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        #expect(metrics.count == 4)
        let last = try JSONSerialization.jsonObject(with: Data(metrics.last!.utf8)) as! [String: Any]
        let ev = (last["explained_variance"] as! NSNumber).doubleValue
        print("synthetic shards: EV after \(tokens) tokens = \(ev)")
        #expect(ev > 0.5)
    }

    @Test func checkpointRoundTripsTheModel() throws {
        var random = SplitMix64(seed: 3)
        let config = DictionaryConfig(architecture: .batchtopk, width: 12, latents: 40, k: 3, hook: "h", modelName: "m", normalizationScale: 0.5, threshold: 0.25)
        let model = SparseAutoencoder(config: config, random: &random)
        let trainer = SAETrainer(model: model, training: training(tokens: 1024), threads: 1)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("ckpt-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: out) }
        let state = TrainerState(step: 3, tokens: 768, random: 99, position: DataPosition(epoch: 1, file: 2, row: 5), bufferRows: 2, thresholdStarted: true)
        let folder = try Checkpoint.save(trainer: trainer, state: state, buffer: [Float](repeating: 1, count: 24), to: out)
        #expect(folder.hasSuffix("step-00000003"))
        let (loaded, loadedState, buffer) = try Checkpoint.loadTrainer(out, threads: 1)
        #expect(loaded.model.config == config)
        #expect(loadedState == state)
        #expect(buffer.count == 24)
        #expect(loaded.model.decoderWeight.array == model.decoderWeight.array)
    }
}

/// Writes synthetic shards to $ACTCLUSTER_WRITE_SYNTHETIC_SHARDS for trying the CLI by hand;
/// does nothing otherwise.
@Test func writeSyntheticShardsForManualRuns() throws {
    guard let target = ProcessInfo.processInfo.environment["ACTCLUSTER_WRITE_SYNTHETIC_SHARDS"] else { return }
    let folder = try writeSyntheticShards(files: 4, rowsPerFile: 20000, seed: 1)
    try? FileManager.default.removeItem(atPath: target)
    try FileManager.default.moveItem(atPath: folder, toPath: target)
}
