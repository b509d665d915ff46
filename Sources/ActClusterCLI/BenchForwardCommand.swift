import ArgumentParser
import BLAS
import Foundation
import Platform
import Transformers

/// `actcluster bench forward`: forward-pass throughput on random tokens, against the
/// machine's measured sgemm peak and, optionally, transformers in the same run.
struct BenchForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Measure forward-pass tokens/s on random token ids.",
        discussion: """
            Prints tokens/s, the fraction of this machine's sgemm peak (measured in the same \
            run), and peak RSS. With --reference PYTHON it also times transformers fp32 on \
            the same shapes and threads (Tests/Reference/bench_forward_transformers.py) and \
            prints the ratio. By default every layer's residual is kept, as in collection.
            """
    )

    @Option(help: ArgumentHelp("Hugging Face model folder (config.json, model.safetensors).", valueName: "dir"))
    var model: String

    @Option(help: "Sequences per batch.")
    var batch = 32

    @Option(help: "Tokens per sequence.")
    var context = 128

    @Option(help: "Threads of the forward pass (the model runs its own threads over single-threaded kernels).")
    var threads = 2

    @Option(help: ArgumentHelp("Hooks to capture (repeatable). Default: every layer's hook_resid_post.", valueName: "name"))
    var hook: [String] = []

    @Option(help: "Compute backend. fp32 (the CKernels GEMM and attention) is the only one so far.")
    var compute = "fp32"

    @Option(help: "Timed batches.")
    var iterations = 5

    @Option(help: "Untimed warm-up batches.")
    var warmup = 1

    @Option(help: ArgumentHelp("Python with torch and transformers, to time the reference in the same run.", valueName: "python"))
    var reference: String?

    @Option(help: ArgumentHelp("The reference script.", valueName: "path"))
    var referenceScript = "Tests/Reference/bench_forward_transformers.py"

    @Option(help: "With --reference: alternate our timing and the reference this many times and report the median ratio (shared machines are noisy).")
    var rounds = 3

    @Flag(help: "End with one JSON line of the figures.")
    var json = false

    func validate() throws {
        guard compute == "fp32" else { throw ValidationError("--compute \(compute) is not available yet; use fp32") }
        guard batch > 0, context > 0, threads > 0, iterations > 0, warmup >= 0, rounds > 0 else {
            throw ValidationError("--batch, --context, --threads, --iterations and --rounds must be positive")
        }
    }

    func run() throws {
        let loaded = try TransformerModel(directory: model)
        loaded.threads = threads
        let names = hook.isEmpty ? (0..<loaded.config.layers).map { "blocks.\($0).hook_resid_post" } : hook
        let hooks = try loaded.hooks(names)
        if let maximum = loaded.config.maxPositions, context > maximum {
            throw ValidationError("--context \(context) exceeds the model's \(maximum) positions")
        }
        var generator = SystemRandomNumberGenerator()
        let vocabulary = Int32(loaded.config.vocabularySize)
        let sequences = (0..<batch).map { _ in (0..<context).map { _ in Int32.random(in: 0..<vocabulary, using: &generator) } }

        for _ in 0..<warmup { _ = try loaded.forward(sequences, hooks: hooks) }
        func timeOurs() throws -> Double {
            let clock = ContinuousClock()
            let start = clock.now
            for _ in 0..<iterations { _ = try loaded.forward(sequences, hooks: hooks) }
            return Double(batch * context * iterations) / (clock.now - start).seconds
        }
        // Alternate ours and the reference so that both see the same machine load.
        var ours: [Double] = [], theirs: [Double] = [], referenceAttention = "default"
        for _ in 0..<(reference == nil ? 1 : rounds) {
            ours.append(try timeOurs())
            if let reference {
                let run = try runReference(python: reference)
                theirs.append(run.tokensPerSecond)
                referenceAttention = run.attention
            }
        }
        let tokensPerSecond = median(ours)

        let peak = BenchForwardCommand.measureSgemmPeak(threads: threads)
        let achieved = tokensPerSecond * loaded.config.matmulFlopsPerToken
        let rss = peakResidentBytes()
        var figures: [String: Any] = [
            "tokens_per_second": tokensPerSecond.rounded(),
            "sgemm_peak_gflops": (peak / 1e9).rounded(),
            "fraction_of_sgemm_peak": (achieved / peak * 1000).rounded() / 1000,
            "peak_rss_mb": rss / (1 << 20),
            "batch": batch, "context": context, "threads": threads, "compute": compute,
            "hooks": names.count, "model": loaded.config.family,
        ]
        print("model      \(model) (\(loaded.config.family), \(loaded.config.layers) layers, d=\(loaded.config.hidden))")
        print("shape      batch \(batch) × context \(context), \(threads) threads, \(compute), \(names.count) hooks kept")
        print("actcluster \(Int(tokensPerSecond)) tok/s\(ours.count > 1 ? " (median of \(ours.count))" : "")")
        print("sgemm peak \(Int(peak / 1e9)) GFLOP/s measured; forward GEMMs reach \(String(format: "%.0f%%", achieved / peak * 100)) of it")
        print("peak RSS   \(rss / (1 << 20)) MB")
        if !theirs.isEmpty {
            let ratios = zip(ours, theirs).map { $0 / $1 }
            let ratio = median(ratios)
            figures["reference_tokens_per_second"] = median(theirs).rounded()
            figures["ratio_to_reference"] = (ratio * 100).rounded() / 100
            figures["ratios_per_round"] = ratios.map { ($0 * 100).rounded() / 100 }
            figures["reference_attention"] = referenceAttention
            print("reference  \(Int(median(theirs))) tok/s (transformers fp32, \(referenceAttention) attention, same shapes and threads; median of \(rounds))")
            print("ratio      \(String(format: "%.2f", ratio))× (median; per round: \(ratios.map { String(format: "%.2f", $0) }.joined(separator: ", ")))")
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    /// sgemm GFLOP/s on a square problem large enough to reach the library's best.
    static func measureSgemmPeak(threads: Int, size: Int = 1536) -> Double {
        let saved = BLAS.threadCount
        BLAS.threadCount = threads
        defer { BLAS.threadCount = saved }
        let a = [Float](repeating: 0.5, count: size * size), b = a
        var c = [Float](repeating: 0, count: size * size)
        let clock = ContinuousClock()
        var best = 0.0
        for _ in 0..<4 {
            let start = clock.now
            a.withUnsafeBufferPointer { a in
                b.withUnsafeBufferPointer { b in
                    c.withUnsafeMutableBufferPointer { c in
                        BLAS.sgemm(m: size, n: size, k: size, a: a, lda: size, b: b, ldb: size, c: c, ldc: size)
                    }
                }
            }
            best = max(best, 2 * Double(size * size * size) / (clock.now - start).seconds)
        }
        return best
    }

    /// Runs the reference script once: its tokens/s and the attention transformers chose.
    private func runReference(python: String) throws -> (tokensPerSecond: Double, attention: String) {
        guard FileManager.default.fileExists(atPath: referenceScript) else {
            throw CommandFailure("reference script \(referenceScript) not found; run from the repository root or pass --reference-script")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [
            referenceScript, "--model", model, "--batch", String(batch), "--context", String(context),
            "--threads", String(threads), "--hidden-states", "--warmup", String(max(1, warmup)),
            "--iters", String(iterations), "--json",
        ]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0,
            let line = String(decoding: output, as: UTF8.self).split(separator: "\n").last,
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            let speed = (object["tokens_per_second"] as? NSNumber)?.doubleValue
        else {
            throw CommandFailure("the reference run (\(python) \(referenceScript)) failed or printed no JSON; check that its Python has torch and transformers")
        }
        return (speed, object["attn"] as? String ?? "default")
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

