import CSparseKernels

/// Explained variance, L0 and dead fraction of a dictionary over any number of batches of raw
/// rows (inference semantics; Float64 sums).
public final class Evaluator {
    public let model: SparseAutoencoder
    public let threads: Int
    public private(set) var accumulator: VarianceAccumulator
    /// Whether each latent fired at least once.
    public private(set) var fired: [Bool]
    let input = Storage<Float>(count: 0, repeating: 0)
    let centered = Storage<Float>(count: 0, repeating: 0)
    let pre = Storage<Float>(count: 0, repeating: 0)
    let output = Storage<Float>(count: 0, repeating: 0)
    public let codes = SparseCodes()
    let workspace = EncoderWorkspace()

    public init(model: SparseAutoencoder, threads: Int) {
        self.model = model
        self.threads = threads
        accumulator = VarianceAccumulator(width: model.width)
        fired = [Bool](repeating: false, count: model.latents)
    }

    /// Encodes and decodes raw rows `[rows, d]`; returns the reconstruction in raw units.
    @discardableResult
    public func add(raw: UnsafeBufferPointer<Float>, rows: Int) -> UnsafeBufferPointer<Float> {
        let d = model.width
        let scale = model.config.normalizationScale
        input.resize(rows * d, fill: 0)
        for i in 0..<(rows * d) { input[i] = raw[i] * scale }
        model.encode(normalized: input.pointer, rows: rows, threads: threads, centered: centered, pre: pre, workspace: workspace, into: codes)
        output.resize(rows * d, fill: 0)
        model.decode(codes, threads: threads, into: output.pointer)
        centered.resize(rows * d, fill: 0)  // scratch for the residual (topk encodes without it)
        let squaredError = sk_subtract(input.pointer, output.pointer, centered.pointer, rows * d)
        var sums = [Double](repeating: 0, count: d)
        sk_column_sums(input.pointer, rows, d, &sums)
        var squaredNorm = 0.0
        for i in 0..<(rows * d) { squaredNorm += Double(input[i]) * Double(input[i]) }
        var active = 0
        for j in 0..<codes.entries where codes.values[j] > 0 {
            active += 1
            fired[Int(codes.indices[j])] = true
        }
        accumulator.add(rows: rows, squaredError: squaredError, squaredNorm: squaredNorm, columnSums: sums, active: Double(active))
        sk_scale(output.pointer, rows * d, 1 / scale)
        return output.readOnly
    }

    /// Latents that never fired on the rows seen.
    public var deadFraction: Double { Double(fired.lazy.filter { !$0 }.count) / Double(max(1, fired.count)) }
}
