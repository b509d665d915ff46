import ArgumentParser
import ClusterProtocol
import Collection
import Corpus
import Foundation
import Logging
import Shards
import Tokenizers
import Transformers

/// `actcluster collect`: single-process collection, the same path cluster workers run.
struct CollectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "collect",
        abstract: "Collect activations of a corpus into shard files on this machine.",
        discussion: """
            Documents are tokenized one by one, joined with the model's separator ([SEP] for \
            BERT, end-of-text for GPT-2 and Llama) and packed into windows of --context tokens \
            that start and end with the model's special tokens. A long document continues in \
            the next window. Every position of every window is captured unless --skip-special \
            is given. The corpus is cut into units of about --unit-tokens tokens (estimated at \
            4 bytes of text per token) at document boundaries, never across files, exactly as \
            a coordinator plans them; each unit gives one shard per hook, and manifest.json lists them all with running statistics per hook.

            Bad lines (invalid UTF-8 or JSON, a missing text field, an empty document) are \
            logged with file and line, counted in the manifest, and skipped.
            """
    )

    @Option(help: ArgumentHelp("Hugging Face model folder (config.json, model.safetensors, tokenizer.json).", valueName: "dir"))
    var model: String

    @Option(help: ArgumentHelp("Hook to capture (repeatable), e.g. blocks.3.hook_resid_post.", valueName: "name"))
    var hook: [String]

    @Option(parsing: .upToNextOption, help: ArgumentHelp("Corpus files, read in the order given.", valueName: "path"))
    var corpus: [String]

    @Option(help: "Corpus format: jsonl (one JSON object per line) or txt (one document per line).")
    var format: CorpusFormat

    @Option(help: "The JSON field that holds the text (jsonl only).")
    var textField = "text"

    @Option(help: "Tokens per window, special tokens included.")
    var context = 128

    @Option(help: "Storage type of activations: bf16, fp16 or fp32.")
    var dtype = "bf16"

    @Option(help: "Approximate tokens per unit (one shard per hook per unit).")
    var unitTokens = 65536

    @Option(help: "Threads for the forward pass.")
    var threads = 2

    @Flag(help: "Do not capture the rows of special tokens (BOS, CLS, SEP and separators).")
    var skipSpecial = false

    @Option(help: ArgumentHelp("Output folder for shards and manifest.json.", valueName: "dir"))
    var out: String

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard !hook.isEmpty else { throw ValidationError("give at least one --hook, e.g. --hook blocks.3.hook_resid_post") }
        guard !corpus.isEmpty else { throw ValidationError("give at least one --corpus file") }
        guard ShardDType(name: dtype) != nil else { throw ValidationError("--dtype must be bf16, fp16 or fp32, not \(dtype)") }
        guard context >= 2, unitTokens >= context, threads > 0 else {
            throw ValidationError("--context must be at least 2, --unit-tokens at least --context, and --threads positive")
        }
    }

    func run() throws {
        let log = try logging.bootstrap(role: "collect")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let loaded = try TransformerModel(directory: model)
        loaded.threads = threads
        let tokenizer = try Tokenizer(contentsOfFile: model + "/tokenizer.json")
        var settings = CollectionSettings(hooks: hook)
        settings.context = context
        settings.dtype = ShardDType(name: dtype)!
        settings.skipSpecial = skipSpecial
        let modelName = modelDisplayName(model)
        let collector = try ActivationCollector(model: loaded, tokenizer: tokenizer, settings: settings, modelName: modelName, logger: log)
        var manifest = ShardManifest(model: collector.identity, hooks: hook, dtype: settings.dtype, context: context)
        log.info("collect_start", metadata: ["model": "\(model)", "hooks": "\(hook.joined(separator: ","))", "corpus_files": "\(corpus.count)", "dtype": "\(dtype)", "threads": "\(threads)"])

        // The same unit plan a coordinator makes, so a collection is identical run here or on a fleet.
        let planner = UnitPlanner(corpus: CorpusSpec(paths: corpus, format: format, textField: textField, unitTokens: unitTokens))
        let clock = ContinuousClock()
        let start = clock.now
        var totals = UnitResult(unit: 0)
        var units = 0
        while let (plan, lines) = try planner.next() {
            let result = try collector.collect(unit: plan.unit.rawValue, lines: lines, into: out)
            totals.absorb(result)
            units += 1
            let elapsed = (clock.now - start).seconds
            log.info(
                "unit_done",
                metadata: [
                    "unit": "\(plan.unit)", "documents": "\(result.documents)", "tokens": "\(result.tokens)",
                    "total_tokens": "\(totals.tokens)", "tok_s": "\(Int(Double(totals.tokens) / max(elapsed, 1e-9)))",
                ])
        }
        for summary in totals.shards { manifest.add(summary, file: URL(fileURLWithPath: summary.path).lastPathComponent) }
        for (hook, running) in totals.statistics { manifest.addStatistics(running, hook: hook) }
        for (reason, count) in totals.skipped { manifest.countSkipped(reason.rawValue, by: count) }
        try manifest.write(toDirectory: out)

        let elapsed = (clock.now - start).seconds
        let bytes = manifest.shards.reduce(0) { $0 + $1.bytes }
        let rawFP32 = totals.statistics.values.reduce(0) { $0 + $1.count * $1.width * 4 }
        log.info(
            "collect_done",
            metadata: [
                "units": "\(units)", "documents": "\(totals.documents)", "windows": "\(totals.windows)",
                "tokens": "\(totals.tokens)", "rows": "\(totals.rows)", "skipped": "\(manifest.skipped.values.reduce(0, +))",
                "seconds": "\(String(format: "%.2f", elapsed))", "tok_s": "\(Int(Double(totals.tokens) / max(elapsed, 1e-9)))",
                "forward_s": "\(String(format: "%.2f", totals.forwardSeconds))",
                "encode_write_s": "\(String(format: "%.3f", totals.encodeSeconds))",
                "encode_pct_of_forward": "\(String(format: "%.1f", totals.encodeSeconds / max(totals.forwardSeconds, 1e-9) * 100))",
                "tokenize_s": "\(String(format: "%.2f", totals.tokenizeSeconds))",
                "bytes": "\(bytes)", "ratio_vs_fp32": "\(String(format: "%.2f", Double(rawFP32) / Double(max(bytes, 1))))",
                "manifest": "\(out)/\(ShardManifest.fileName)",
            ])
    }
}

extension CorpusFormat: ExpressibleByArgument {}

/// A model's name for manifests and shard headers: its folder's name, or the parent's when
/// the folder has a generic name such as "model".
func modelDisplayName(_ directory: String) -> String {
    let url = URL(fileURLWithPath: directory).standardizedFileURL
    let generic: Set<String> = ["model", "models", "weights", "checkpoint", "snapshot"]
    return generic.contains(url.lastPathComponent.lowercased()) ? url.deletingLastPathComponent().lastPathComponent : url.lastPathComponent
}
