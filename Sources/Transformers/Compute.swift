import CKernels

/// Token layout of one forward pass: sequences back to back with no padding. Every row is a
/// real token, and attention runs per sequence, so a short sequence batched with long
/// ones computes exactly what it computes alone.
public struct TokenBatch: Sendable {
    public let tokens: [Int32]
    /// Row range of each sequence.
    public let sequences: [Range<Int>]
    /// Position of each row within its sequence.
    public let positions: [Int32]

    public init(_ sequences: [[Int32]]) {
        var tokens: [Int32] = [], ranges: [Range<Int>] = [], positions: [Int32] = []
        for sequence in sequences {
            ranges.append(tokens.count..<(tokens.count + sequence.count))
            tokens += sequence
            positions += (0..<sequence.count).map(Int32.init)
        }
        self.tokens = tokens
        self.sequences = ranges
        self.positions = positions
    }

    public var rows: Int { tokens.count }
    public var longest: Int { sequences.map(\.count).max() ?? 0 }
}

/// Reusable float buffers, grown on demand, so that steady-state passes never allocate.
final class Workspace {
    private var buffers: [FloatBuffer] = []

    func slot(_ index: Int, count: Int) -> UnsafeMutablePointer<Float> {
        while buffers.count <= index { buffers.append(FloatBuffer(count: 0)) }
        if buffers[index].count < count { buffers[index] = FloatBuffer(count: count) }
        return buffers[index].pointer
    }
}

/// What one pass does at its hook points: copies out the requested hooks, rewrites the
/// spliced one in place, says when the pass may stop and keeps the final hidden state.
struct Capture {
    let hooks: HookSet?
    let splice: Splice?
    let rows: Int
    /// Threads that copy out a captured hook.
    let threads: Int
    /// The pass stops after this hook; nil runs every block and the final norm.
    let stop: HookPoint?
    private(set) var outputs: [HookPoint: [Float]] = [:]
    /// `[rows, d]` after the last block and the final norm, once a pass has run to the end.
    private(set) var finalHidden: [Float] = []

    /// Captures `hooks` and stops after the deepest one, unless `toEnd` asks for the final
    /// hidden state.
    init(hooks: HookSet?, splice: Splice? = nil, rows: Int, threads: Int = 1, toEnd: Bool = false) {
        precondition(toEnd || hooks != nil, "a pass that captures nothing must run to the end")
        self.hooks = hooks
        self.splice = splice
        self.rows = rows
        self.threads = threads
        stop = toEnd ? nil : hooks?.last
    }

    /// Whether the splice rewrites `point`: a family whose fused kernel consumes that output
    /// then takes its unfused path there.
    func splices(_ point: HookPoint) -> Bool { splice?.point == point }

    /// Splices and copies as requested; returns true when the pass can stop here. `residual`
    /// is the stream a fused kernel has already added `source` to (GPT-2's bias-residual), so
    /// a splice moves it by the change the splice made.
    mutating func record(
        _ point: HookPoint, _ source: UnsafeMutablePointer<Float>, width: Int, addedTo residual: UnsafeMutablePointer<Float>? = nil
    ) -> Bool {
        if let splice, splice.point == point {
            let activation = UnsafeMutableBufferPointer(start: source, count: rows * width)
            if let residual {
                let before = [Float](activation)
                splice.body(activation, rows)
                for i in 0..<activation.count { residual[i] += activation[i] - before[i] }
            } else {
                splice.body(activation, rows)
            }
        }
        if let hooks, hooks.contains(point) {
            outputs[point] = Capture.copy(source, count: rows * width, threads: threads)
        }
        guard let stop else { return false }
        return point >= stop
    }

    /// Keeps the hidden state the pass ends with (after the final norm).
    mutating func recordFinal(_ source: UnsafePointer<Float>, width: Int) {
        finalHidden = Capture.copy(source, count: rows * width, threads: threads)
    }

    /// A fresh array of `count` floats from `source`, split over `threads`: the copy
    /// page-faults its new pages in, and a lone thread would leave the others idle meanwhile.
    static func copy(_ source: UnsafePointer<Float>, count: Int, threads: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress {
                parallelFor(count, threads: count >= 1 << 16 ? threads : 1) { range, _ in
                    (base + range.lowerBound).initialize(from: source + range.lowerBound, count: range.count)
                }
            }
            initialized = count
        }
    }
}

/// A dense layer `y = activation(x Wᵀ + b)` over rows of x, its weights packed at load for
/// ``ak_linear`` (our own GEMM: bias and GELU are applied while each tile is in registers,
/// so no pass over y follows, and nothing is packed per call as sgemm does).
struct Linear {
    enum Activation {
        case none, geluErf, geluTanh
        var kernel: ak_activation {
            switch self {
            case .none: AK_ACTIVATION_NONE
            case .geluErf: AK_ACTIVATION_GELU_ERF
            case .geluTanh: AK_ACTIVATION_GELU_TANH
            }
        }
    }

    let packed: FloatBuffer
    let bias: FloatBuffer?
    let inputs: Int
    let outputs: Int

    /// - Parameter inputMajor: W is `[in, out]` (GPT-2's Conv1D), not `[out, in]` (nn.Linear).
    init(weight: FloatBuffer, bias: FloatBuffer?, inputs: Int, outputs: Int, inputMajor: Bool) {
        packed = FloatBuffer(count: ak_linear_packed_count(outputs, inputs))
        ak_linear_pack(weight.pointer, outputs, inputs, inputMajor ? 1 : 0, packed.pointer)
        self.bias = bias
        self.inputs = inputs
        self.outputs = outputs
    }

    /// Rows are split across `threads`, each running the single-threaded kernel.
    func apply(
        _ x: UnsafePointer<Float>, rows: Int, ldx: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, threads: Int,
        activation: Activation = .none
    ) {
        let chunks = rows >= 64 * threads ? threads : 1
        parallelFor(rows, threads: chunks) { range, _ in
            ak_linear(
                x + range.lowerBound * ldx, ldx, range.count, inputs, packed.pointer, outputs, bias?.pointer,
                activation.kernel, y + range.lowerBound * ldy, ldy)
        }
    }
}

extension Linear {
    /// `apply`, then `residual = LayerNorm(residual + y)` ([rows, outputs]) on each block of
    /// rows while its y is still in cache: BERT's post-LN sublayer outputs.
    func applyResidualNorm(
        _ x: UnsafePointer<Float>, rows: Int, ldx: Int, into y: UnsafeMutablePointer<Float>, ldy: Int,
        residual: UnsafeMutablePointer<Float>, norm: LayerNorm, threads: Int
    ) {
        let chunks = rows >= 64 * threads ? threads : 1
        parallelFor(rows, threads: chunks) { range, _ in
            ak_linear_residual_layer_norm(
                x + range.lowerBound * ldx, ldx, range.count, inputs, packed.pointer, outputs, bias?.pointer,
                y + range.lowerBound * ldy, ldy, residual + range.lowerBound * outputs, norm.weight.pointer,
                norm.bias.pointer, norm.epsilon)
        }
    }
}

struct LayerNorm {
    let weight: FloatBuffer
    let bias: FloatBuffer
    let epsilon: Float

    func apply(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int, threads: Int) {
        parallelFor(rows, threads: threads) { range, _ in
            let offset = range.lowerBound * width
            ak_layer_norm(x + offset, y + offset, weight.pointer, bias.pointer, range.count, width, width, epsilon)
        }
    }

    /// residual = LayerNorm(residual + sublayer), both `[rows, width]`: what
    /// `Linear.applyResidualNorm` fuses, for when the sublayer must be seen (or spliced) first.
    func apply(residual: UnsafeMutablePointer<Float>, adding sublayer: UnsafePointer<Float>, rows: Int, width: Int, threads: Int) {
        parallelFor(rows, threads: threads) { range, _ in
            let offset = range.lowerBound * width
            ak_residual_layer_norm(residual + offset, sublayer + offset, weight.pointer, bias.pointer, range.count, width, epsilon)
        }
    }
}

struct RMSNorm {
    let weight: FloatBuffer
    let epsilon: Float

    func apply(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int, threads: Int) {
        parallelFor(rows, threads: threads) { range, _ in
            let offset = range.lowerBound * width
            ak_rms_norm(x + offset, y + offset, weight.pointer, range.count, width, width, epsilon)
        }
    }
}

extension WeightStore {
    /// nn.Linear layers side by side as one (q, k and v in one GEMM): each `[outputs[i], inputs]`.
    func linear(_ names: [String], inputs: Int, outputs: [Int], bias: Bool = true) throws -> Linear {
        let total = outputs.reduce(0, +)
        let weight = FloatBuffer(count: total * inputs), joined = bias ? FloatBuffer(count: total) : nil
        var row = 0
        for (name, width) in zip(names, outputs) {
            let part = try take(name + ".weight", [width, inputs])
            withExtendedLifetime(part) { (weight.pointer + row * inputs).update(from: part.pointer, count: part.count) }
            if let joined {
                let partBias = try take(name + ".bias", [width])
                withExtendedLifetime(partBias) { (joined.pointer + row).update(from: partBias.pointer, count: width) }
            }
            row += width
        }
        return Linear(weight: weight, bias: joined, inputs: inputs, outputs: total, inputMajor: false)
    }

    func linear(_ name: String, inputs: Int, outputs: Int, bias: Bool = true) throws -> Linear {
        try linear([name], inputs: inputs, outputs: [outputs], bias: bias)
    }

    func conv1D(_ name: String, inputs: Int, outputs: Int) throws -> Linear {
        Linear(
            weight: try take(name + ".weight", [inputs, outputs]), bias: try take(name + ".bias", [outputs]),
            inputs: inputs, outputs: outputs, inputMajor: true)
    }

    func layerNorm(_ name: String, width: Int, epsilon: Float, weightKey: String = "weight", biasKey: String = "bias") throws -> LayerNorm {
        LayerNorm(weight: try take("\(name).\(weightKey)", [width]), bias: try take("\(name).\(biasKey)", [width]), epsilon: epsilon)
    }
}

/// Copies embedding rows for each token: out[r] = table[tokens[r]].
func gatherRows(_ table: FloatBuffer, width: Int, indices: [Int32], into out: UnsafeMutablePointer<Float>) {
    for (row, index) in indices.enumerated() {
        (out + row * width).update(from: table.pointer + Int(index) * width, count: width)
    }
}

/// Adds table rows: out[r] += table[indices[r]].
func addRows(_ table: FloatBuffer, width: Int, indices: [Int32], into out: UnsafeMutablePointer<Float>) {
    for (row, index) in indices.enumerated() {
        ak_add(out + row * width, table.pointer + Int(index) * width, width)
    }
}

/// Elementwise kernels split across threads in large contiguous pieces.
enum Elementwise {
    static func split(_ count: Int, threads: Int, _ body: (Int, Int) -> Void) {
        parallelFor(count, threads: count >= 1 << 15 ? threads : 1) { range, _ in body(range.lowerBound, range.count) }
    }

    static func siluMultiply(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int, threads: Int) {
        split(count, threads: threads) { start, n in ak_silu_mul(gate + start, up + start, n) }
    }

    /// x += y
    static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count: Int, threads: Int) {
        split(count, threads: threads) { start, n in ak_add(x + start, y + start, n) }
    }
}
