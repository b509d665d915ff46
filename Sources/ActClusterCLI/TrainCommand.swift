import ArgumentParser
import Foundation
import Logging
import Platform
import Trainer

/// Dictionary options shared by `train` (shards) and the live `trainer`.
struct DictionaryOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Hook to train on (needed when the data holds several).", valueName: "name"))
    var hook: String?

    @Option(help: "Architecture: topk, batchtopk or relu.")
    var arch: Architecture = .topk

    @Option(help: "Active latents per token (topk), or on average over a batch (batchtopk).")
    var k = 32

    @Option(help: ArgumentHelp("Latents as a multiple of the width d (default 16 unless --latents is given).", valueName: "N"))
    var expansion: Int?

    @Option(help: ArgumentHelp("Latents m, instead of --expansion.", valueName: "M"))
    var latents: Int?

    @Option(help: "Peak learning rate (default 2e-4 / √(m / 2¹⁴), as sparsify).")
    var lr: Double?

    @Option(help: "Tokens per optimiser step.")
    var batchTokens = 4096

    @Option(help: "Token budget of the run (more than one epoch if the data is smaller).")
    var tokens = 10_000_000

    @Option(help: ArgumentHelp("Rows in the shuffle buffer (default 16 batches).", valueName: "N"))
    var bufferTokens: Int?

    @Option(help: "Weight α of the AuxK loss.")
    var auxKCoef = 1.0 / 32

    @Option(help: ArgumentHelp("Dead latents AuxK uses per token (default d / 2).", valueName: "N"))
    var auxK: Int?

    @Option(help: ArgumentHelp("A latent that has not fired for this many tokens is dead (default 10M, at most a fifth of --tokens).", valueName: "N"))
    var deadTokens: Int?

    @Option(help: "relu: weight λ of the L1 penalty Σ zᵢ‖W_dec,i‖ (inputs normalised to E‖x‖ = √d).")
    var l1Coef = 5.0

    @Option(help: ArgumentHelp("Warm-up steps (default 1000, at most a twentieth of the run).", valueName: "N"))
    var warmupSteps: Int?

    @Option(help: "Fraction of the run at the end over which the rate decays linearly to 0.")
    var decayFraction = 0.2

    @Option(help: "Initial b_dec: median (geometric median of a first sample), mean or zero.")
    var bDecInit: DecoderBiasInit = .median

    @Option(help: "Seed of the initial weights and the shuffle.")
    var seed: UInt64 = 0

    @Option(help: "Threads (BLAS and the sparse kernels).")
    var threads = 2

    @Option(help: ArgumentHelp("Steps between checkpoints (0: only at the end).", valueName: "N"))
    var checkpointEvery = 1000

    @Option(help: ArgumentHelp("Steps between metric lines (log and metrics.jsonl).", valueName: "N"))
    var logEvery = 50

    @Option(help: ArgumentHelp("Run folder: checkpoints/ and metrics.jsonl.", valueName: "dir"))
    var out: String

    @Flag(help: "Continue from the latest checkpoint in --out (same data order: within float noise of an uninterrupted run).")
    var resume = false

    func validate() throws {
        if expansion != nil && latents != nil { throw ValidationError("give --expansion or --latents, not both") }
        if let expansion, expansion <= 0 { throw ValidationError("--expansion must be positive") }
        if let latents, latents <= 0 { throw ValidationError("--latents must be positive") }
        guard batchTokens > 0 else { throw ValidationError("--batch-tokens must be positive") }
        guard tokens >= batchTokens else { throw ValidationError("--tokens (\(tokens)) must be at least one batch (--batch-tokens \(batchTokens))") }
        if let bufferTokens, bufferTokens < batchTokens {
            throw ValidationError("--buffer-tokens (\(bufferTokens)) must hold at least one batch (--batch-tokens \(batchTokens))")
        }
        if arch != .relu {
            guard k > 0 else { throw ValidationError("--k must be positive for \(arch.rawValue)") }
            if let latents, k > latents { throw ValidationError("--k (\(k)) cannot exceed --latents (\(latents))") }
        }
        if let lr, !(lr > 0) { throw ValidationError("--lr must be positive") }
        guard auxKCoef >= 0 else { throw ValidationError("--aux-k-coef cannot be negative") }
        if let deadTokens, deadTokens <= 0 { throw ValidationError("--dead-tokens must be positive") }
        guard threads > 0 else { throw ValidationError("--threads must be positive") }
        guard checkpointEvery >= 0, logEvery > 0 else { throw ValidationError("--checkpoint-every cannot be negative and --log-every must be positive") }
        guard (0...1).contains(decayFraction) else { throw ValidationError("--decay-fraction must be between 0 and 1") }
    }

    func latentCount(width: Int) throws -> Int {
        let m = latents ?? width * (expansion ?? 16)
        if arch != .relu && k > m { throw ValidationError("--k (\(k)) cannot exceed the \(m) latents") }
        return m
    }

    func training(width: Int, latents m: Int) -> TrainingConfig {
        let steps = max(1, (tokens + batchTokens - 1) / batchTokens)
        return TrainingConfig(
            learningRate: lr ?? TrainingConfig.defaultLearningRate(latents: m), batchTokens: batchTokens, totalTokens: tokens,
            auxKCoefficient: auxKCoef, auxK: auxK ?? max(1, width / 2),
            deadTokens: deadTokens ?? TrainingConfig.defaultDeadTokens(totalTokens: tokens, batchTokens: batchTokens),
            l1Coefficient: l1Coef, warmupSteps: warmupSteps ?? TrainingConfig.defaultWarmupSteps(totalSteps: steps),
            decayFraction: decayFraction, decoderBiasInit: bDecInit, seed: seed)
    }

    func runOptions() -> RunOptions {
        RunOptions(
            outDirectory: out, bufferRows: bufferTokens ?? 16 * batchTokens, threads: threads, checkpointEvery: checkpointEvery,
            logEvery: logEvery)
    }

    /// A fresh run, or the checkpoint's with this command line's budget.
    func makeRun(source: RowSource, logger: Logger) throws -> TrainingRun {
        if resume {
            let run = try TrainingRun(resuming: out, source: source, options: runOptions(), logger: logger)
            guard run.trainer.training.totalTokens == tokens else {
                throw CommandFailure(
                    "--tokens \(tokens) differs from the checkpoint's budget \(run.trainer.training.totalTokens); the schedule depends on it")
            }
            return run
        }
        if FileManager.default.fileExists(atPath: out + "/checkpoints/latest") {
            throw CommandFailure("\(out) already holds a run; pass --resume to continue it or choose another --out")
        }
        let width = source.description.width
        let m = try latentCount(width: width)
        return try TrainingRun(
            source: source, architecture: arch, latents: m, k: arch == .relu ? 0 : k, training: training(width: width, latents: m),
            options: runOptions(), logger: logger)
    }
}

extension Architecture: ExpressibleByArgument {}
extension DecoderBiasInit: ExpressibleByArgument {}

/// `actcluster train`: fit a sparse dictionary on shard files.
struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Fit a sparse autoencoder (TopK, BatchTopK or ReLU) on activations in shard files.",
        discussion: """
            Rows stream from the shards (manifest order, as many epochs as --tokens needs) \
            through a shuffle buffer. Inputs are scaled so that E‖x‖ = √d (from the manifest's \
            statistics, else from a first sample); the scale is stored with the checkpoint and \
            folded in on export. Metrics go to the log and to OUT/metrics.jsonl (and, with \
            --metrics-bind, to Prometheus at HOST:PORT/metrics); checkpoints to \
            OUT/checkpoints/step-N with OUT/checkpoints/latest pointing at the newest. \
            SIGINT/SIGTERM finish the current step, checkpoint and exit.
            """
    )

    @Option(help: ArgumentHelp("Folder of shard files (with or without manifest.json).", valueName: "dir"))
    var shards: String

    @OptionGroup var dictionary: DictionaryOptions
    @OptionGroup var metrics: MetricsOptions
    @OptionGroup var logging: LoggingOptions

    func run() throws {
        let log = try logging.bootstrap(role: "train")
        // Before any work, so a bad --metrics-bind fails at once.
        let endpoint = try metrics.serve(log: log)
        defer { endpoint?.stop() }
        let source: ShardSource
        do {
            source = try ShardSource(directory: shards, hook: dictionary.hook)
        } catch {
            throw CommandFailure("\(error)")
        }
        installStopHandlers()
        do {
            let run = try dictionary.makeRun(source: source, logger: log)
            if let endpoint { TrainerMetrics(registry: endpoint.registry).follow(run) }
            let checkpoint = try run.run()
            print("trained \(run.trainer.step) steps, \(run.trainer.tokens) tokens; checkpoint \(checkpoint)")
        } catch let error as CommandFailure {
            throw error
        } catch let error as ValidationError {
            throw error
        } catch {
            throw CommandFailure("\(error)")
        }
    }
}

/// SIGINT and SIGTERM ask the training loop to checkpoint and stop after the current step.
func installStopHandlers() {
    for number in [SIGINT, SIGTERM] {
        signal(number) { _ in TrainingRun.stopRequested = true }
    }
    ShutdownSignals.unblock()
}
