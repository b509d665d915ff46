import Shards
import Transformers

/// Downstream fidelity of a dictionary (`eval --model`): its reconstruction spliced into the
/// model's forward pass at the dictionary's hook, against the clean pass.
public struct FidelityReport: Sendable, Equatable {
    public var sequences = 0
    public var tokens = 0
    /// Encoders: the cosine between the mean-pooled final hidden states (sentence-transformers
    /// pooling) with and without the splice, averaged over sequences.
    public var embeddingCosine: Double?
    /// Causal LMs: mean next-token loss over every predicted token, clean, spliced and with
    /// the hook zero-ablated (SAELens's `get_recons_loss`).
    public var ceLossClean: Double?
    public var ceLossSpliced: Double?
    public var ceLossAblated: Double?

    /// (ablated − spliced) / (ablated − clean): 1 when the splice costs nothing, 0 when it
    /// is as bad as erasing the activation.
    public var ceLossRecovered: Double? {
        guard let clean = ceLossClean, let spliced = ceLossSpliced, let ablated = ceLossAblated else { return nil }
        return (ablated - spliced) / (ablated - clean)
    }
}

/// Runs batches of sequences clean and spliced (and zero-ablated for causal LMs) and
/// accumulates a ``FidelityReport``. The reconstruction goes through ``Evaluator``, so the
/// normalisation scale is applied exactly as `eval` applies it to shard rows.
public final class FidelityEvaluator {
    public let model: TransformerModel
    public let point: HookPoint
    /// The reconstruction path; its accumulator also holds EV and L0 over the spliced rows.
    public let evaluator: Evaluator
    private var cosineSum = 0.0
    private var lossSums = (clean: 0.0, spliced: 0.0, ablated: 0.0)
    private var predicted = 0
    private var counts = (sequences: 0, tokens: 0)

    /// Checks that the dictionary belongs to this model: the model's config.json has the
    /// SHA-256 the dictionary recorded (when it recorded one), and the hook exists, can be
    /// spliced and has the dictionary's width.
    public init(model: TransformerModel, dictionary: SparseAutoencoder, threads: Int) throws {
        let config = dictionary.config
        let digest = ModelIdentity(name: "", configJSON: model.configJSON).configSHA256Hex
        let unknown = String(repeating: "0", count: 64)
        if !config.modelConfigSHA256.isEmpty, config.modelConfigSHA256 != unknown, config.modelConfigSHA256 != digest {
            throw TrainerError(
                "the dictionary was trained on \(config.modelName) (config.json SHA-256 \(config.modelConfigSHA256)), "
                    + "but \(model.directory)/config.json has SHA-256 \(digest); pass the model the shards were collected with")
        }
        point = try HookPoint(config.hook, layers: model.config.layers)
        try model.checkSplice(at: point)
        guard model.width(of: point) == dictionary.width else {
            throw TrainerError("the dictionary has width \(dictionary.width), but \(config.hook) of \(model.directory) has width \(model.width(of: point))")
        }
        self.model = model
        evaluator = Evaluator(model: dictionary, threads: threads)
    }

    /// Replaces the hook's activation with the dictionary's reconstruction (raw units).
    public var splice: Splice {
        Splice(at: point) { [evaluator] activation, rows in
            let reconstruction = evaluator.add(raw: UnsafeBufferPointer(activation), rows: rows)
            _ = activation.update(fromContentsOf: reconstruction)
        }
    }

    /// Runs one batch (as many sequences as fit in memory comfortably).
    public func add(_ sequences: [[Int32]]) throws {
        let sequences = sequences.filter { !$0.isEmpty }
        counts.sequences += sequences.count
        counts.tokens += sequences.reduce(0) { $0 + $1.count }
        if model.config.isCausal {
            let clean = try model.nextTokenLosses(sequences)
            let spliced = try model.nextTokenLosses(sequences, splice: splice)
            let ablated = try model.nextTokenLosses(sequences, splice: .zeroAblation(at: point))
            lossSums.clean += clean.reduce(0) { $0 + Double($1) }
            lossSums.spliced += spliced.reduce(0) { $0 + Double($1) }
            lossSums.ablated += ablated.reduce(0) { $0 + Double($1) }
            predicted += clean.count
        } else {
            let clean = try model.finalHiddenStates(sequences)
            let spliced = try model.finalHiddenStates(sequences, splice: splice)
            let d = model.config.hidden
            var row = 0
            for sequence in sequences {
                let a = Self.meanPooled(clean, rows: row..<(row + sequence.count), width: d)
                let b = Self.meanPooled(spliced, rows: row..<(row + sequence.count), width: d)
                cosineSum += Self.cosine(a, b)
                row += sequence.count
            }
        }
    }

    public var report: FidelityReport {
        var report = FidelityReport(sequences: counts.sequences, tokens: counts.tokens)
        if model.config.isCausal {
            let n = Double(max(1, predicted))
            report.ceLossClean = lossSums.clean / n
            report.ceLossSpliced = lossSums.spliced / n
            report.ceLossAblated = lossSums.ablated / n
        } else {
            report.embeddingCosine = cosineSum / Double(max(1, counts.sequences))
        }
        return report
    }

    /// Mean of the rows of one sequence: sentence-transformers' attention-mask-weighted mean,
    /// since a ragged batch has no padding rows.
    static func meanPooled(_ hidden: [Float], rows: Range<Int>, width: Int) -> [Double] {
        var sum = [Double](repeating: 0, count: width)
        for row in rows {
            for c in 0..<width { sum[c] += Double(hidden[row * width + c]) }
        }
        return sum.map { $0 / Double(rows.count) }
    }

    static func cosine(_ a: [Double], _ b: [Double]) -> Double {
        var dot = 0.0, aa = 0.0, bb = 0.0
        for (x, y) in zip(a, b) {
            dot += x * y
            aa += x * x
            bb += y * y
        }
        return dot / max((aa * bb).squareRoot(), 1e-300)
    }
}
