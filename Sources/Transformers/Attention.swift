import CKernels
import Dispatch

/// Multi-head scaled dot-product attention over a ragged batch, reading q, k and v from one
/// fused projection buffer. Grouped-query attention shares each k/v head among
/// `heads / kvHeads` query heads. (sequence, head) pairs are split across threads; each
/// pair is small, so a fused C kernel beats many tiny BLAS calls.
struct Attention {
    let heads: Int
    let kvHeads: Int
    let headDim: Int
    let causal: Bool

    var queryWidth: Int { heads * headDim }
    var keyValueWidth: Int { kvHeads * headDim }
    /// Columns of the fused [q | k | v] projection.
    var fusedWidth: Int { queryWidth + 2 * keyValueWidth }

    /// Scratch floats one thread needs for sequences up to `longest` tokens.
    func scratchPerThread(longest: Int) -> Int { ak_attention_scratch(max(1, longest), headDim) }

    /// - Parameters:
    ///   - qkv: `[rows, fusedWidth]` projections.
    ///   - scratch: `threads × scratchPerThread(longest:)` floats.
    ///   - out: `[rows, queryWidth]` context vectors (heads concatenated).
    func apply(
        qkv: UnsafePointer<Float>, batch: TokenBatch, scratch: UnsafeMutablePointer<Float>,
        into out: UnsafeMutablePointer<Float>, threads: Int
    ) {
        let ld = fusedWidth, queryWidth = queryWidth, keyValueWidth = keyValueWidth
        let headDim = headDim, heads = heads, causal: Int32 = causal ? 1 : 0
        let scale = 1 / Float(headDim).squareRoot()
        let group = heads / kvHeads
        let sequences = batch.sequences.filter { !$0.isEmpty }
        let pairs = sequences.count * heads
        let perThread = scratchPerThread(longest: batch.longest)
        parallelFor(pairs, threads: threads) { range, worker in
            let scratch = scratch + worker * perThread
            for pair in range {
                let sequence = sequences[pair / heads], head = pair % heads
                let first = sequence.lowerBound
                let q = qkv + first * ld + head * headDim
                let k = qkv + first * ld + queryWidth + (head / group) * headDim
                let v = qkv + first * ld + queryWidth + keyValueWidth + (head / group) * headDim
                ak_attention(
                    q, k, v, ld, sequence.count, headDim, scale, causal, scratch,
                    out + first * queryWidth + head * headDim, queryWidth)
            }
        }
    }
}

/// Splits `0..<count` into one contiguous range per thread and runs them concurrently.
func parallelFor(_ count: Int, threads: Int, _ body: (Range<Int>, Int) -> Void) {
    let workers = max(1, min(threads, count))
    if workers == 1 {
        body(0..<count, 0)
        return
    }
    withoutActuallyEscaping(body) { body in
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let start = count * worker / workers, end = count * (worker + 1) / workers
            body(start..<end, worker)
        }
    }
}
