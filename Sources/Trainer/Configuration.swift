/// The kind of sparse dictionary.
public enum Architecture: String, Codable, CaseIterable, Sendable {
    /// z = TopK(ReLU(W_enc (x − b_dec) + b_enc)): exactly k latents per token (Gao et al. 2024).
    case topk
    /// The top k·n activations of a batch of n tokens; at inference, a threshold learned as a
    /// running mean of the smallest activation kept (Bussmann et al. 2024).
    case batchtopk
    /// z = ReLU(W_enc (x − b_dec) + b_enc) with an L1 penalty weighted by decoder row norms.
    case relu
}

/// Everything needed to rebuild a trained dictionary and apply it to raw activations.
public struct DictionaryConfig: Codable, Equatable, Sendable {
    public var architecture: Architecture
    /// Activation width d.
    public var width: Int
    /// Latents m.
    public var latents: Int
    /// Active latents per token (topk), or on average (batchtopk); unused by relu.
    public var k: Int
    /// TransformerLens hook name the activations come from.
    public var hook: String
    /// Model name and SHA-256 of its config.json, as in the shard manifest.
    public var modelName: String
    public var modelConfigSHA256: String
    /// Raw activations are multiplied by this before encoding (E‖x‖ = √d after scaling).
    public var normalizationScale: Float
    /// batchtopk only: inference threshold on the pre-activation, in normalised units.
    public var threshold: Float

    public init(
        architecture: Architecture, width: Int, latents: Int, k: Int, hook: String = "", modelName: String = "",
        modelConfigSHA256: String = "", normalizationScale: Float = 1, threshold: Float = 0
    ) {
        self.architecture = architecture
        self.width = width
        self.latents = latents
        self.k = k
        self.hook = hook
        self.modelName = modelName
        self.modelConfigSHA256 = modelConfigSHA256
        self.normalizationScale = normalizationScale
        self.threshold = threshold
    }

    enum CodingKeys: String, CodingKey {
        case architecture, width, latents, k, hook, threshold
        case modelName = "model_name"
        case modelConfigSHA256 = "model_config_sha256"
        case normalizationScale = "normalization_scale"
    }
}

/// Where b_dec starts.
public enum DecoderBiasInit: String, Codable, CaseIterable, Sendable {
    case median, mean, zero
}

/// Hyperparameters of one training run (sparsify's names where they exist).
public struct TrainingConfig: Codable, Equatable, Sendable {
    /// Peak learning rate; default 2e-4 / √(m / 2¹⁴).
    public var learningRate: Double
    /// Tokens per optimiser step.
    public var batchTokens: Int
    /// Token budget of the run.
    public var totalTokens: Int
    /// AuxK loss weight α.
    public var auxKCoefficient: Double
    /// Dead latents used by AuxK per token; default d / 2.
    public var auxK: Int
    /// A latent that has not fired for this many tokens is dead.
    public var deadTokens: Int
    /// relu: weight λ of Σ zᵢ‖W_dec,i‖.
    public var l1Coefficient: Double
    /// Linear warm-up steps from 0 to the peak rate.
    public var warmupSteps: Int
    /// The last fraction of steps decays the rate linearly to 0.
    public var decayFraction: Double
    public var beta1: Double
    public var beta2: Double
    public var epsilon: Double
    public var decoderBiasInit: DecoderBiasInit
    /// batchtopk: rate of the running mean of the smallest kept activation.
    public var thresholdRate: Double
    public var seed: UInt64

    public init(
        learningRate: Double, batchTokens: Int, totalTokens: Int, auxKCoefficient: Double = 1.0 / 32, auxK: Int,
        deadTokens: Int, l1Coefficient: Double = 5, warmupSteps: Int, decayFraction: Double = 0.2, beta1: Double = 0.9,
        beta2: Double = 0.999, epsilon: Double = 6.25e-10, decoderBiasInit: DecoderBiasInit = .median,
        thresholdRate: Double = 0.01, seed: UInt64 = 0
    ) {
        self.learningRate = learningRate
        self.batchTokens = batchTokens
        self.totalTokens = totalTokens
        self.auxKCoefficient = auxKCoefficient
        self.auxK = auxK
        self.deadTokens = deadTokens
        self.l1Coefficient = l1Coefficient
        self.warmupSteps = warmupSteps
        self.decayFraction = decayFraction
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.decoderBiasInit = decoderBiasInit
        self.thresholdRate = thresholdRate
        self.seed = seed
    }

    /// sparsify's default rate for m latents.
    public static func defaultLearningRate(latents: Int) -> Double { 2e-4 / (Double(latents) / 16384).squareRoot() }

    /// 10M tokens, but at most a fifth of a small run's budget (and at least 8 batches).
    public static func defaultDeadTokens(totalTokens: Int, batchTokens: Int) -> Int {
        min(10_000_000, max(8 * batchTokens, totalTokens / 5))
    }

    /// sparsify's 1000 steps, or a twentieth of a short run.
    public static func defaultWarmupSteps(totalSteps: Int) -> Int { max(1, min(1000, totalSteps / 20)) }

    public var totalSteps: Int { max(1, (totalTokens + batchTokens - 1) / batchTokens) }

    /// The rate of step `step` (0-based): linear warm-up, flat, then linear decay to 0.
    public func learningRate(atStep step: Int) -> Double {
        let warm = min(1, Double(step + 1) / Double(max(1, warmupSteps)))
        let decaySteps = Int((Double(totalSteps) * decayFraction).rounded())
        let remaining = totalSteps - step
        let decay = decaySteps > 0 && remaining < decaySteps ? Double(max(0, remaining)) / Double(decaySteps) : 1
        return learningRate * warm * decay
    }

    enum CodingKeys: String, CodingKey {
        case learningRate = "lr"
        case batchTokens = "batch_tokens"
        case totalTokens = "tokens"
        case auxKCoefficient = "aux_k_coef"
        case auxK = "aux_k"
        case deadTokens = "dead_tokens"
        case l1Coefficient = "l1_coef"
        case warmupSteps = "warmup_steps"
        case decayFraction = "decay_fraction"
        case beta1, beta2, epsilon, seed
        case decoderBiasInit = "b_dec_init"
        case thresholdRate = "threshold_rate"
    }
}
