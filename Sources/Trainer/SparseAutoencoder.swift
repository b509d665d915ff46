import BLAS
import CSparseKernels
import Foundation

/// A sparse dictionary's weights, in normalised units (inputs multiplied by
/// `config.normalizationScale`):
///
///     z = σ(W_enc (x − b_dec) + b_enc)      W_enc [m, d], b_enc [m]
///     x̂ = W_dec z + b_dec                   W_dec [m, d], b_dec [d]
///
/// with σ = TopK∘ReLU (topk), a threshold (batchtopk at inference) or ReLU (relu).
/// W_enc is stored like PyTorch's `nn.Linear` weight (row i reads latent i); SAELens's
/// `W_enc [d, m]` is its transpose.
public final class SparseAutoencoder {
    public var config: DictionaryConfig
    public let encoderWeight: Storage<Float>  // [m, d]
    public let encoderBias: Storage<Float>  // [m]
    public let decoderWeight: Storage<Float>  // [m, d]
    public let decoderBias: Storage<Float>  // [d]

    public var width: Int { config.width }
    public var latents: Int { config.latents }

    /// Zero weights of the configured shape.
    public init(config: DictionaryConfig) {
        self.config = config
        encoderWeight = Storage(count: config.latents * config.width, repeating: 0)
        encoderBias = Storage(count: config.latents, repeating: 0)
        decoderWeight = Storage(count: config.latents * config.width, repeating: 0)
        decoderBias = Storage(count: config.width, repeating: 0)
    }

    /// sparsify's initialisation: W_enc uniform in ±1/√d (PyTorch's `nn.Linear` default),
    /// b_enc = 0, W_dec = W_enc with unit rows, b_dec = 0.
    public convenience init(config: DictionaryConfig, random: inout SplitMix64) {
        self.init(config: config)
        let bound = 1 / Double(config.width).squareRoot()
        for i in 0..<encoderWeight.count { encoderWeight[i] = Float((random.nextUnit() * 2 - 1) * bound) }
        decoderWeight.pointer.update(from: encoderWeight.pointer, count: encoderWeight.count)
        sk_normalize_rows(decoderWeight.pointer, config.latents, config.width, Float.ulpOfOne)
    }

    /// Whether the decoder rows are kept at unit norm during training.
    public var unitNormDecoder: Bool { config.architecture != .relu }

    /// Encodes rows of normalised activations `x [rows, d]`: inference semantics (batchtopk
    /// uses its threshold). `pre` is a workspace of `rows × m` floats.
    public func encode(
        normalized x: UnsafePointer<Float>, rows: Int, threads: Int, centered: Storage<Float>, pre: Storage<Float>, workspace: EncoderWorkspace,
        into codes: SparseCodes
    ) {
        let m = latents
        if config.architecture == .topk {
            encodeTopK(normalized: x, rows: rows, k: config.k, threads: threads, workspace: workspace, into: codes)
            return
        }
        pre.resize(rows * m, fill: 0)
        encoderProducts(center(x, rows: rows, threads: threads, into: centered), rows: rows, threads: threads, into: pre.pointer)
        switch config.architecture {
        case .topk:
            break
        case .batchtopk:
            Selection.atLeast(
                pre: pre.pointer, bias: encoderBias.pointer, rows: rows, latents: m, threshold: max(config.threshold, .leastNonzeroMagnitude),
                threads: threads, into: codes)
        case .relu:
            Selection.atLeast(
                pre: pre.pointer, bias: encoderBias.pointer, rows: rows, latents: m, threshold: .leastNonzeroMagnitude, threads: threads,
                into: codes)
        }
    }

    /// `x − b_dec` for rows of `x [rows, d]`, into `centered`; returns its pointer.
    func center(_ x: UnsafePointer<Float>, rows: Int, threads: Int, into centered: Storage<Float>) -> UnsafePointer<Float> {
        let d = width
        centered.resize(rows * d, fill: 0)
        let bias = decoderBias.pointer, out = centered.pointer
        parallelFor(rows, threads: threads) { range, _ in
            for r in range { for c in 0..<d { out[r * d + c] = x[r * d + c] - bias[c] } }
        }
        return UnsafePointer(out)
    }

    /// `pre = centered · W_encᵀ` `[rows, m]`: the rows split across `threads` workers, each
    /// running a single-threaded sgemm. OpenBLAS's own pool is left at one thread, because its
    /// threads spin after each call and would steal the cores from the sparse kernels that
    /// follow.
    public func encoderProducts(_ centered: UnsafePointer<Float>, rows: Int, threads: Int, into pre: UnsafeMutablePointer<Float>) {
        let d = width, m = latents
        if BLAS.threadCount != 1 { BLAS.threadCount = 1 }
        let weight = UnsafeBufferPointer(start: encoderWeight.pointer, count: m * d)
        let pieces = max(1, min(threads, rows / 64))
        parallelFor(rows, threads: pieces) { range, _ in
            BLAS.sgemm(
                .none, .transpose, m: range.count, n: m, k: d, a: UnsafeBufferPointer(start: centered + range.lowerBound * d, count: range.count * d),
                lda: d, b: weight, ldb: d, c: UnsafeMutableBufferPointer(start: pre + range.lowerBound * m, count: range.count * m), ldc: m)
        }
    }

    /// TopK codes of normalised rows `x [rows, d]` (and, with `auxSubset`, the top `auxK` among
    /// those latents too), with the encoder GEMM and the selection fused so that the `[rows, m]`
    /// pre-activations never go to memory. With AVX-512, W_enc is packed once and each worker
    /// runs sk_encode_topk, which selects from register tiles as they are computed; otherwise
    /// each worker runs a single-threaded sgemm on row blocks into a cache-sized scratch and
    /// selects from that.
    public func encodeTopK(
        normalized x: UnsafePointer<Float>, rows: Int, k: Int, threads: Int, workspace: EncoderWorkspace, into codes: SparseCodes,
        auxSubset: [Int32]? = nil, auxK: Int = 0, auxInto auxCodes: SparseCodes? = nil
    ) {
        codes.setUniform(rows: rows, perRow: k)
        let subset = auxSubset ?? []
        let auxUsed = auxSubset != nil && auxK > 0
        if let auxCodes { auxCodes.setUniform(rows: rows, perRow: auxUsed ? auxK : 0) }
        switch workspace.path {
        case .int8Prescreen:
            encodeTopKInt8(normalized: x, rows: rows, k: k, threads: threads, workspace: workspace, into: codes,
                auxSubset: auxUsed ? subset : [], auxK: auxUsed ? auxK : 0, auxInto: auxCodes)
        case .fused:
            encodeTopKFused(normalized: x, rows: rows, k: k, threads: threads, workspace: workspace, into: codes,
                auxSubset: auxUsed ? subset : [], auxK: auxUsed ? auxK : 0, auxInto: auxCodes)
        case .portable:
            encodeTopKBlocked(centered: center(x, rows: rows, threads: threads, into: workspace.centered), rows: rows, k: k, threads: threads, workspace: workspace, into: codes,
                auxSubset: auxUsed ? subset : [], auxK: auxUsed ? auxK : 0, auxInto: auxCodes)
        }
    }

    /// Slot order of the packed encoders: the AuxK latents first, then the rest.
    private func fillOrder(_ workspace: EncoderWorkspace, auxSubset: [Int32]) -> UnsafeMutablePointer<Int32> {
        let m = latents
        workspace.order.resize(m, fill: 0)
        let order = workspace.order.pointer
        if auxSubset.isEmpty {
            for i in 0..<m { order[i] = Int32(i) }
        } else {
            var inSubset = [Bool](repeating: false, count: m)
            for (slot, latent) in auxSubset.enumerated() {
                order[slot] = latent
                inSubset[Int(latent)] = true
            }
            var slot = auxSubset.count
            for i in 0..<m where !inSubset[i] {
                order[slot] = Int32(i)
                slot += 1
            }
        }
        return order
    }

    /// Quantises W_enc to int8 (AuxK latents in the first slots), then runs sk_encode_topk_int8
    /// on each worker's rows: an int8 GEMM picks candidates by error bounds, and only those are
    /// recomputed in fp32, so the codes are the fp32 encoder's.
    private func encodeTopKInt8(
        normalized x: UnsafePointer<Float>, rows: Int, k: Int, threads: Int, workspace: EncoderWorkspace, into codes: SparseCodes,
        auxSubset: [Int32], auxK: Int, auxInto auxCodes: SparseCodes?
    ) {
        let d = width, m = latents
        let panels = sk_encoder_panels(m)
        let order = fillOrder(workspace, auxSubset: auxSubset)
        workspace.packedInt8.resize(panels * sk_int8_panel_bytes(d), fill: 0)
        workspace.meta.resize(panels * 6 * Int(SK_PANEL), fill: 0)
        let packed = workspace.packedInt8.pointer, meta = workspace.meta.pointer
        let weight = encoderWeight.pointer, bias = encoderBias.pointer, decoderBias = self.decoderBias.pointer
        parallelFor(panels, threads: threads) { range, _ in
            sk_quantize_encoder(weight, bias, order, m, d, range.lowerBound, range.upperBound, packed, meta)
        }
        Profile.mark("pack")
        workspace.stats.resize(2 * max(1, threads), fill: 0)
        let stats = workspace.stats.pointer
        let indices = codes.indices.pointer, values = codes.values.pointer
        let auxIndices = auxCodes?.indices.pointer, auxValues = auxCodes?.values.pointer
        parallelFor(rows, threads: threads, granule: Int(SK_TILE_ROWS)) { range, worker in
            let first = range.lowerBound, count = range.count
            sk_encode_topk_int8(
                x + first * d, decoderBias, count, d, packed, meta, weight, order, m, k, indices + first * k, values + first * k,
                auxSubset.count, auxK, auxIndices.map { $0 + first * auxK }, auxValues.map { $0 + first * auxK }, stats + 2 * worker)
        }
    }

    /// Packs W_enc and b_enc with the AuxK latents in the first slots, then runs
    /// sk_encode_topk on each worker's rows (which subtracts b_dec as it packs them).
    private func encodeTopKFused(
        normalized x: UnsafePointer<Float>, rows: Int, k: Int, threads: Int, workspace: EncoderWorkspace, into codes: SparseCodes,
        auxSubset: [Int32], auxK: Int, auxInto auxCodes: SparseCodes?
    ) {
        let d = width, m = latents
        let panels = sk_encoder_panels(m)
        let order = fillOrder(workspace, auxSubset: auxSubset)
        workspace.packed.resize(panels * (d + 1) * Int(SK_PANEL), fill: 0)
        let packed = workspace.packed.pointer, weight = encoderWeight.pointer, bias = encoderBias.pointer
        let decoderBias = self.decoderBias.pointer
        parallelFor(panels, threads: threads) { range, _ in
            sk_pack_encoder(weight, bias, order, m, d, range.lowerBound, range.upperBound, packed)
        }
        Profile.mark("pack")
        let indices = codes.indices.pointer, values = codes.values.pointer
        let auxIndices = auxCodes?.indices.pointer, auxValues = auxCodes?.values.pointer
        // Whole tiles per piece, so that no tile is split.
        parallelFor(rows, threads: threads, granule: Int(SK_TILE_ROWS)) { range, _ in
            let first = range.lowerBound, count = range.count
            sk_encode_topk(
                x + first * d, decoderBias, count, d, packed, order, m, k, indices + first * k, values + first * k, auxSubset.count, auxK,
                auxIndices.map { $0 + first * auxK }, auxValues.map { $0 + first * auxK })
        }
    }

    /// The portable path: per worker, sgemm on row blocks into a scratch, then selection.
    private func encodeTopKBlocked(
        centered: UnsafePointer<Float>, rows: Int, k: Int, threads: Int, workspace: EncoderWorkspace, into codes: SparseCodes,
        auxSubset: [Int32], auxK: Int, auxInto auxCodes: SparseCodes?
    ) {
        let d = width, m = latents
        if BLAS.threadCount != 1 { BLAS.threadCount = 1 }
        let workers = max(1, min(threads, rows))
        let blockRows = EncoderWorkspace.rows
        workspace.prepare(workers: workers, count: blockRows * m)
        let weight = UnsafeBufferPointer(start: encoderWeight.pointer, count: m * d)
        let bias = encoderBias.pointer
        let indices = codes.indices.pointer, values = codes.values.pointer
        let auxIndices = auxCodes?.indices.pointer, auxValues = auxCodes?.values.pointer
        auxSubset.withUnsafeBufferPointer { subset in
            parallelFor(rows, threads: workers) { range, worker in
                let scratch = workspace.blocks[worker].pointer
                var first = range.lowerBound
                while first < range.upperBound {
                    let count = min(blockRows, range.upperBound - first)
                    BLAS.sgemm(
                        .none, .transpose, m: count, n: m, k: d, a: UnsafeBufferPointer(start: centered + first * d, count: count * d), lda: d,
                        b: weight, ldb: d, c: UnsafeMutableBufferPointer(start: scratch, count: count * m), ldc: m)
                    sk_topk_rows(scratch, m, bias, count, m, k, indices + first * k, values + first * k)
                    if auxK > 0, let auxIndices, let auxValues {
                        sk_topk_rows_subset(
                            scratch, m, bias, count, subset.baseAddress, subset.count, auxK, auxIndices + first * auxK, auxValues + first * auxK)
                    }
                    first += count
                }
            }
        }
    }

    /// x̂ = W_dec z + b_dec for every row of `codes`, into `out [rows, d]`.
    public func decode(_ codes: SparseCodes, threads: Int, into out: UnsafeMutablePointer<Float>) {
        let d = width
        let start = codes.start.pointer, indices = codes.indices.pointer, values = codes.values.pointer
        let weight = decoderWeight.pointer, bias = decoderBias.pointer
        parallelFor(codes.rows, threads: threads) { range, _ in
            sk_decode(start + range.lowerBound, indices, values, range.count, weight, d, bias, out + range.lowerBound * d)
        }
    }
}

/// Explained variance accumulated in Float64 over any number of batches:
/// `EV = 1 − E‖x − x̂‖² / (E‖x‖² − ‖E x‖²)`.
public struct VarianceAccumulator: Sendable {
    public private(set) var count = 0
    public private(set) var squaredError = 0.0
    public private(set) var squaredNorm = 0.0
    public private(set) var sum: [Double]
    /// Σ over tokens of the number of positive latents.
    public private(set) var active = 0.0

    public init(width: Int) { sum = [Double](repeating: 0, count: width) }

    public mutating func add(rows: Int, squaredError: Double, squaredNorm: Double, columnSums: [Double], active: Double) {
        count += rows
        self.squaredError += squaredError
        self.squaredNorm += squaredNorm
        for c in 0..<sum.count { sum[c] += columnSums[c] }
        self.active += active
    }

    public var totalVariance: Double {
        guard count > 0 else { return 0 }
        let n = Double(count)
        return squaredNorm / n - sum.reduce(0) { $0 + ($1 / n) * ($1 / n) }
    }

    public var explainedVariance: Double {
        guard count > 0, totalVariance > 0 else { return 0 }
        return 1 - (squaredError / Double(count)) / totalVariance
    }

    public var fractionUnexplained: Double { 1 - explainedVariance }
    public var l0: Double { count > 0 ? active / Double(count) : 0 }
}

/// The ways the TopK encoder can run; all give the same codes (up to ties within float
/// rounding).
public enum EncoderPath: String, Sendable, CaseIterable {
    /// An int8 GEMM (AVX-512 VNNI) picks candidates by rigorous error bounds; only those are
    /// recomputed in fp32 and the top k is chosen from the exact values.
    case int8Prescreen = "int8"
    /// The fp32 GEMM fused with the selection (AVX-512).
    case fused = "fp32"
    /// sgemm into row blocks, then a selection (any CPU).
    case portable

    /// The fastest path this CPU has; without the int8 prescreen when `exactOnly`.
    public static func best(exactOnly: Bool) -> EncoderPath {
        if !exactOnly, sk_int8_encoder_available() != 0 { return .int8Prescreen }
        return sk_fused_encoder_available() != 0 ? .fused : .portable
    }

    /// Set ACTCLUSTER_EXACT_ENCODER=1 (or `bench train --exact-encoder`) to compute every
    /// pre-activation in fp32 instead of prescreening in int8.
    public nonisolated(unsafe) static var exactOnly = ProcessInfo.processInfo.environment["ACTCLUSTER_EXACT_ENCODER"].map { $0 != "" && $0 != "0" } ?? false
}

/// Scratch of the TopK encoder: the packed W_enc (fp32 or int8) and its latent order, or
/// per-worker `rows × m` pre-activation blocks (portable path).
public final class EncoderWorkspace {
    /// Which encoder runs (tests pick each one to check it against a plain reference).
    public var path = EncoderPath.best(exactOnly: EncoderPath.exactOnly)
    /// Rows per block: enough that packing W_enc once per block is amortised (measured best of 128, 512, 1024).
    public static let rows = 512
    public private(set) var blocks: [Storage<Float>] = []
    let packed = Storage<Float>(count: 0, repeating: 0)
    let order = Storage<Int32>(count: 0, repeating: 0)
    let centered = Storage<Float>(count: 0, repeating: 0)
    let packedInt8 = Storage<Int8>(count: 0, repeating: 0)
    let meta = Storage<Float>(count: 0, repeating: 0)
    /// Per worker: values recomputed in fp32 and rows computed over every latent (int8 path).
    let stats = Storage<UInt64>(count: 0, repeating: 0)

    public init() {}

    /// Values recomputed in fp32, and rows done over every latent, by the int8 path so far.
    public var prescreenStats: (recomputed: UInt64, fullRows: UInt64) {
        var recomputed: UInt64 = 0, full: UInt64 = 0
        for w in stride(from: 0, to: stats.count, by: 2) {
            recomputed += stats[w]
            full += stats[w + 1]
        }
        return (recomputed, full)
    }

    func prepare(workers: Int, count: Int) {
        while blocks.count < workers { blocks.append(Storage(count: count, repeating: 0)) }
        for block in blocks where block.count < count { block.resize(count, fill: 0) }
    }
}
