import ArgumentParser
import Foundation
import Tokenizers
import Trainer
import Transformers

/// `actcluster eval`: reconstruction quality of a dictionary on shard files and, with
/// `--model`, what splicing it into the model costs downstream.
struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Explained variance, FVU, L0 and dead fraction of a trained dictionary on shard files; downstream fidelity with --model.",
        discussion: """
            EV = 1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²), accumulated in float64 over every row read \
            (inference semantics: batchtopk uses its learned threshold). Dead fraction: latents \
            that never fired on these rows. With --json the last line is one JSON object.

            With --model, the reconstruction replaces the activation at the dictionary's hook \
            (every position) during the model's forward pass, over the token windows rebuilt \
            from --shards (or the lines of --text-file). The model must be the one the \
            dictionary was trained on (config.json SHA-256 checked). Encoders (BERT): the \
            cosine between the mean-pooled final hidden states with and without the splice, \
            averaged over sequences (embedding_cosine). Causal LMs (GPT-2, Llama): the mean \
            next-token loss clean, spliced and with the hook zero-ablated, and CE loss \
            recovered = (ablated − spliced) / (ablated − clean), as SAELens reports it \
            (ce_loss_clean, ce_loss_spliced, ce_loss_ablated, ce_loss_recovered).
            """
    )

    @Option(help: ArgumentHelp("A checkpoint folder, or a run's --out folder.", valueName: "checkpoint"))
    var sae: String

    @Option(help: ArgumentHelp("Folder of shard files.", valueName: "dir"))
    var shards: String

    @Option(help: ArgumentHelp("At most this many rows (default: all of the hook's rows, once).", valueName: "N"))
    var maxTokens: Int?

    @Option(help: "Rows per batch; with --model, also about the tokens of each spliced batch.")
    var batchTokens = 4096

    @Option(help: "Threads.")
    var threads = 2

    @Option(help: ArgumentHelp("Hugging Face model folder the dictionary was trained on: also report downstream fidelity.", valueName: "dir"))
    var model: String?

    @Option(help: ArgumentHelp("With --model: sequences from this UTF-8 file, one per non-empty line (default: the windows of --shards).", valueName: "file"))
    var textFile: String?

    @Option(help: ArgumentHelp("With --text-file: maximum tokens per line, special tokens included (default 128).", valueName: "N"))
    var context: Int?

    @Option(help: ArgumentHelp("With --model: at most this many sequences for the spliced passes (default 64).", valueName: "N"))
    var sequences: Int?

    @Flag(help: "End with one JSON line of the figures.")
    var json = false

    func validate() throws {
        guard batchTokens > 0, threads > 0 else { throw ValidationError("--batch-tokens and --threads must be positive") }
        if let maxTokens, maxTokens <= 0 { throw ValidationError("--max-tokens must be positive") }
        if model == nil, textFile != nil || context != nil || sequences != nil {
            throw ValidationError("--text-file, --context and --sequences apply only with --model")
        }
        if let context, context < 2 { throw ValidationError("--context must be at least 2 (room for the special tokens)") }
        if textFile == nil, context != nil { throw ValidationError("--context applies only with --text-file (shard windows keep their length)") }
        if let sequences, sequences <= 0 { throw ValidationError("--sequences must be positive") }
    }

    func run() throws {
        do {
            let (dictionary, _) = try Checkpoint.loadModel(sae)
            let source = try ShardSource(directory: shards, hook: dictionary.config.hook)
            guard source.description.width == dictionary.width else {
                throw CommandFailure("the dictionary has width \(dictionary.width), the shards of \(dictionary.config.hook) have \(source.description.width)")
            }
            // Model, hook and identity are checked before the long pass over the shards.
            let fidelity = try model.map { directory -> FidelityEvaluator in
                let transformer = try TransformerModel(directory: directory, languageModelHead: true)
                transformer.threads = threads
                return try FidelityEvaluator(model: transformer, dictionary: dictionary, threads: threads)
            }
            let evaluator = Evaluator(model: dictionary, threads: threads)
            var seen = 0
            let limit = min(maxTokens ?? Int.max, try source.totalRows())
            let clock = ContinuousClock(), start = clock.now
            while seen < limit {
                let rows = try source.read(maxRows: min(batchTokens, limit - seen))
                let count = rows.count / dictionary.width
                rows.withUnsafeBufferPointer { _ = evaluator.add(raw: $0, rows: count) }
                seen += count
            }
            let seconds = (clock.now - start) / .seconds(1)
            let a = evaluator.accumulator
            let config = dictionary.config
            print("dictionary  \(config.architecture.rawValue), d=\(dictionary.width), m=\(dictionary.latents), k=\(config.k), hook \(config.hook)")
            print("rows        \(a.count) (\(Int(Double(a.count) / max(seconds, 1e-9))) rows/s)")
            print(String(format: "EV          %.4f  (FVU %.4f)", a.explainedVariance, a.fractionUnexplained))
            print(String(format: "L0          %.2f", a.l0))
            print(String(format: "dead        %.4f of latents never fired", evaluator.deadFraction))
            var figures: [String: Any] = [
                "explained_variance": a.explainedVariance, "fvu": a.fractionUnexplained, "l0": a.l0,
                "dead_fraction": evaluator.deadFraction, "rows": a.count, "architecture": config.architecture.rawValue,
                "latents": dictionary.latents, "width": dictionary.width,
            ]
            if let fidelity {
                let report = try run(fidelity, source: source)
                figures["fidelity_sequences"] = report.sequences
                figures["fidelity_tokens"] = report.tokens
                if let cosine = report.embeddingCosine {
                    print(String(format: "embedding   cosine %.4f, spliced vs clean (mean-pooled final hidden state)", cosine))
                    figures["embedding_cosine"] = cosine
                }
                if let clean = report.ceLossClean, let spliced = report.ceLossSpliced, let ablated = report.ceLossAblated,
                    let recovered = report.ceLossRecovered
                {
                    print(String(format: "CE loss     clean %.4f, spliced %.4f, zero-ablated %.4f", clean, spliced, ablated))
                    print(String(format: "recovered   %.4f = (ablated − spliced) / (ablated − clean)", recovered))
                    figures["ce_loss_clean"] = clean
                    figures["ce_loss_spliced"] = spliced
                    figures["ce_loss_ablated"] = ablated
                    figures["ce_loss_recovered"] = recovered
                }
            }
            if json {
                print(String(decoding: try JSONSerialization.data(withJSONObject: figures, options: [.sortedKeys]), as: UTF8.self))
            }
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw CommandFailure("\(error)")
        }
    }

    /// The spliced passes over the shards' windows (or --text-file's lines), in batches of
    /// about --batch-tokens tokens.
    private func run(_ fidelity: FidelityEvaluator, source: ShardSource) throws -> FidelityReport {
        let limit = sequences ?? 64
        let windows: [[Int32]]
        if let textFile {
            let context = context ?? 128
            if let maximum = fidelity.model.config.maxPositions, context > maximum {
                throw CommandFailure("--context \(context) exceeds the model's \(maximum) positions")
            }
            let tokenizer = try Tokenizer(contentsOfFile: fidelity.model.directory + "/tokenizer.json")
            windows = try TextLines.read(textFile).prefix(limit).map { tokenizer.encode($0, truncatedTo: context) }
            guard !windows.isEmpty else { throw CommandFailure("\(textFile) has no non-empty lines") }
        } else {
            windows = try source.tokenWindows(limit: limit)
            guard !windows.isEmpty else { throw CommandFailure("the shards of \(fidelity.point) hold no token windows") }
        }
        let clock = ContinuousClock(), start = clock.now
        var batch: [[Int32]] = [], tokens = 0
        for window in windows {
            batch.append(window)
            tokens += window.count
            if tokens >= batchTokens {
                try fidelity.add(batch)
                batch = []
                tokens = 0
            }
        }
        if !batch.isEmpty { try fidelity.add(batch) }
        let report = fidelity.report
        let seconds = (clock.now - start) / .seconds(1)
        let origin = textFile.map { "lines of \($0)" } ?? "shard windows"
        print("fidelity    \(report.sequences) \(origin), \(report.tokens) tokens, spliced at \(fidelity.point) of \(fidelity.model.directory) (\(String(format: "%.1f", seconds)) s)")
        return report
    }
}
