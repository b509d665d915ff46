import BLAS
import CKernels

/// Multi-head scaled dot-product attention over a ragged batch, reading q, k and v from one
/// fused projection buffer. Grouped-query attention shares each k/v head among
/// `heads / kvHeads` query heads.
struct Attention {
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    let causal: Bool

    var queryWidth: Int { heads * headDim }
    var keyValueWidth: Int { kvHeads * headDim }
    /// Columns of the fused [q | k | v] projection.
    var fusedWidth: Int { queryWidth + 2 * keyValueWidth }

    /// - Parameters:
    ///   - qkv: `[rows, fusedWidth]` projections.
    ///   - scores: scratch of at least `longest²` floats.
    ///   - out: `[rows, queryWidth]` context vectors (heads concatenated).
    func apply(
        qkv: UnsafePointer<Float>, batch: TokenBatch, scores: UnsafeMutablePointer<Float>,
        into out: UnsafeMutablePointer<Float>
    ) {
        let ld = fusedWidth
        let scale = 1 / Float(headDim).squareRoot()
        let group = heads / kvHeads
        for range in batch.sequences where !range.isEmpty {
            let length = range.count
            let first = range.lowerBound
            for head in 0..<heads {
                let kvHead = head / group
                let q = qkv + first * ld + head * headDim
                let k = qkv + first * ld + queryWidth + kvHead * headDim
                let v = qkv + first * ld + queryWidth + keyValueWidth + kvHead * headDim
                // scores = q kᵀ / √dh: [length, length]
                BLAS.sgemm(
                    .none, .transpose, m: length, n: length, k: headDim, alpha: scale,
                    a: UnsafeBufferPointer(start: q, count: (length - 1) * ld + headDim), lda: ld,
                    b: UnsafeBufferPointer(start: k, count: (length - 1) * ld + headDim), ldb: ld,
                    c: UnsafeMutableBufferPointer(start: scores, count: length * length), ldc: length)
                ak_softmax_rows(scores, length, length, length, causal ? 1 : 0)
                // context = softmax(scores) v: [length, headDim] into this head's columns
                BLAS.sgemm(
                    .none, .none, m: length, n: headDim, k: length,
                    a: UnsafeBufferPointer(start: scores, count: length * length), lda: length,
                    b: UnsafeBufferPointer(start: v, count: (length - 1) * ld + headDim), ldb: ld,
                    c: UnsafeMutableBufferPointer(
                        start: out + first * queryWidth + head * headDim, count: (length - 1) * queryWidth + headDim),
                    ldc: queryWidth)
            }
        }
    }
}
