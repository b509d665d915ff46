import CSparseKernels

/// Latent activations of a batch as compressed sparse rows: token r's latents are
/// `indices[start[r] ..< start[r + 1]]` with `values` at the same positions.
public final class SparseCodes {
    public private(set) var rows = 0
    public let start = Storage<Int64>(count: 1, repeating: 0)
    public let indices = Storage<Int32>(count: 0, repeating: 0)
    public let values = Storage<Float>(count: 0, repeating: 0)

    public init() {}

    public var entries: Int { Int(start[rows]) }

    /// Latents with a positive value, per token on average.
    public var meanActive: Double {
        guard rows > 0 else { return 0 }
        var active = 0
        for j in 0..<entries where values[j] > 0 { active += 1 }
        return Double(active) / Double(rows)
    }

    /// Room for `rows` tokens of `perRow` entries each, with `start` filled in.
    func setUniform(rows: Int, perRow: Int) {
        self.rows = rows
        start.resize(rows + 1, fill: 0)
        for r in 0...rows { start[r] = Int64(r * perRow) }
        indices.resize(rows * perRow, fill: 0)
        values.resize(rows * perRow, fill: 0)
    }

    /// `start` from per-row counts; entries are filled by the caller.
    func setCounts(_ counts: UnsafeBufferPointer<Int32>) {
        rows = counts.count
        start.resize(rows + 1, fill: 0)
        var total: Int64 = 0
        for r in 0..<rows {
            start[r] = total
            total += Int64(counts[r])
        }
        start[rows] = total
        indices.resize(Int(total), fill: 0)
        values.resize(Int(total), fill: 0)
    }

    /// Row-by-row dense copy `[rows, m]`, for tests and small tools.
    public func dense(latents: Int) -> [Float] {
        var out = [Float](repeating: 0, count: rows * latents)
        for r in 0..<rows {
            for j in Int(start[r])..<Int(start[r + 1]) { out[r * latents + Int(indices[j])] += values[j] }
        }
        return out
    }
}

/// Picks the active latents from pre-activations `pre [rows, m]` (bias added on the fly).
enum Selection {
    /// TopK of ReLU per row.
    static func topK(
        pre: UnsafePointer<Float>, bias: UnsafePointer<Float>?, rows: Int, latents: Int, k: Int, threads: Int, into codes: SparseCodes
    ) {
        codes.setUniform(rows: rows, perRow: k)
        let indices = codes.indices.pointer, values = codes.values.pointer
        parallelFor(rows, threads: threads) { range, _ in
            sk_topk_rows(
                pre + range.lowerBound * latents, latents, bias, range.count, latents, k, indices + range.lowerBound * k,
                values + range.lowerBound * k)
        }
    }

    /// TopK of ReLU per row among `subset` latents.
    static func topK(
        pre: UnsafePointer<Float>, bias: UnsafePointer<Float>?, rows: Int, latents: Int, subset: [Int32], k: Int, threads: Int,
        into codes: SparseCodes
    ) {
        codes.setUniform(rows: rows, perRow: k)
        let indices = codes.indices.pointer, values = codes.values.pointer
        subset.withUnsafeBufferPointer { subset in
            parallelFor(rows, threads: threads) { range, _ in
                sk_topk_rows_subset(
                    pre + range.lowerBound * latents, latents, bias, range.count, subset.baseAddress, subset.count, k,
                    indices + range.lowerBound * k, values + range.lowerBound * k)
            }
        }
    }

    /// Every latent with ReLU(pre + bias) ≥ threshold (> 0).
    static func atLeast(
        pre: UnsafePointer<Float>, bias: UnsafePointer<Float>?, rows: Int, latents: Int, threshold: Float, threads: Int,
        into codes: SparseCodes
    ) {
        let counts = [Int32](unsafeUninitializedCapacity: rows) { buffer, initialized in
            let base = buffer.baseAddress!
            parallelFor(rows, threads: threads) { range, _ in
                sk_count_at_least(
                    pre + range.lowerBound * latents, latents, bias, range.count, latents, threshold, base + range.lowerBound)
            }
            initialized = rows
        }
        counts.withUnsafeBufferPointer { codes.setCounts($0) }
        let start = codes.start.pointer, indices = codes.indices.pointer, values = codes.values.pointer
        parallelFor(rows, threads: threads) { range, _ in
            sk_gather_at_least(
                pre + range.lowerBound * latents, latents, bias, range.count, latents, threshold, start + range.lowerBound, indices,
                values)
        }
    }

    /// BatchTopK: the `total` largest positive values of ReLU(pre + bias) across the whole
    /// batch (ties at the threshold all kept). Returns the threshold (the smallest kept value),
    /// found exactly by a two-pass radix select on the float bit patterns.
    @discardableResult
    static func batchTopK(
        pre: UnsafePointer<Float>, bias: UnsafePointer<Float>?, rows: Int, latents: Int, total: Int, threads: Int,
        into codes: SparseCodes
    ) -> Float {
        func histogram(shift: Int32, prefix: UInt32) -> [UInt64] {
            let workers = max(1, min(threads, rows))
            var counts = [UInt64](repeating: 0, count: 65536 * workers)
            counts.withUnsafeMutableBufferPointer { counts in
                let base = counts.baseAddress!
                parallelFor(rows, threads: workers) { range, worker in
                    sk_histogram_positive(
                        pre + range.lowerBound * latents, latents, bias, range.count, latents, shift, prefix, base + worker * 65536)
                }
            }
            var merged = [UInt64](repeating: 0, count: 65536)
            for worker in 0..<workers { for bin in 0..<65536 { merged[bin] += counts[worker * 65536 + bin] } }
            return merged
        }
        let upper = histogram(shift: 16, prefix: 0)
        var above: UInt64 = 0
        var bin = 65535
        while bin >= 0 {
            if above + upper[bin] >= UInt64(total) { break }
            above += upper[bin]
            bin -= 1
        }
        let threshold: Float
        if bin < 0 {
            threshold = .leastNonzeroMagnitude  // fewer positives than the budget: keep them all
        } else {
            let lower = histogram(shift: 0, prefix: UInt32(bin))
            var low = 65535
            while low > 0 {
                if above + lower[low] >= UInt64(total) { break }
                above += lower[low]
                low -= 1
            }
            threshold = Float(bitPattern: UInt32(bin) << 16 | UInt32(low))
        }
        atLeast(pre: pre, bias: bias, rows: rows, latents: latents, threshold: max(threshold, .leastNonzeroMagnitude), threads: threads, into: codes)
        return threshold
    }
}
