import ArgumentParser
import BLAS
import Foundation
import SafeTensors
import Trainer

/// `actcluster bench train`: TopK SAE training throughput and held-out EV, against a PyTorch
/// (sparsify-style) reference trained on the same rows with the same hyperparameters.
struct BenchTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Measure TopK SAE training tokens/s and held-out EV, ours and a PyTorch reference.",
        discussion: """
            Rows come from --input (a safetensors file with `activations` [rows, d], as \
            `actcluster export` writes) or are Gaussian of width --d. The last --heldout rows \
            are held out; both trainers see the same --tokens training rows in the same order \
            and report the explained variance on the held-out rows. With --reference PYTHON \
            the reference (Tests/Reference/bench_train_sparsify.py) runs in the same process \
            run, after ours, and the ratio is printed; --rounds alternates the two and reports \
            the median ratio. Only the training loop is timed. Where the CPU has AVX-512 VNNI the \
            encoder prescreens in int8 and recomputes the candidates in fp32 (the same codes); \
            set ACTCLUSTER_EXACT_ENCODER=1 to run the fp32 encoder instead.
            """
    )

    @Option(help: ArgumentHelp("safetensors with `activations` [rows, d].", valueName: "file"))
    var input: String?

    @Option(help: "Width of the Gaussian rows when there is no --input.")
    var d = 384

    @Option(help: "Latents m.")
    var latents = 6144

    @Option(help: "Active latents per token.")
    var k = 32

    @Option(help: "Tokens per step.")
    var batchTokens = 4096

    @Option(help: "Threads (ours and the reference's torch.set_num_threads).")
    var threads = 2

    @Option(help: "Training tokens (default 24 batches).")
    var tokens: Int?

    @Option(help: "Held-out rows for EV.")
    var heldout = 8192

    @Option(help: "Seed.")
    var seed: UInt64 = 0

    @Option(help: ArgumentHelp("Python with torch, to run the reference in the same run.", valueName: "python"))
    var reference: String?

    @Option(help: "With --reference: train ours then the reference this many times and report the median ratio (shared machines are noisy).")
    var rounds = 3

    @Option(help: ArgumentHelp("The reference script.", valueName: "path"))
    var referenceScript = "Tests/Reference/bench_train_sparsify.py"

    @Flag(help: "End with one JSON line of the figures.")
    var json = false

    func validate() throws {
        guard d > 0, latents > 0, k > 0, batchTokens > 0, threads > 0, heldout > 0, rounds > 0 else {
            throw ValidationError("--d, --latents, --k, --batch-tokens, --threads, --heldout and --rounds must be positive")
        }
        guard k <= latents else { throw ValidationError("--k (\(k)) cannot exceed --latents (\(latents))") }
        if let tokens, tokens < batchTokens { throw ValidationError("--tokens must be at least one batch") }
    }

    func run() throws {
        let budget = tokens ?? 24 * batchTokens
        var random = SplitMix64(seed: seed &+ 17)
        // Rows: training rows then held-out rows.
        let width: Int
        var train: [Float], held: [Float]
        if let input {
            let file = try SafeTensorsFile(path: input)
            let info = try file.info("activations")
            guard info.shape.count == 2 else { throw CommandFailure("\(input): activations must be [rows, d]") }
            width = info.shape[1]
            let all = try file.floats("activations")
            let rows = info.shape[0]
            guard rows > heldout + batchTokens else { throw CommandFailure("\(input) has \(rows) rows; need more than --heldout + one batch") }
            held = Array(all[((rows - heldout) * width)...])
            train = Array(all[0..<((rows - heldout) * width)])
        } else {
            width = d
            let trainRows = min(budget, 16 * batchTokens)
            train = (0..<(trainRows * width)).map { _ in Float(random.nextNormal()) }
            held = (0..<(heldout * width)).map { _ in Float(random.nextNormal()) }
        }
        let trainRows = train.count / width
        let steps = (budget + batchTokens - 1) / batchTokens
        let training = TrainingConfig(
            learningRate: TrainingConfig.defaultLearningRate(latents: latents), batchTokens: batchTokens, totalTokens: budget,
            auxK: width / 2, deadTokens: TrainingConfig.defaultDeadTokens(totalTokens: budget, batchTokens: batchTokens),
            warmupSteps: TrainingConfig.defaultWarmupSteps(totalSteps: steps), decoderBiasInit: .median, seed: seed)

        // Ours: the same normalisation, b_dec init and schedule as the reference.
        let sampleRows = min(16384, trainRows)
        var normSum = 0.0
        for r in 0..<sampleRows {
            var squares = 0.0
            for c in 0..<width { squares += Double(train[r * width + c]) * Double(train[r * width + c]) }
            normSum += squares.squareRoot()
        }
        let scale = Float(Double(width).squareRoot() / (normSum / Double(sampleRows)))
        let sample = train[0..<(sampleRows * width)].map { $0 * scale }
        var ours: [Double] = [], theirs: [Double] = [], theirEV = 0.0
        var model: SparseAutoencoder!
        var seen = 0
        for _ in 0..<(reference == nil ? 1 : rounds) {
            let speed: Double
            (model, seen, speed) = trainOurs(
                train: train, trainRows: trainRows, width: width, scale: scale, sample: sample, sampleRows: sampleRows, budget: budget,
                training: training)
            ours.append(speed)
            if let reference {
                let (speed, ev) = try runReference(python: reference, train: train, held: held, width: width, tokens: seen, training: training)
                theirs.append(speed)
                theirEV = ev
            }
        }
        if let profile = SAETrainer.profileReport { print("phases     \(profile)") }
        let evaluator = Evaluator(model: model, threads: threads)
        held.withUnsafeBufferPointer { rows in
            var lo = 0
            while lo < heldout {
                let n = min(4096, heldout - lo)
                evaluator.add(raw: UnsafeBufferPointer(rebasing: rows[(lo * width)..<((lo + n) * width)]), rows: n)
                lo += n
            }
        }
        let tokensPerSecond = median(ours)
        let ev = evaluator.accumulator.explainedVariance
        let peak = BenchForwardCommand.measureSgemmPeak(threads: threads)
        let encoderFlops = 2.0 * Double(width * latents) * tokensPerSecond
        let ofRounds = ours.count > 1 ? " (median of \(ours.count))" : ""
        print("shape      d=\(width) m=\(latents) k=\(k), batch \(batchTokens), \(threads) threads, \(seen) tokens (\(input ?? "Gaussian rows"))")
        print("actcluster \(Int(tokensPerSecond)) tok/s\(ofRounds); held-out EV \(String(format: "%.4f", ev)) on \(heldout) rows")
        print("sgemm peak \(Int(peak / 1e9)) GFLOP/s measured; the encoder GEMM alone at this speed is \(String(format: "%.0f%%", encoderFlops / peak * 100)) of it")
        var figures: [String: Any] = [
            "tokens_per_second": tokensPerSecond.rounded(), "explained_variance": ev, "tokens": seen, "d": width, "latents": latents,
            "k": k, "batch_tokens": batchTokens, "threads": threads, "sgemm_peak_gflops": (peak / 1e9).rounded(),
            "encoder_fraction_of_sgemm_peak": (encoderFlops / peak * 1000).rounded() / 1000,
        ]
        if !theirs.isEmpty {
            let ratios = zip(ours, theirs).map { $0 / $1 }
            let ratio = median(ratios)
            let perRound = ratios.count > 1 ? "; per round: \(ratios.map { String(format: "%.2f", $0) }.joined(separator: ", "))" : ""
            print("reference  \(Int(median(theirs))) tok/s\(ofRounds); held-out EV \(String(format: "%.4f", theirEV)) (PyTorch, sparsify-style, same rows and hyperparameters)")
            print("ratio      \(String(format: "%.2f", ratio))× tokens/s (median\(perRound)); EV difference \(String(format: "%+.4f", ev - theirEV))")
            figures["reference_tokens_per_second"] = median(theirs).rounded()
            figures["reference_explained_variance"] = theirEV
            figures["ratio_to_reference"] = (ratio * 100).rounded() / 100
            figures["ratios_per_round"] = ratios.map { ($0 * 100).rounded() / 100 }
            figures["explained_variance_difference"] = ev - theirEV
        }
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys]), as: UTF8.self))
        }
    }

    /// Trains a fresh dictionary on the first `budget` training rows; returns it, the tokens
    /// seen and tokens/s of the training loop.
    private func trainOurs(
        train: [Float], trainRows: Int, width: Int, scale: Float, sample: [Float], sampleRows: Int, budget: Int, training: TrainingConfig
    ) -> (SparseAutoencoder, Int, Double) {
        var initRandom = SplitMix64(seed: seed)
        let model = SparseAutoencoder(
            config: DictionaryConfig(architecture: .topk, width: width, latents: latents, k: k, normalizationScale: scale), random: &initRandom)
        let trainer = SAETrainer(model: model, training: training, threads: threads)
        trainer.initializeDecoderBias(sample: sample, rows: sampleRows)
        let clock = ContinuousClock()
        let start = clock.now
        var seen = 0
        train.withUnsafeBufferPointer { rows in
            while seen < budget {
                let n = min(batchTokens, budget - seen)
                let lo = seen % trainRows
                let count = min(n, trainRows - lo)
                trainer.train(raw: UnsafeBufferPointer(rebasing: rows[(lo * width)..<((lo + count) * width)]), rows: count)
                seen += count
            }
        }
        let elapsed = (clock.now - start) / .seconds(1)
        let stats = trainer.prescreenStats
        print("encoder    \(trainer.encoderPath.rawValue): \(String(format: "%.1f", Double(stats.recomputed) / Double(seen))) values recomputed per token, \(stats.fullRows) of \(seen) rows in full")
        return (model, seen, Double(seen) / elapsed)
    }

    private func runReference(
        python: String, train: [Float], held: [Float], width: Int, tokens: Int, training: TrainingConfig
    ) throws -> (Double, Double) {
        guard FileManager.default.fileExists(atPath: referenceScript) else {
            throw CommandFailure("reference script \(referenceScript) not found; run from the repository root or pass --reference-script")
        }
        let data = FileManager.default.temporaryDirectory.appendingPathComponent("bench-train-\(getpid()).safetensors").path
        defer { try? FileManager.default.removeItem(atPath: data) }
        try SafeTensorsWriter.write(
            [
                OutputTensor(name: "train", shape: [train.count / width, width], floats: train),
                OutputTensor(name: "heldout", shape: [held.count / width, width], floats: held),
            ], to: data)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [
            referenceScript, "--data", data, "--latents", String(latents), "--k", String(k), "--batch-tokens", String(batchTokens),
            "--tokens", String(tokens), "--threads", String(threads), "--lr", String(training.learningRate),
            "--warmup-steps", String(training.warmupSteps), "--decay-fraction", String(training.decayFraction),
            "--dead-tokens", String(training.deadTokens), "--aux-k", String(training.auxK), "--aux-k-coef", String(training.auxKCoefficient),
            "--seed", String(seed), "--json",
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let line = String(decoding: output, as: UTF8.self).split(separator: "\n").last,
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let speed = (object["tokens_per_second"] as? NSNumber)?.doubleValue,
            let ev = (object["explained_variance"] as? NSNumber)?.doubleValue
        else {
            throw CommandFailure("the reference run (\(python) \(referenceScript)) failed or printed no JSON; check that its Python has torch and safetensors")
        }
        return (speed, ev)
    }
}
