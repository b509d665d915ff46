import Foundation

/// What every family implements: one pass over a ragged batch, recording hooks as it goes.
protocol ForwardModel: AnyObject {
    func forward(_ batch: TokenBatch, capture: inout Capture, workspace: Workspace, threads: Int)
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
    /// Threads of one forward pass. The model runs its own threads over single-threaded
    /// kernels, so it uses exactly this many cores (no oversubscription between workers).
    public var threads = 1

    /// Loads `config.json` and the safetensors weights of `directory`, checking every tensor.
    public init(directory: String) throws {
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
        case .llama(let c): implementation = try LlamaModel(config: c, weights: weights)
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
    /// Computation stops after the deepest requested hook.
    public func forward(_ sequences: [[Int32]], hooks: HookSet) throws -> [HookPoint: [Float]] {
        let batch = TokenBatch(sequences)
        guard batch.rows > 0 else {
            return Dictionary(uniqueKeysWithValues: hooks.points.map { ($0, []) })
        }
        for token in batch.tokens where token < 0 || Int(token) >= config.vocabularySize {
            throw ModelError.tokenOutOfRange(token: token, vocabularySize: config.vocabularySize)
        }
        if let maximum = config.maxPositions, batch.longest > maximum {
            throw ModelError.sequenceTooLong(length: batch.longest, maximum: maximum)
        }
        var capture = Capture(hooks: hooks, rows: batch.rows)
        implementation.forward(batch, capture: &capture, workspace: workspace, threads: threads)
        return capture.outputs
    }

    /// The rotary inverse frequencies of a Llama-family model (nil for others); exposed for tests.
    public var rotaryInverseFrequencies: [Float]? {
        (implementation as? LlamaModel)?.inverseFrequencies
    }
}
