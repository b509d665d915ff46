import BLAS
import CSparseKernels
import Foundation

/// Losses and counts of one optimiser step.
public struct StepResult: Sendable {
    /// Total loss minimised: reconstruction + α·AuxK (+ λ·L1 for relu).
    public var loss: Double
    /// Fraction of variance unexplained on this batch (Σ‖x − x̂‖² / Σ‖x − x̄‖²).
    public var fvu: Double
    public var auxLoss: Double
    public var l1Loss: Double
    /// Mean number of positive latents per token.
    public var l0: Double
    /// Latents that have not fired for `deadTokens` tokens, after this step.
    public var deadFraction: Double
    public var learningRate: Double
    public var rows: Int
    /// Float64 sums for explained variance over many batches.
    public var squaredError: Double
    public var squaredNorm: Double
    public var columnSums: [Double]
}

/// Fits a sparse autoencoder one batch at a time. The encoder is one dense sgemm; the decoder
/// and every backward term touch only the active latents of each token (k, plus k_aux dead
/// latents for AuxK): there is no dense m-wide decode or backward.
///
/// Losses, for a batch X of n rows in normalised units, with E = X − X̂ and
/// V = Σ‖x − x̄‖² over the batch:
/// - topk, batchtopk: `‖E‖² / V + α · s · ‖Ê − E‖² / V`, where Ê = W_decᵀ z_aux decodes the
///   top k_aux = min(d/2, dead) ReLU pre-activations among dead latents (no bias; E is a
///   constant), and s = min(dead / (d/2), 1) (sparsify's form of the AuxK loss).
/// - relu: `‖E‖² / n + λ · Σ zᵢ‖W_dec,i‖ / n`.
public final class SAETrainer {
    public let model: SparseAutoencoder
    public let training: TrainingConfig
    /// Workers for the encoder GEMM (split by rows) and the sparse kernels.
    public var threads: Int
    public internal(set) var step = 0
    public internal(set) var tokens = 0
    /// Tokens since each latent last had a positive activation.
    public let tokensSinceFired: Storage<Int64>

    /// Adam moments, in the order of ``parameters``: first then second moment of each.
    public let moments: [Storage<Float>]
    public let gradEncoderWeight: Storage<Float>
    public let gradEncoderBias: Storage<Float>
    public let gradDecoderWeight: Storage<Float>
    public let gradDecoderBias: Storage<Float>

    /// batchtopk: whether the inference threshold has had its first value.
    public internal(set) var thresholdStarted = false
    private var batchThreshold: Float = 0

    // Workspaces, grown to the largest batch seen.
    let input = Storage<Float>(count: 0, repeating: 0)  // [n, d] normalised rows
    let centered = Storage<Float>(count: 0, repeating: 0)  // [n, d] x − b_dec (batchtopk, relu)
    let pre = Storage<Float>(count: 0, repeating: 0)  // [n, m] (batchtopk, relu)
    let encoderWorkspace = EncoderWorkspace()  // topk
    /// Which TopK encoder runs, and (int8 prescreen) the values it recomputed in fp32 and the
    /// rows it did over every latent so far.
    public var encoderPath: EncoderPath { encoderWorkspace.path }
    public var prescreenStats: (recomputed: UInt64, fullRows: UInt64) { encoderWorkspace.prescreenStats }
    /// Sources of the latent gradients, in column slices (sk_pack_slices): [2n, d] with
    /// ∂L/∂x̂ in the first n rows and ∂L/∂ê (AuxK) in the next n, and x − b_dec [n, d].
    let outputGradientSlices = Storage<Float>(count: 0, repeating: 0)
    let centeredSlices = Storage<Float>(count: 0, repeating: 0)
    public let codes = SparseCodes()
    public let auxCodes = SparseCodes()
    /// ∂L/∂pre of each entry of `codes` and `auxCodes`.
    let dots = Storage<Float>(count: 0, repeating: 0)
    let auxDots = Storage<Float>(count: 0, repeating: 0)
    /// Per row: ‖x − x̂‖², and ‖ê − e‖² (AuxK).
    let squaredErrors = Storage<Double>(count: 0, repeating: 0)
    let auxSquaredErrors = Storage<Double>(count: 0, repeating: 0)
    // By-latent index of the main and AuxK entries: row of ∂L/∂x̂, activation, ∂L/∂pre.
    let latentStart = Storage<Int64>(count: 0, repeating: 0)
    let latentRow = Storage<Int32>(count: 0, repeating: 0)
    let latentValue = Storage<Float>(count: 0, repeating: 0)
    let latentCoefficient = Storage<Float>(count: 0, repeating: 0)

    public init(model: SparseAutoencoder, training: TrainingConfig, threads: Int) {
        self.model = model
        self.training = training
        self.threads = threads
        let m = model.latents, d = model.width
        tokensSinceFired = Storage(count: m, repeating: 0)
        let sizes = [m * d, m * d, m, m, m * d, m * d, d, d]
        moments = sizes.map { Storage(count: $0, repeating: 0) }
        gradEncoderWeight = Storage(count: m * d, repeating: 0)
        gradEncoderBias = Storage(count: m, repeating: 0)
        gradDecoderWeight = Storage(count: m * d, repeating: 0)
        gradDecoderBias = Storage(count: d, repeating: 0)
        latentStart.resize(m + 1, fill: 0)
    }

    /// Parameters and their gradients, in the order of ``moments``.
    var parameters: [(Storage<Float>, Storage<Float>)] {
        [
            (model.encoderWeight, gradEncoderWeight), (model.encoderBias, gradEncoderBias),
            (model.decoderWeight, gradDecoderWeight), (model.decoderBias, gradDecoderBias),
        ]
    }

    /// Latents that have not fired for more than `deadTokens` tokens.
    public var deadLatents: [Int32] {
        let limit = Int64(training.deadTokens)
        return (0..<model.latents).compactMap { tokensSinceFired[$0] > limit ? Int32($0) : nil }
    }

    /// Sets b_dec to the geometric median (or mean) of rows of normalised activations.
    public func initializeDecoderBias(sample: [Float], rows: Int) {
        let d = model.width
        let center: [Double]
        switch training.decoderBiasInit {
        case .zero: center = [Double](repeating: 0, count: d)
        case .mean: center = GeometricMedian.mean(sample, rows: rows, width: d)
        case .median: center = GeometricMedian.compute(sample, rows: rows, width: d)
        }
        for c in 0..<d { model.decoderBias[c] = Float(center[c]) }
    }

    /// One optimiser step on raw rows `[rows, d]` (scaled by the normalisation here).
    @discardableResult
    public func train(raw: UnsafeBufferPointer<Float>, rows: Int) -> StepResult {
        let d = model.width
        input.resize(rows * d, fill: 0)
        let scale = model.config.normalizationScale
        let source = raw.baseAddress!, destination = input.pointer
        parallelFor(rows, threads: threads) { range, _ in
            for i in (range.lowerBound * d)..<(range.upperBound * d) { destination[i] = source[i] * scale }
        }
        var result = computeGradients(rows: rows)
        result.learningRate = applyGradients(rows: rows)
        return result
    }

    /// Loads normalised rows into the input workspace (for tests and callers that scale).
    public func load(normalized: [Float], rows: Int) {
        input.resize(rows * model.width, fill: 0)
        input.copy(from: normalized)
    }

    /// Forward and backward on the rows in the input workspace; fills the gradients and
    /// updates tokens-since-fired. Does not change the weights.
    public func computeGradients(rows n: Int) -> StepResult {
        let d = model.width, m = model.latents, arch = model.config.architecture
        let x = input.pointer

        Profile.mark("start-compute")
        let bDec = model.decoderBias.pointer, bEnc = model.encoderBias.pointer
        // AuxK's dead latents are fixed before the step, so TopK selects them in the same pass.
        let dead = arch == .relu ? [] : deadLatents
        let auxUsed = !dead.isEmpty && training.auxKCoefficient > 0
        let kAux = min(training.auxK, dead.count)

        // Encoder, pre = (x − b_dec) · W_encᵀ + b_enc, and the activation function: the active
        // latents of each token, as sparse rows.
        switch arch {
        case .topk:
            // GEMM and selection fused in row blocks that stay in cache; no [n, m] matrix.
            model.encodeTopK(
                normalized: x, rows: n, k: model.config.k, threads: threads, workspace: encoderWorkspace, into: codes,
                auxSubset: auxUsed ? dead : nil, auxK: kAux, auxInto: auxCodes)
        case .batchtopk:
            pre.resize(n * m, fill: 0)
            model.encoderProducts(model.center(x, rows: n, threads: threads, into: centered), rows: n, threads: threads, into: pre.pointer)
            batchThreshold = Selection.batchTopK(
                pre: pre.pointer, bias: bEnc, rows: n, latents: m, total: n * model.config.k, threads: threads, into: codes)
            if auxUsed {
                Selection.topK(pre: pre.pointer, bias: bEnc, rows: n, latents: m, subset: dead, k: kAux, threads: threads, into: auxCodes)
            }
        case .relu:
            pre.resize(n * m, fill: 0)
            model.encoderProducts(model.center(x, rows: n, threads: threads, into: centered), rows: n, threads: threads, into: pre.pointer)
            Selection.atLeast(pre: pre.pointer, bias: bEnc, rows: n, latents: m, threshold: .leastNonzeroMagnitude, threads: threads, into: codes)
        }

        Profile.mark("select")
        // Statistics of x, for the loss scale.
        var columnSums = [Double](repeating: 0, count: d)
        sk_column_sums(x, n, d, &columnSums)
        let squaredNorm = sk_sum_squares(x, n * d)
        let totalVariance = max(squaredNorm - columnSums.reduce(0) { $0 + $1 * $1 } / Double(n), .leastNormalMagnitude)
        let reconstructionScale = arch == .relu ? 1 / Double(n) : 1 / totalVariance
        let auxScale = auxUsed ? min(Double(dead.count) / Double(training.auxK), 1) : 0
        if !auxUsed { auxCodes.setUniform(rows: n, perRow: 0) }

        var l1Loss = 0.0
        var decoderNorms: [Float] = []
        var encoderExtra: [Float] = []
        if arch == .relu {
            // λ‖W_dec,i‖ / n joins ∂L/∂z of every active entry of latent i.
            decoderNorms = [Float](repeating: 0, count: m)
            sk_row_norms(model.decoderWeight.pointer, m, d, &decoderNorms)
            let lambda = Float(training.l1Coefficient / Double(n))
            encoderExtra = decoderNorms.map { lambda * $0 }
            for j in 0..<codes.entries {
                l1Loss += Double(codes.values[j] * decoderNorms[Int(codes.indices[j])])
            }
            l1Loss *= training.l1Coefficient / Double(n)
        }

        // Decode, residual E = x − x̂, AuxK's Ê − E, ∂L/∂x̂ and ∂L/∂pre of every entry, row by
        // row; ∂L/∂x̂ (rows t) and ∂L/∂ê (rows n + t) go straight to column slices for the
        // latent gradients.
        let sourceRows = auxUsed ? 2 * n : n
        outputGradientSlices.resize(sourceRows * d, fill: 0)
        dots.resize(codes.entries, fill: 0)
        auxDots.resize(auxCodes.entries, fill: 0)
        squaredErrors.resize(n, fill: 0)
        auxSquaredErrors.resize(n, fill: 0)
        let gradientSlices = outputGradientSlices.pointer
        let decoderWeight = model.decoderWeight.pointer
        let start = codes.start.pointer, indices = codes.indices.pointer, values = codes.values.pointer
        let auxStart = auxCodes.start.pointer, auxIndices = auxCodes.indices.pointer, auxValues = auxCodes.values.pointer
        let dotsPointer = dots.pointer, auxDotsPointer = auxDots.pointer
        let errors = squaredErrors.pointer, auxErrors = auxSquaredErrors.pointer
        let gradientScale = Float(-2 * reconstructionScale), auxGradientScale = Float(2 * training.auxKCoefficient * auxScale / totalVariance)
        encoderExtra.withUnsafeBufferPointer { extra in
            let extra = extra.isEmpty ? nil : extra.baseAddress  // an empty array's base address is not nil
            parallelFor(n, threads: threads) { range, _ in
                sk_decode_backward(
                    x, n, range.lowerBound, range.upperBound, d, decoderWeight, bDec, start, indices, values, gradientScale, extra, dotsPointer,
                    errors, auxUsed ? auxStart : nil, auxIndices, auxValues, auxGradientScale, auxDotsPointer, auxErrors, gradientSlices, sourceRows)
            }
        }
        let squaredError = squaredErrors.readOnly.reduce(0, +)
        let auxLoss = auxUsed ? auxScale * auxSquaredErrors.readOnly.reduce(0, +) / totalVariance : 0

        Profile.mark("decode")
        // Gradients of W_dec, W_enc and b_enc, latent by latent (no write conflicts), from
        // column slices of ∂L/∂x̂ (and ∂L/∂ê) and of the centred inputs.
        centeredSlices.resize(n * d, fill: 0)
        let inputSlices = centeredSlices.pointer
        parallelFor(n, threads: threads) { range, _ in
            sk_pack_slices(x, bDec, n, d, range.lowerBound, range.upperBound, inputSlices)
        }
        Profile.mark("slices")
        buildLatentIndex(rows: n)
        Profile.mark("index")
        let lStart = latentStart.pointer, lRow = latentRow.pointer, lValue = latentValue.pointer, lCoefficient = latentCoefficient.pointer
        let gDec = gradDecoderWeight.pointer, gEnc = gradEncoderWeight.pointer, gBEnc = gradEncoderBias.pointer
        // One piece per worker: each piece runs every column slice through L2 once, so smaller
        // pieces would load the slices more often than they use them.
        parallelFor(m, threads: threads, pieces: threads) { range, _ in
            sk_latent_gradients(
                lStart, lRow, lValue, lCoefficient, range.lowerBound, range.upperBound, gradientSlices, sourceRows, inputSlices, n, d, gDec, gEnc,
                gBEnc)
        }
        Profile.mark("latentgrad")
        if arch == .relu {
            // ∂(λ Σ z‖W_i‖)/∂W_i = λ (Σ_t z_ti) W_i / ‖W_i‖
            let lambda = training.l1Coefficient / Double(n)
            for i in 0..<m where decoderNorms[i] > 0 {
                var total = 0.0
                for j in Int(lStart[i])..<Int(lStart[i + 1]) where Int(lRow[j]) < n { total += Double(lValue[j]) }
                let factor = Float(lambda * total) / decoderNorms[i]
                if factor != 0 { for c in 0..<d { gDec[i * d + c] += factor * decoderWeight[i * d + c] } }
            }
        }
        Profile.mark("relu")
        // b_dec: Σ_t ∂L/∂x̂_t through the decoder, −W_encᵀ ∂L/∂b_enc through the encoder.
        var decoderSums = [Double](repeating: 0, count: d)
        sk_slice_column_sums(gradientSlices, sourceRows, d, 0, n, &decoderSums)
        for c in 0..<d { gradDecoderBias[c] = Float(decoderSums[c]) }
        // One OpenBLAS thread: its pool spins after each call and would take the cores from our workers.
        if BLAS.threadCount != 1 { BLAS.threadCount = 1 }
        BLAS.sgemv(
            .transpose, rows: m, columns: d, alpha: -1, a: model.encoderWeight.readOnly, lda: d, x: gradEncoderBias.readOnly, beta: 1,
            y: gradDecoderBias.buffer)

        Profile.mark("bdec")
        // Tokens since fired.
        var active = 0
        let since = tokensSinceFired.pointer
        for i in 0..<m { since[i] += Int64(n) }
        for j in 0..<codes.entries where values[j] > 0 {
            since[Int(indices[j])] = 0
            active += 1
        }
        let limit = Int64(training.deadTokens)
        var deadCount = 0
        for i in 0..<m where since[i] > limit { deadCount += 1 }

        Profile.mark("fired")
        let fvu = squaredError / totalVariance
        let reconstructionLoss = squaredError * reconstructionScale
        return StepResult(
            loss: reconstructionLoss + training.auxKCoefficient * auxLoss + l1Loss, fvu: fvu, auxLoss: auxLoss, l1Loss: l1Loss,
            l0: Double(active) / Double(n), deadFraction: Double(deadCount) / Double(m), learningRate: 0, rows: n,
            squaredError: squaredError, squaredNorm: squaredNorm, columnSums: columnSums)
    }

    /// Counting sort of the main and AuxK entries by latent. Main entries read row t of
    /// the output gradients, AuxK entries row n + t.
    private func buildLatentIndex(rows n: Int) {
        let m = model.latents
        let total = codes.entries + auxCodes.entries
        latentStart.resize(m + 1, fill: 0)
        latentRow.resize(total, fill: 0)
        latentValue.resize(total, fill: 0)
        latentCoefficient.resize(total, fill: 0)
        let start = codes.start.pointer, indices = codes.indices.pointer, values = codes.values.pointer, dots = dots.pointer
        let auxStart = auxCodes.start.pointer, auxIndices = auxCodes.indices.pointer, auxValues = auxCodes.values.pointer
        let auxDots = auxDots.pointer
        let lStart = latentStart.pointer, lRow = latentRow.pointer, lValue = latentValue.pointer, lCoefficient = latentCoefficient.pointer
        // Each worker scans every entry and keeps its own latents: two passes, no merging.
        lStart[0] = 0
        parallelFor(m, threads: threads, pieces: threads) { range, _ in
            sk_count_by_latent(range.lowerBound, range.upperBound, n, start, indices, auxStart, auxIndices, lStart)
        }
        for i in 0..<m { lStart[i + 1] += lStart[i] }
        parallelFor(m, threads: threads, pieces: threads) { range, _ in
            sk_place_by_latent(
                range.lowerBound, range.upperBound, n, start, indices, values, dots, auxStart, auxIndices, auxValues, auxDots, lStart, lRow,
                lValue, lCoefficient)
        }
    }

    /// Adam step with the scheduled rate; decoder rows stay unit-norm (the gradient's
    /// component along each row is removed first). Returns the rate used.
    @discardableResult
    public func applyGradients(rows: Int) -> Double {
        let m = model.latents, d = model.width
        Profile.mark("start-apply")
        let rate = training.learningRate(atStep: step)
        let t = Double(step + 1)
        let correction1 = 1 - pow(training.beta1, t), correction2 = 1 - pow(training.beta2, t)
        let stepSize = Float(rate * correction2.squareRoot() / correction1)
        let epsilonHat = Float(training.epsilon * correction2.squareRoot())
        let beta1 = Float(training.beta1), beta2 = Float(training.beta2)
        for (index, (parameter, gradient)) in parameters.enumerated() {
            let p = parameter.pointer, g = gradient.pointer
            let first = moments[2 * index].pointer, second = moments[2 * index + 1].pointer
            if parameter === model.decoderWeight && model.unitNormDecoder {
                // Decoder rows: drop the gradient along each row, step, renormalise, in one pass.
                parallelFor(m, threads: threads) { range, _ in
                    let o = range.lowerBound * d
                    sk_adam_unit_rows(p + o, g + o, first + o, second + o, range.count, d, beta1, beta2, stepSize, epsilonHat, Float.ulpOfOne)
                }
                continue
            }
            let count = parameter.count
            parallelFor(count, threads: count >= 1 << 16 ? threads : 1) { range, _ in
                let o = range.lowerBound
                sk_adam(p + o, g + o, first + o, second + o, range.count, beta1, beta2, stepSize, epsilonHat)
            }
        }
        if model.config.architecture == .batchtopk {
            if thresholdStarted {
                let r = Float(training.thresholdRate)
                model.config.threshold = (1 - r) * model.config.threshold + r * batchThreshold
            } else {
                model.config.threshold = batchThreshold
                thresholdStarted = true
            }
        }
        Profile.mark("adam")
        step += 1
        tokens += rows
        return rate
    }
}


/// Wall time between marks, summed per phase, printed at exit when
/// ACTCLUSTER_TRAINER_PROFILE is set (development aid).
enum Profile {
    nonisolated(unsafe) static var enabled = ProcessInfo.processInfo.environment["ACTCLUSTER_TRAINER_PROFILE"] != nil
    nonisolated(unsafe) static var last = ContinuousClock.now
    nonisolated(unsafe) static var totals: [String: Double] = [:]

    static func mark(_ phase: String) {
        guard enabled else { return }
        let now = ContinuousClock.now
        if !phase.hasPrefix("start") { totals[phase, default: 0] += (now - last) / .seconds(1) }
        last = now
    }

    public static func report() -> String {
        totals.sorted { $0.value > $1.value }.map { "\($0.key)=\(String(format: "%.3f", $0.value))" }.joined(separator: " ")
    }
}

extension SAETrainer {
    /// Seconds per phase when ACTCLUSTER_TRAINER_PROFILE is set, else nil.
    public static var profileReport: String? { Profile.enabled ? Profile.report() : nil }
}
