import CKernels
import Dispatch

/// Multi-head scaled dot-product attention over a ragged batch, reading q, k and v from one
/// fused projection buffer. Grouped-query attention shares each k/v head among
/// `heads / kvHeads` query heads. (sequence, head) pairs are split across threads; each
/// pair is small, so a fused C kernel beats many tiny BLAS calls. Each thread hands the
/// kernel its heads of one sequence in one call, so that it can prefetch the next head.
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
        let perThread = scratchPerThread(longest: batch.longest)
        parallelFor(sequences.count * heads, threads: threads) { range, worker in
            let scratch = scratch + worker * perThread
            var pair = range.lowerBound
            while pair < range.upperBound {
                let sequence = sequences[pair / heads], head = pair % heads
                let end = min(heads, head + range.upperBound - pair)
                let q = qkv + sequence.lowerBound * ld
                ak_attention(
                    q, q + queryWidth, q + queryWidth + keyValueWidth, ld, sequence.count, headDim, head, end, group,
                    scale, causal, scratch, out + sequence.lowerBound * queryWidth, queryWidth)
                pair += end - head
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
