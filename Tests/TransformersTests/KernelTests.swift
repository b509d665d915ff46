import CKernels
import Foundation
import Testing

/// Each vectorised kernel against a plain Double-precision version, on a power-of-two and
/// an odd size (tails of the 16-lane loops).
private func values(_ count: Int, seed: UInt64, scale: Float = 3) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return (Float(state >> 40) / Float(1 << 24) * 2 - 1) * scale
    }
}

private func worst(_ a: [Float], _ b: [Double]) -> Double {
    zip(a, b).reduce(0) { max($0, abs(Double($1.0) - $1.1)) }
}

@Suite struct MathKernels {
    @Test(arguments: [64, 37])
    func expErfTanhMatchLibm(_ count: Int) {
        let x = values(count, seed: 1, scale: 10)
        var out = [Float](repeating: 0, count: count)
        ak_exp(x, &out, count)
        for (value, result) in zip(x, out) {
            #expect(abs(Double(result) - exp(Double(value))) <= 3e-7 * exp(Double(value)), "exp(\(value))")
        }
        ak_erf(x, &out, count)
        #expect(worst(out, x.map { erf(Double($0)) }) <= 2e-7)
        ak_tanh(x, &out, count)
        #expect(worst(out, x.map { tanh(Double($0)) }) <= 3e-7)
        let small = values(count, seed: 2, scale: 0.1)
        ak_tanh(small, &out, count)
        for (value, result) in zip(small, out) {
            #expect(abs(Double(result) - tanh(Double(value))) <= 2e-7 * abs(tanh(Double(value))) + 1e-12)
        }
    }

    /// The normaliser of a row of logits: large values must not overflow, and rows longer
    /// than a vocabulary of 50k still sum to float precision.
    @Test(arguments: [64, 37, 50257])
    func logSumExpMatchesDouble(_ count: Int) {
        for (seed, scale, offset) in [(UInt64(21), Float(3), Float(0)), (22, 20, 500), (23, 0.01, -80)] {
            let x = values(count, seed: seed, scale: scale).map { $0 + offset }
            let top = Double(x.max()!)
            let expected = top + log(x.reduce(0.0) { $0 + exp(Double($1) - top) })
            let result = Double(ak_log_sum_exp(x, count))
            #expect(abs(result - expected) <= 2e-6 * max(1, abs(expected)), "n \(count) scale \(scale) offset \(offset): \(result) vs \(expected)")
        }
    }

    @Test(arguments: [1024, 999])
    func activations(_ count: Int) {
        let x = values(count, seed: 3, scale: 6)
        // GELU with a bias folded in: rows of `width`, the bias repeating per row.
        let width = count % 2 == 0 ? 64 : 37, rows = count / width
        let bias = values(width, seed: 8, scale: 0.5)
        let shifted = (0..<(rows * width)).map { Double(x[$0]) + Double(bias[$0 % width]) }
        var gelu = Array(x[0..<(rows * width)]), geluTanh = gelu, gate = x
        let up = values(count, seed: 4)
        ak_bias_gelu_erf(&gelu, bias, rows, width)
        #expect(worst(gelu, shifted.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }) <= 1e-6)
        ak_bias_gelu_tanh(&geluTanh, bias, rows, width)
        #expect(worst(geluTanh, shifted.map { v in
            0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
        }) <= 1e-6)
        ak_silu_mul(&gate, up, count)
        for (index, (value, u)) in zip(x, up).enumerated() {
            let expected = Double(value) / (1 + exp(-Double(value))) * Double(u)
            #expect(abs(Double(gate[index]) - expected) <= 1e-6 * max(1, abs(expected)))
        }
    }
}

@Suite struct RowKernels {
    @Test(arguments: [384, 37])
    func layerNormAndRMSNorm(_ width: Int) {
        let rows = 5
        let x = values(rows * width, seed: 5).map { $0 + 2 }
        let gamma = values(width, seed: 6), beta = values(width, seed: 7)
        var out = [Float](repeating: 0, count: rows * width)
        ak_layer_norm(x, &out, gamma, beta, rows, width, width, 1e-5)
        var expected: [Double] = []
        for r in 0..<rows {
            let row = x[(r * width)..<((r + 1) * width)].map(Double.init)
            let mean = row.reduce(0, +) / Double(width)
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(width)
            expected += row.enumerated().map { ($1 - mean) / (variance + 1e-5).squareRoot() * Double(gamma[$0]) + Double(beta[$0]) }
        }
        #expect(worst(out, expected) <= 1e-5)

        // Bias, residual and LayerNorm in one pass: y += b, x = LN(x + y).
        let y = values(rows * width, seed: 12), bias = values(width, seed: 13)
        var fusedX = x, fusedY = y
        ak_bias_residual_layer_norm(&fusedX, &fusedY, bias, gamma, beta, rows, width, 1e-5)
        var residual = x, sublayer = y
        ak_bias_residual(&residual, &sublayer, bias, rows, width)
        let biased = (0..<(rows * width)).map { Double(y[$0]) + Double(bias[$0 % width]) }
        #expect(worst(fusedY, biased) <= 1e-6 && worst(sublayer, biased) <= 1e-6)
        #expect(worst(residual, (0..<(rows * width)).map { Double(x[$0]) + biased[$0] }) <= 1e-5)
        var unfused = [Float](repeating: 0, count: rows * width)
        ak_layer_norm(residual, &unfused, gamma, beta, rows, width, width, 1e-5)
        #expect(worst(fusedX, unfused.map(Double.init)) <= 1e-5)

        ak_rms_norm(x, &out, gamma, rows, width, width, 1e-6)
        expected = []
        for r in 0..<rows {
            let row = x[(r * width)..<((r + 1) * width)].map(Double.init)
            let rms = (row.map { $0 * $0 }.reduce(0, +) / Double(width) + 1e-6).squareRoot()
            expected += row.enumerated().map { $1 / rms * Double(gamma[$0]) }
        }
        #expect(worst(out, expected) <= 1e-5)
    }

    @Test(arguments: [(32, 16), (13, 20), (1, 8), (130, 32), (6, 64)])
    func attentionHeadMatchesTheDefinition(_ length: Int, _ headDim: Int) {
        for causal in [false, true] {
            let ld = 3 * headDim + 5
            let qkv = values(length * ld, seed: UInt64(length * 100 + headDim))
            var out = [Float](repeating: .nan, count: length * headDim)
            var scratch = [Float](repeating: .nan, count: ak_attention_scratch(length, headDim))
            let scale = 1 / Float(headDim).squareRoot()
            qkv.withUnsafeBufferPointer { p in
                ak_attention(p.baseAddress!, p.baseAddress! + headDim, p.baseAddress! + 2 * headDim, ld, length, headDim,
                             scale, causal ? 1 : 0, &scratch, &out, headDim)
            }
            var expected: [Double] = []
            for i in 0..<length {
                let visible = causal ? i + 1 : length
                let scores = (0..<visible).map { j in
                    (0..<headDim).reduce(0.0) { $0 + Double(qkv[i * ld + $1]) * Double(qkv[j * ld + headDim + $1]) } * Double(scale)
                }
                let top = scores.max()!
                let weights = scores.map { exp($0 - top) }
                let total = weights.reduce(0, +)
                expected += (0..<headDim).map { c in
                    (0..<visible).reduce(0.0) { $0 + weights[$1] / total * Double(qkv[$1 * ld + 2 * headDim + c]) }
                }
            }
            #expect(worst(out, expected) <= 1e-5, "length \(length) headDim \(headDim) causal \(causal)")
        }
    }

    @Test func rotaryRotatesPairsOfHalves() {
        let heads = 3, headDim = 8, tokens = 4, ld = heads * headDim + 2, half = headDim / 2
        let x = values(tokens * ld, seed: 11)
        var rotated = x
        let positions: [Int32] = [0, 3, 1, 2]
        let angles = (0..<4).flatMap { p in (0..<half).map { i in Float(p) * powf(10000, -Float(2 * i) / Float(headDim)) } }
        ak_rope(&rotated, tokens, heads, headDim, ld, positions, angles.map { cosf($0) }, angles.map { sinf($0) })
        for t in 0..<tokens {
            for h in 0..<heads {
                for i in 0..<half {
                    let a = Double(x[t * ld + h * headDim + i]), b = Double(x[t * ld + h * headDim + i + half])
                    let angle = Double(angles[Int(positions[t]) * half + i])
                    #expect(abs(Double(rotated[t * ld + h * headDim + i]) - (a * cos(angle) - b * sin(angle))) <= 1e-5)
                    #expect(abs(Double(rotated[t * ld + h * headDim + i + half]) - (b * cos(angle) + a * sin(angle))) <= 1e-5)
                }
            }
            // The padding columns past the heads are untouched.
            #expect(rotated[t * ld + heads * headDim] == x[t * ld + heads * headDim])
        }
    }
}
