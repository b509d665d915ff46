import Foundation
import Logging

/// A source of raw activation rows the run can also reposition (for resume).
public protocol RowSource: AnyObject {
    var description: DataDescription { get }
    var position: DataPosition { get set }
    /// Up to `maxRows` rows; empty only when no more will come (a shard source never ends:
    /// it starts the next epoch; a live source ends when it is told to stop or goes idle).
    func read(maxRows: Int) throws -> [Float]
}

extension ShardSource: RowSource {}

/// Options of a run that are not hyperparameters of the dictionary.
public struct RunOptions: Sendable {
    public var outDirectory: String
    public var bufferRows: Int
    public var threads: Int
    /// Steps between checkpoints (0: only at the end).
    public var checkpointEvery: Int
    /// Steps between metric lines.
    public var logEvery: Int
    /// Rows used to initialise b_dec and, without collection statistics, the normalisation.
    public var initRows: Int
    /// Stop (with a checkpoint) after this step, as an interruption would.
    public var stopAtStep: Int?

    public init(outDirectory: String, bufferRows: Int, threads: Int, checkpointEvery: Int, logEvery: Int, initRows: Int = 16384) {
        self.outDirectory = outDirectory
        self.bufferRows = bufferRows
        self.threads = threads
        self.checkpointEvery = checkpointEvery
        self.logEvery = logEvery
        self.initRows = initRows
    }
}

/// The figures of one metrics window (every `logEvery` steps), as logged in `train_step` and
/// appended to `metrics.jsonl`.
public struct TrainingMetrics: Sendable {
    public var step: Int
    public var tokens: Int
    /// Mean loss of the window's steps.
    public var loss: Double
    public var explainedVariance: Double
    public var fractionUnexplained: Double
    /// Mean active latents per token over the window.
    public var l0: Double
    /// Latents that have not fired for `deadTokens` tokens, as a fraction of all latents.
    public var deadFraction: Double
    public var auxLoss: Double
    public var learningRate: Double
    /// Tokens trained per second over the window.
    public var tokensPerSecond: Double
}

/// One training run: rows from a source through a shuffle buffer into the engine, metrics
/// to the log and `metrics.jsonl`, checkpoints on schedule. Used by `train` (shards) and the
/// live trainer alike.
public final class TrainingRun {
    public let trainer: SAETrainer
    public let options: RunOptions
    let source: RowSource
    let buffer: ShuffleBuffer
    var random: SplitMix64
    let logger: Logger
    private var window: VarianceAccumulator
    private var windowLoss = 0.0, windowAux = 0.0, windowSteps = 0
    private var windowStart = ContinuousClock.now
    /// The source returned no rows: train on what the buffer holds, then stop.
    public private(set) var sourceEnded = false
    /// Set by a signal handler: finish the current step, checkpoint, stop.
    public nonisolated(unsafe) static var stopRequested = false
    /// Called on the training thread with every metrics window, after it is logged (e.g. to
    /// publish it for Prometheus; the engine knows nothing of how).
    public var metricsObserver: ((TrainingMetrics) -> Void)?

    /// A fresh run: fills the buffer, fixes the normalisation and b_dec, initialises weights.
    public init(
        source: RowSource, architecture: Architecture, latents: Int, k: Int, training: TrainingConfig, options: RunOptions, logger: Logger
    ) throws {
        let d = source.description.width
        self.source = source
        self.options = options
        self.logger = logger
        buffer = ShuffleBuffer(width: d, capacity: options.bufferRows)
        random = SplitMix64(seed: training.seed &+ 0x5EED)
        window = VarianceAccumulator(width: d)
        sourceEnded = try Self.fill(buffer, from: source)
        guard buffer.count > 0 else { throw TrainerError("the data ended before the first row") }
        // Read after the fill: a live source's statistics then cover every row received so far.
        let description = source.description
        let sampleRows = min(options.initRows, buffer.count)
        var sample = Array(UnsafeBufferPointer(start: buffer.rows.pointer, count: sampleRows * d))
        let meanNorm: Double
        if let known = description.meanNorm, known > 0 {
            meanNorm = known
        } else {
            var total = 0.0
            for r in 0..<sampleRows {
                var squares = 0.0
                for c in 0..<d { squares += Double(sample[r * d + c]) * Double(sample[r * d + c]) }
                total += squares.squareRoot()
            }
            meanNorm = max(total / Double(max(1, sampleRows)), 1e-12)
        }
        let scale = Float(Double(d).squareRoot() / meanNorm)
        for i in 0..<sample.count { sample[i] *= scale }
        let config = DictionaryConfig(
            architecture: architecture, width: d, latents: latents, k: k, hook: description.hook, modelName: description.modelName,
            modelConfigSHA256: description.modelConfigSHA256, normalizationScale: scale)
        var initRandom = SplitMix64(seed: training.seed)
        let model = SparseAutoencoder(config: config, random: &initRandom)
        trainer = SAETrainer(model: model, training: training, threads: options.threads)
        trainer.initializeDecoderBias(sample: sample, rows: sampleRows)
        logger.info(
            "train_init",
            metadata: [
                "arch": "\(architecture.rawValue)", "d": "\(d)", "latents": "\(latents)", "k": "\(k)", "hook": "\(description.hook)",
                "norm_scale": "\(scale)", "norm_source": "\(description.meanNorm != nil ? "statistics" : "sample")",
                "b_dec_init": "\(training.decoderBiasInit.rawValue)", "lr": "\(training.learningRate)", "tokens": "\(training.totalTokens)",
                "dead_tokens": "\(training.deadTokens)", "buffer_rows": "\(options.bufferRows)",
            ])
    }

    /// Continues from a checkpoint; `totalTokens` may extend the budget.
    public init(resuming path: String, source: RowSource, options: RunOptions, logger: Logger) throws {
        let (trainer, state, contents) = try Checkpoint.loadTrainer(path, threads: options.threads)
        let d = trainer.model.width
        guard source.description.width == d else {
            throw TrainerError("the checkpoint is for width \(d), the data has width \(source.description.width)")
        }
        guard source.description.hook == trainer.model.config.hook else {
            throw TrainerError("the checkpoint was trained on \(trainer.model.config.hook), the data is \(source.description.hook)")
        }
        self.trainer = trainer
        self.source = source
        self.options = options
        self.logger = logger
        buffer = ShuffleBuffer(width: d, capacity: max(options.bufferRows, contents.count / d))
        buffer.restore(contents)
        random = SplitMix64(seed: 0)
        random.state = state.random
        source.position = state.position
        window = VarianceAccumulator(width: d)
        logger.info("train_resume", metadata: ["step": "\(state.step)", "tokens": "\(state.tokens)", "checkpoint": "\(path)"])
    }

    /// Fills the buffer; true when the source ended (returned no rows).
    @discardableResult
    static func fill(_ buffer: ShuffleBuffer, from source: RowSource) throws -> Bool {
        while buffer.free > 0 {
            let rows = try source.read(maxRows: buffer.free)
            if rows.isEmpty { return true }
            rows.withUnsafeBufferPointer { _ = buffer.append($0) }
        }
        return false
    }

    public var state: TrainerState {
        TrainerState(
            step: trainer.step, tokens: trainer.tokens, random: random.state, position: source.position, bufferRows: buffer.count,
            thresholdStarted: trainer.thresholdStarted)
    }

    /// Trains until the token budget is spent, a stop is requested, or the source ends and
    /// the buffer is drained; returns the folder of the last checkpoint.
    @discardableResult
    public func run() throws -> String {
        let d = trainer.model.width
        let training = trainer.training
        var batch = [Float](repeating: 0, count: training.batchTokens * d)
        let metricsPath = options.outDirectory + "/metrics.jsonl"
        try FileManager.default.createDirectory(atPath: options.outDirectory, withIntermediateDirectories: true)
        if !FileManager.default.fileExists(atPath: metricsPath) {
            guard FileManager.default.createFile(atPath: metricsPath, contents: nil) else { throw TrainerError("cannot create \(metricsPath)") }
        }
        let metrics = try FileHandle(forWritingTo: URL(fileURLWithPath: metricsPath))
        defer { try? metrics.close() }
        try metrics.seekToEnd()
        windowStart = .now
        var lastCheckpoint: String?
        while trainer.tokens < training.totalTokens && !Self.stopRequested && trainer.step != options.stopAtStep
            && !(sourceEnded && buffer.count == 0)
        {
            if !sourceEnded && (buffer.needsRefill || buffer.count < training.batchTokens) {
                sourceEnded = try Self.fill(buffer, from: source)
                if sourceEnded { logger.info("source_ended", metadata: ["step": "\(trainer.step)", "buffer_rows": "\(buffer.count)"]) }
            }
            let rows = min(training.batchTokens, buffer.count)
            if rows == 0 {
                if trainer.step == 0 { throw TrainerError("the data ran out before the first batch") }
                break
            }
            batch.withUnsafeMutableBufferPointer { buffer.draw(rows, into: $0.baseAddress!, random: &random) }
            let result = batch.withUnsafeBufferPointer { trainer.train(raw: UnsafeBufferPointer(rebasing: $0[0..<(rows * d)]), rows: rows) }
            window.add(
                rows: rows, squaredError: result.squaredError, squaredNorm: result.squaredNorm, columnSums: result.columnSums,
                active: result.l0 * Double(rows))
            windowLoss += result.loss
            windowAux += result.auxLoss
            windowSteps += 1
            let last = trainer.tokens >= training.totalTokens || Self.stopRequested || trainer.step == options.stopAtStep
                || (sourceEnded && buffer.count == 0)
            if trainer.step % options.logEvery == 0 || last { try logMetrics(result, to: metrics) }
            if (options.checkpointEvery > 0 && trainer.step % options.checkpointEvery == 0) || last {
                lastCheckpoint = try Checkpoint.save(trainer: trainer, state: state, buffer: buffer.contents, to: options.outDirectory)
                logger.info("checkpoint", metadata: ["step": "\(trainer.step)", "path": "\(lastCheckpoint!)"])
            }
        }
        if let lastCheckpoint { return lastCheckpoint }
        return try Checkpoint.save(trainer: trainer, state: state, buffer: buffer.contents, to: options.outDirectory)
    }

    private func logMetrics(_ result: StepResult, to file: FileHandle) throws {
        let seconds = (ContinuousClock.now - windowStart) / .seconds(1)
        let steps = Double(max(1, windowSteps))
        let metrics = TrainingMetrics(
            step: trainer.step, tokens: trainer.tokens, loss: windowLoss / steps, explainedVariance: window.explainedVariance,
            fractionUnexplained: window.fractionUnexplained, l0: window.l0, deadFraction: result.deadFraction, auxLoss: windowAux / steps,
            learningRate: result.learningRate, tokensPerSecond: (Double(window.count) / max(seconds, 1e-9)).rounded())
        let figures: [(String, Any)] = [
            ("step", metrics.step), ("tokens", metrics.tokens), ("loss", metrics.loss), ("explained_variance", metrics.explainedVariance),
            ("fvu", metrics.fractionUnexplained), ("l0", metrics.l0), ("dead_fraction", metrics.deadFraction), ("aux_loss", metrics.auxLoss),
            ("lr", metrics.learningRate), ("tok_s", metrics.tokensPerSecond),
        ]
        var metadata: Logger.Metadata = [:]
        for (key, value) in figures {
            metadata[key] = "\(value is Double ? String(format: "%.6g", value as! Double) : "\(value)")"
        }
        logger.info("train_step", metadata: metadata)
        let object = Dictionary(uniqueKeysWithValues: figures)
        let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        try file.write(contentsOf: data + Data([10]))
        metricsObserver?(metrics)
        window = VarianceAccumulator(width: trainer.model.width)
        windowLoss = 0
        windowAux = 0
        windowSteps = 0
        windowStart = .now
    }
}
