import ArgumentParser
import Foundation
import Logging
import SafeTensors
import Tokenizers
import Transformers

/// `actcluster forward`: activations of a few lines of text, for inspection and parity checks.
struct ForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Run a model over the lines of a text file and save activations at hooks.",
        discussion: """
            Each non-empty line is one sequence, tokenized as transformers' tokenizer(line) \
            does (with the model's special tokens) and truncated to --context tokens the way \
            tokenizer(line, truncation=True, max_length=N) does, keeping the special tokens. \
            The output holds one float32 [rows, d] tensor per hook, named as the hook, and \
            `tokens` (int32 [rows]), rows being every token of every line in order.

            Hooks: blocks.L.hook_resid_pre, blocks.L.hook_attn_out, blocks.L.mlp.hook_post, \
            blocks.L.hook_mlp_out, blocks.L.hook_resid_post. The pass stops after the deepest one.
            """
    )

    @Option(help: ArgumentHelp("Hugging Face model folder (config.json, model.safetensors, tokenizer.json).", valueName: "dir"))
    var model: String

    @Option(help: ArgumentHelp("Hook to capture (repeatable), e.g. blocks.3.hook_resid_post.", valueName: "name"))
    var hook: [String]

    @Option(help: ArgumentHelp("UTF-8 text, one sequence per line.", valueName: "file"))
    var textFile: String

    @Option(help: "Maximum tokens per sequence, special tokens included.")
    var context = 128

    @Option(help: "Threads for the forward pass.")
    var threads = 2

    @Option(help: "Sequences per forward batch.")
    var batch = 32

    @Option(help: ArgumentHelp("Output safetensors file.", valueName: "out.safetensors"))
    var out: String

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        guard !hook.isEmpty else { throw ValidationError("give at least one --hook, e.g. --hook blocks.0.hook_resid_post") }
        guard context >= 2 else { throw ValidationError("--context must be at least 2 (room for the special tokens)") }
        guard threads > 0, batch > 0 else { throw ValidationError("--threads and --batch must be positive") }
    }

    func run() throws {
        let log = try logging.bootstrap(role: "forward")
        let loaded = try TransformerModel(directory: model)
        loaded.threads = threads
        let hooks = try loaded.hooks(hook)
        let tokenizer = try Tokenizer(contentsOfFile: model + "/tokenizer.json")
        let lines = try TextLines.read(textFile)
        guard !lines.isEmpty else { throw CommandFailure("\(textFile) has no non-empty lines") }
        if let maximum = loaded.config.maxPositions, context > maximum {
            throw ValidationError("--context \(context) exceeds the model's \(maximum) positions")
        }

        let sequences = lines.map { tokenizer.encode($0, truncatedTo: context) }
        var outputs: [HookPoint: [Float]] = [:]
        let clock = ContinuousClock()
        let start = clock.now
        for first in stride(from: 0, to: sequences.count, by: batch) {
            let chunk = Array(sequences[first..<min(sequences.count, first + batch)])
            for (point, values) in try loaded.forward(chunk, hooks: hooks) { outputs[point, default: []] += values }
            log.debug("batch_done", metadata: ["lines": "\(first + chunk.count)", "of": "\(sequences.count)"])
        }
        let tokens = sequences.flatMap { $0 }
        var tensors = hooks.points.map { point in
            OutputTensor(name: point.description, shape: [tokens.count, loaded.width(of: point)], floats: outputs[point] ?? [])
        }
        tensors.append(OutputTensor(name: "tokens", shape: [tokens.count], int32s: tokens))
        try SafeTensorsWriter.write(tensors, metadata: ["model": model, "context": String(context)], to: out)
        let seconds = (clock.now - start).seconds
        log.info(
            "forward_done",
            metadata: [
                "lines": "\(lines.count)", "rows": "\(tokens.count)", "hooks": "\(hooks.points.count)",
                "tok_s": "\(Int(Double(tokens.count) / max(seconds, 1e-9)))", "out": "\(out)",
            ])
    }
}

extension Tokenizer {
    /// `tokenizer(text, truncation=True, max_length=limit)`: the content is cut so that the
    /// special tokens around it still fit.
    func encode(_ text: String, truncatedTo limit: Int) -> [Int32] {
        let prefix = singleSequencePrefix, suffix = singleSequenceSuffix
        let content = encode(text, addSpecialTokens: false)
        return prefix + content.prefix(max(0, limit - prefix.count - suffix.count)) + suffix
    }
}

/// The non-empty lines of a UTF-8 text file. Lines end at "\n" only (a trailing "\r" is
/// dropped), so text with other Unicode separators keeps its lines.
enum TextLines {
    static func read(_ path: String) throws -> [String] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CommandFailure("cannot read \(path): no such file or not readable")
        }
        var lines: [String] = []
        for (number, raw) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            var bytes = raw
            if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
            guard !bytes.isEmpty else { continue }
            guard let line = String(validating: bytes, as: UTF8.self) else {
                throw CommandFailure("line \(number + 1) of \(path) is not valid UTF-8; fix or remove it")
            }
            lines.append(line)
        }
        return lines
    }
}
