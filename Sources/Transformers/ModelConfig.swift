import Foundation

/// The architecture settings of a Hugging Face `config.json`, per family.
public enum ModelConfig: Sendable, Equatable {
    case bert(BertConfig)
    case gpt2(GPT2Config)
    case llama(LlamaConfig)

    public var family: String {
        switch self {
        case .bert: "bert"
        case .gpt2: "gpt2"
        case .llama: "llama"
        }
    }

    /// Whether it predicts the next token (GPT-2, Llama) rather than encoding (BERT).
    public var isCausal: Bool {
        if case .bert = self { return false }
        return true
    }

    public var layers: Int {
        switch self {
        case .bert(let c): c.layers
        case .gpt2(let c): c.layers
        case .llama(let c): c.layers
        }
    }

    public var hidden: Int {
        switch self {
        case .bert(let c): c.hidden
        case .gpt2(let c): c.hidden
        case .llama(let c): c.hidden
        }
    }

    public var mlpWidth: Int {
        switch self {
        case .bert(let c): c.intermediate
        case .gpt2(let c): c.intermediate
        case .llama(let c): c.intermediate
        }
    }

    public var vocabularySize: Int {
        switch self {
        case .bert(let c): c.vocabularySize
        case .gpt2(let c): c.vocabularySize
        case .llama(let c): c.vocabularySize
        }
    }

    /// Longest sequence the position embeddings allow (nil: rotary, no hard limit).
    public var maxPositions: Int? {
        switch self {
        case .bert(let c): c.maxPositions
        case .gpt2(let c): c.maxPositions
        case .llama(let c): c.slidingWindow
        }
    }

    /// Multiply-adds per token in the GEMMs of the full stack (for FLOP accounting).
    public var matmulFlopsPerToken: Double {
        let d = Double(hidden), m = Double(mlpWidth), l = Double(layers)
        switch self {
        case .bert, .gpt2: return 2 * l * (4 * d * d + 2 * d * m)
        case .llama(let c):
            let kv = Double(c.kvHeads * c.headDim), q = Double(c.heads * c.headDim)
            return 2 * l * (d * q * 2 + 2 * d * kv + 3 * d * m)
        }
    }

    /// Parses config.json text; `path` only names the file in errors.
    public init(json: Data, path: String) throws {
        guard let object = try? JSONSerialization.jsonObject(with: json) as? [String: Any] else {
            throw ModelError.invalidConfig(path: path, problem: "not a JSON object")
        }
        let reader = ConfigReader(object: object, path: path)
        let type = try reader.string("model_type")
        switch type {
        case "bert": self = .bert(try BertConfig(reader))
        case "gpt2": self = .gpt2(try GPT2Config(reader))
        case "llama", "mistral", "qwen2": self = .llama(try LlamaConfig(reader, modelType: type))
        default: throw ModelError.unsupportedModelType(type)
        }
    }
}

public struct BertConfig: Sendable, Equatable {
    public let hidden, layers, heads, intermediate, vocabularySize, maxPositions, typeVocabularySize: Int
    public let layerNormEpsilon: Float

    init(_ r: ConfigReader) throws {
        hidden = try r.int("hidden_size")
        layers = try r.int("num_hidden_layers")
        heads = try r.int("num_attention_heads")
        intermediate = try r.int("intermediate_size")
        vocabularySize = try r.int("vocab_size")
        maxPositions = try r.int("max_position_embeddings")
        typeVocabularySize = try r.int("type_vocab_size", default: 2)
        layerNormEpsilon = Float(try r.double("layer_norm_eps", default: 1e-12))
        try r.require("hidden_act", in: ["gelu"], default: "gelu", family: "bert")
        try r.require("position_embedding_type", in: ["absolute"], default: "absolute", family: "bert")
        try r.requireDivisible(hidden, by: heads, "hidden_size", "num_attention_heads")
    }
}

public struct GPT2Config: Sendable, Equatable {
    public enum Activation: Sendable { case geluTanh, geluErf }
    public let hidden, layers, heads, intermediate, vocabularySize, maxPositions: Int
    public let layerNormEpsilon: Float
    public let activation: Activation

    init(_ r: ConfigReader) throws {
        hidden = try r.int("n_embd")
        layers = try r.int("n_layer")
        heads = try r.int("n_head")
        intermediate = try r.optionalInt("n_inner") ?? 4 * hidden
        vocabularySize = try r.int("vocab_size")
        maxPositions = try r.int("n_positions")
        layerNormEpsilon = Float(try r.double("layer_norm_epsilon", default: 1e-5))
        let name = try r.require(
            "activation_function", in: ["gelu_new", "gelu_pytorch_tanh", "gelu"], default: "gelu_new", family: "gpt2")
        activation = name == "gelu" ? .geluErf : .geluTanh
        try r.requireFlag("scale_attn_weights", equals: true, family: "gpt2")
        try r.requireFlag("scale_attn_by_inverse_layer_idx", equals: false, family: "gpt2")
        try r.requireFlag("reorder_and_upcast_attn", equals: false, family: "gpt2")
        try r.requireDivisible(hidden, by: heads, "n_embd", "n_head")
    }
}

public struct LlamaConfig: Sendable, Equatable {
    public let hidden, layers, heads, kvHeads, headDim, intermediate, vocabularySize: Int
    public let rmsNormEpsilon: Float
    public let ropeTheta: Double
    public let ropeScaling: RopeScaling?
    /// Qwen2 and `attention_bias: true` checkpoints have q/k/v biases.
    public let qkvBias: Bool
    public let outputBias: Bool
    public let mlpBias: Bool
    public let tiedEmbeddings: Bool
    public let slidingWindow: Int?

    public struct RopeScaling: Sendable, Equatable {
        public let factor, lowFrequencyFactor, highFrequencyFactor: Double
        public let originalMaxPositions: Int
    }

    init(_ r: ConfigReader, modelType: String) throws {
        hidden = try r.int("hidden_size")
        layers = try r.int("num_hidden_layers")
        heads = try r.int("num_attention_heads")
        kvHeads = try r.optionalInt("num_key_value_heads") ?? heads
        headDim = try r.optionalInt("head_dim") ?? hidden / heads
        intermediate = try r.int("intermediate_size")
        vocabularySize = try r.int("vocab_size")
        rmsNormEpsilon = Float(try r.double("rms_norm_eps", default: 1e-6))
        let attentionBias = try r.bool("attention_bias", default: false)
        qkvBias = modelType == "qwen2" || attentionBias
        outputBias = attentionBias
        mlpBias = try r.bool("mlp_bias", default: false)
        tiedEmbeddings = try r.bool("tie_word_embeddings", default: false)
        try r.require("hidden_act", in: ["silu"], default: "silu", family: modelType)
        // Mistral's sliding window only changes the math for sequences longer than it.
        slidingWindow = try r.optionalInt("sliding_window")
        guard heads % kvHeads == 0 else {
            throw ModelError.invalidConfig(path: r.path, problem: "num_attention_heads \(heads) is not a multiple of num_key_value_heads \(kvHeads)")
        }
        // transformers 5 nests rope settings under rope_parameters; older files keep them at top level.
        let rope = (r.object["rope_parameters"] as? [String: Any]) ?? (r.object["rope_scaling"] as? [String: Any]) ?? [:]
        let topLevelTheta = try r.double("rope_theta", default: 10000)
        ropeTheta = (rope["rope_theta"] as? NSNumber)?.doubleValue ?? topLevelTheta
        let ropeType = (rope["rope_type"] as? String) ?? (rope["type"] as? String) ?? "default"
        switch ropeType {
        case "default": ropeScaling = nil
        case "llama3":
            func number(_ key: String) throws -> Double {
                guard let value = (rope[key] as? NSNumber)?.doubleValue else {
                    throw ModelError.invalidConfig(path: r.path, problem: "llama3 rope scaling lacks \(key)")
                }
                return value
            }
            ropeScaling = RopeScaling(
                factor: try number("factor"), lowFrequencyFactor: try number("low_freq_factor"),
                highFrequencyFactor: try number("high_freq_factor"),
                originalMaxPositions: Int(try number("original_max_position_embeddings")))
        default:
            throw ModelError.unsupportedOption(name: "rope_type", value: ropeType, family: modelType)
        }
    }
}

/// Typed access to config.json values with errors that name the key and the file.
struct ConfigReader {
    let object: [String: Any]
    let path: String

    func optionalInt(_ key: String) throws -> Int? {
        guard let value = object[key], !(value is NSNull) else { return nil }
        guard let number = value as? NSNumber, number.doubleValue == number.doubleValue.rounded(), number.intValue > 0 else {
            throw ModelError.invalidConfig(path: path, problem: "\(key) must be a positive integer, found \(value)")
        }
        return number.intValue
    }

    func int(_ key: String, default fallback: Int? = nil) throws -> Int {
        if let value = try optionalInt(key) { return value }
        if let fallback { return fallback }
        throw ModelError.invalidConfig(path: path, problem: "missing \(key)")
    }

    func double(_ key: String, default fallback: Double) throws -> Double {
        guard let value = object[key], !(value is NSNull) else { return fallback }
        guard let number = value as? NSNumber else {
            throw ModelError.invalidConfig(path: path, problem: "\(key) must be a number, found \(value)")
        }
        return number.doubleValue
    }

    func bool(_ key: String, default fallback: Bool) throws -> Bool {
        guard let value = object[key], !(value is NSNull) else { return fallback }
        guard let flag = value as? Bool else {
            throw ModelError.invalidConfig(path: path, problem: "\(key) must be true or false, found \(value)")
        }
        return flag
    }

    func string(_ key: String) throws -> String {
        guard let value = object[key] as? String else {
            throw ModelError.invalidConfig(path: path, problem: "missing \(key)")
        }
        return value
    }

    @discardableResult
    func require(_ key: String, in allowed: Set<String>, default fallback: String, family: String) throws -> String {
        let value = (object[key] as? String) ?? fallback
        guard allowed.contains(value) else { throw ModelError.unsupportedOption(name: key, value: value, family: family) }
        return value
    }

    func requireFlag(_ key: String, equals expected: Bool, family: String) throws {
        let value = try bool(key, default: expected)
        guard value == expected else { throw ModelError.unsupportedOption(name: key, value: String(value), family: family) }
    }

    func requireDivisible(_ value: Int, by divisor: Int, _ valueKey: String, _ divisorKey: String) throws {
        guard value % divisor == 0 else {
            throw ModelError.invalidConfig(path: path, problem: "\(valueKey) \(value) is not a multiple of \(divisorKey) \(divisor)")
        }
    }
}
