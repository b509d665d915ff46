import CKernels
import Foundation

/// What every family implements: one pass over a ragged batch, recording hooks as it goes.
protocol ForwardModel: AnyObject {
    func forward(_ batch: TokenBatch, capture: inout Capture, workspace: Workspace, threads: Int)
    /// The output projection from the final hidden state to logits; nil for encoders.
    var head: Linear? { get }
}

/// A Hugging Face model folder loaded for activation capture.
///
/// Not thread-safe: it owns its workspace. Give each worker thread its own instance.
public final class TransformerModel {
    public let directory: String
    public let config: ModelConfig
    /// The raw config.json, for model identity hashes.
    public let configJSON: [UInt8]
    /// The end-of-text token from config.json, which separates packed documents of models
    /// without a closing special token (GPT-2, Llama).
    public let endOfTextTokenID: Int32?
    private let implementation: ForwardModel
    private let workspace = Workspace()
    /// Logits of a chunk of rows, kept apart from the families' slots.
    private let logitsWorkspace = Workspace()
    /// Threads of one forward pass. The model runs its own threads over single-threaded
    /// kernels, so it uses exactly this many cores (no oversubscription between workers).
    public var threads = 1

    /// Loads `config.json` and the safetensors weights of `directory`, checking every tensor.
    /// With `languageModelHead`, a Llama-family model also loads its `lm_head` (vocabulary × d
    /// floats, left out by default) for ``nextTokenLosses(_:splice:)``; GPT-2's head is its
    /// tied embeddings and always there.
    public init(directory: String, languageModelHead: Bool = false) throws {
        self.directory = directory
        let configPath = directory + "/config.json"
        guard let data = FileManager.default.contents(atPath: configPath) else {
            throw ModelError.missingFile(path: configPath, hint: "point --model at a Hugging Face model folder")
        }
        config = try ModelConfig(json: data, path: configPath)
        configJSON = [UInt8](data)
        let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
        // eos_token_id is a number or, in some Llama 3 configs, a list of them.
        let eos = object?["eos_token_id"]
        endOfTextTokenID = ((eos as? NSNumber) ?? (eos as? [NSNumber])?.first).map { Int32(truncating: $0) }
        let weights = try WeightStore(directory: directory)
        switch config {
        case .bert(let c): implementation = try BertModel(config: c, weights: weights)
        case .gpt2(let c): implementation = try GPT2Model(config: c, weights: weights)
        case .llama(let c): implementation = try LlamaModel(config: c, weights: weights, languageModelHead: languageModelHead)
        }
        try weights.finish()
    }

    /// Parses hook names against this model; an unknown one lists the valid names.
    public func hooks(_ names: [String]) throws -> HookSet {
        try HookSet(names.map { try HookPoint($0, layers: config.layers) })
    }

    /// Width of the activation at a hook.
    public func width(of point: HookPoint) -> Int {
        point.site == .mlpPost ? config.mlpWidth : config.hidden
    }

    /// Runs the sequences (any lengths, no padding needed) and returns each requested hook
    /// as `[rows, width]` row-major floats, rows being all tokens of all sequences in order.
    /// Computation stops after the deepest requested hook. A splice before it changes what
    /// the later hooks see (the spliced hook itself is captured after the splice).
    public func forward(_ sequences: [[Int32]], hooks: HookSet, splice: Splice? = nil) throws -> [HookPoint: [Float]] {
        let batch = try checkedBatch(sequences, splice: splice)
        guard batch.rows > 0 else {
            return Dictionary(uniqueKeysWithValues: hooks.points.map { ($0, []) })
        }
        var capture = Capture(hooks: hooks, splice: splice, rows: batch.rows, threads: threads)
        implementation.forward(batch, capture: &capture, workspace: workspace, threads: threads)
        return capture.outputs
    }

    /// The hidden state the model ends with, `[rows, d]`: transformers' `last_hidden_state`
    /// (BERT's last block output; GPT-2 and Llama after their final norm).
    public func finalHiddenStates(_ sequences: [[Int32]], splice: Splice? = nil) throws -> [Float] {
        let batch = try checkedBatch(sequences, splice: splice)
        return batch.rows > 0 ? finalHidden(batch, splice: splice) : []
    }

    /// −log p(next token) at each position but the last of every sequence, in order: n − 1
    /// values for a sequence of n tokens, whose mean is transformers' loss with
    /// `labels = input_ids` (TransformerLens's `loss_per_token`).
    public func nextTokenLosses(_ sequences: [[Int32]], splice: Splice? = nil) throws -> [Float] {
        guard let head = implementation.head else {
            throw ModelError.noLanguageModelHead(
                config.family == "bert"
                    ? "bert is an encoder; next-token losses need a causal LM (gpt2, llama)"
                    : "\(directory) was loaded without its language-model head")
        }
        let batch = try checkedBatch(sequences, splice: splice)
        guard batch.rows > 0 else { return [] }
        let hidden = finalHidden(batch, splice: splice)
        let d = config.hidden, vocabulary = head.outputs, threads = threads
        // Row r predicts token r + 1 unless it ends its sequence.
        var predicts = [Bool](repeating: true, count: batch.rows)
        for range in batch.sequences where !range.isEmpty { predicts[range.upperBound - 1] = false }
        // Logits a chunk of rows at a time: [rows, vocabulary] at once could take gigabytes.
        let chunk = 64 * threads
        let logits = logitsWorkspace.slot(0, count: chunk * vocabulary)
        var losses = [Float](repeating: 0, count: batch.rows)
        hidden.withUnsafeBufferPointer { hidden in
            losses.withUnsafeMutableBufferPointer { losses in
                for first in stride(from: 0, to: batch.rows, by: chunk) {
                    let rows = min(chunk, batch.rows - first)
                    head.apply(hidden.baseAddress! + first * d, rows: rows, ldx: d, into: logits, ldy: vocabulary, threads: threads)
                    parallelFor(rows, threads: threads) { range, _ in
                        for r in range where predicts[first + r] {
                            let row = logits + r * vocabulary
                            losses[first + r] = ak_log_sum_exp(row, vocabulary) - row[Int(batch.tokens[first + r + 1])]
                        }
                    }
                }
            }
        }
        return zip(losses, predicts).compactMap { $1 ? $0 : nil }
    }

    /// Throws unless the hook exists (every family splices at every hook).
    public func checkSplice(at point: HookPoint) throws {
        guard point.layer < config.layers else {
            throw ModelError.unknownHook(name: point.description, valid: HookPoint.namesSummary(layers: config.layers))
        }
    }

    private func checkedBatch(_ sequences: [[Int32]], splice: Splice?) throws -> TokenBatch {
        if let splice { try checkSplice(at: splice.point) }
        let batch = TokenBatch(sequences)
        for token in batch.tokens where token < 0 || Int(token) >= config.vocabularySize {
            throw ModelError.tokenOutOfRange(token: token, vocabularySize: config.vocabularySize)
        }
        if let maximum = config.maxPositions, batch.longest > maximum {
            throw ModelError.sequenceTooLong(length: batch.longest, maximum: maximum)
        }
        return batch
    }

    private func finalHidden(_ batch: TokenBatch, splice: Splice?) -> [Float] {
        var capture = Capture(hooks: nil, splice: splice, rows: batch.rows, threads: threads, toEnd: true)
        implementation.forward(batch, capture: &capture, workspace: workspace, threads: threads)
        return capture.finalHidden
    }

    /// The rotary inverse frequencies of a Llama-family model (nil for others); exposed for tests.
    public var rotaryInverseFrequencies: [Float]? {
        (implementation as? LlamaModel)?.inverseFrequencies
    }
}
