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
    func siluMultiply(_ count: Int) {
        let x = values(count, seed: 3, scale: 6), up = values(count, seed: 4)
        var gate = x
        ak_silu_mul(&gate, up, count)
        for (index, (value, u)) in zip(x, up).enumerated() {
            let expected = Double(value) / (1 + exp(-Double(value))) * Double(u)
            #expect(abs(Double(gate[index]) - expected) <= 1e-6 * max(1, abs(expected)))
        }
    }
}

/// The worst difference of ak_linear (no bias, no activation) from a Double GEMM.
private func linearError(rows: Int, inputs: Int, outputs: Int, seed: UInt64) -> Double {
    let x = values(rows * inputs, seed: seed), weight = values(outputs * inputs, seed: seed + 1, scale: 1)
    var packed = [Float](repeating: .nan, count: ak_linear_packed_count(outputs, inputs))
    ak_linear_pack(weight, outputs, inputs, 0, &packed)
    var y = [Float](repeating: .nan, count: rows * outputs)
    ak_linear(x, inputs, rows, inputs, packed, outputs, nil, AK_ACTIVATION_NONE, &y, outputs)
    var expected = [Double](repeating: 0, count: rows * outputs)
    for r in 0..<rows {
        for o in 0..<outputs {
            for i in 0..<inputs { expected[r * outputs + o] += Double(x[r * inputs + i]) * Double(weight[o * inputs + i]) }
        }
    }
    return worst(y, expected)
}

/// ak_linear against a plain Double GEMM: a power-of-two shape, an odd one with a ragged last
/// panel, two that span two row blocks with many input blocks and a ragged panel, and one
/// whose wide inputs make blocks of 96 rows (200 = 96 + 96 + 8: a short block ending in a
/// short tile); strided x and y.
@Suite struct DenseKernels {
    @Test(arguments: [(13, 128, 128), (7, 19, 37), (250, 600, 600), (300, 600, 400), (200, 1536, 70)])
    func linearMatchesTheDefinition(_ rows: Int, _ inputs: Int, _ outputs: Int) {
        let ldx = inputs + 3, ldy = outputs + 5
        let x = values(rows * ldx, seed: 21), weight = values(outputs * inputs, seed: 22, scale: 1)
        let bias = values(outputs, seed: 23)
        for (inputMajor, withBias) in [(false, true), (true, false)] {
            // The same matrix either way: W[o][i] is weight[o * inputs + i].
            let stored = inputMajor ? (0..<(inputs * outputs)).map { weight[($0 % outputs) * inputs + $0 / outputs] } : weight
            var packed = [Float](repeating: .nan, count: ak_linear_packed_count(outputs, inputs))
            ak_linear_pack(stored, outputs, inputs, inputMajor ? 1 : 0, &packed)
            var y = [Float](repeating: .nan, count: rows * ldy)
            ak_linear(x, ldx, rows, inputs, packed, outputs, withBias ? bias : nil, AK_ACTIVATION_NONE, &y, ldy)
            var expected = y.map(Double.init)
            for r in 0..<rows {
                for o in 0..<outputs {
                    var sum = withBias ? Double(bias[o]) : 0
                    for i in 0..<inputs { sum += Double(x[r * ldx + i]) * Double(weight[o * inputs + i]) }
                    expected[r * ldy + o] = sum
                }
            }
            #expect(worst(y, expected) <= 1e-4, "\(rows)×\(inputs)→\(outputs) inputMajor \(inputMajor)")
            // The padding between rows of y is left alone.
            #expect(y[outputs].isNaN)
        }
    }

    /// ak_linear keeps a per-thread buffer of packed x: small, grown for 1536 inputs, then
    /// reused (larger than needed) for small inputs again, all on this thread.
    @Test func linearReusesItsPackedBufferAcrossShapes() {
        for (index, (rows, inputs, outputs)) in [(7, 19, 37), (100, 1536, 64), (13, 19, 37), (1, 5, 3)].enumerated() {
            #expect(linearError(rows: rows, inputs: inputs, outputs: outputs, seed: 40 + 2 * UInt64(index)) <= 1e-4)
        }
    }

    /// The fused residual LayerNorm after each row block equals the GEMM followed by the
    /// separate kernel: blocks of 96 rows (1536 inputs) ending in a short one, and one block.
    @Test(arguments: [(200, 1536, 70), (13, 96, 384)])
    func linearResidualNormEqualsTheTwoKernels(_ rows: Int, _ inputs: Int, _ width: Int) {
        let x = values(rows * inputs, seed: 51), weight = values(width * inputs, seed: 52, scale: 0.2)
        let bias = values(width, seed: 53), residual = values(rows * width, seed: 54)
        let gamma = values(width, seed: 55, scale: 1), beta = values(width, seed: 56, scale: 1)
        var packed = [Float](repeating: 0, count: ak_linear_packed_count(width, inputs))
        ak_linear_pack(weight, width, inputs, 0, &packed)
        var y = [Float](repeating: 0, count: rows * width), expectedResidual = residual
        ak_linear(x, inputs, rows, inputs, packed, width, bias, AK_ACTIVATION_NONE, &y, width)
        ak_residual_layer_norm(&expectedResidual, y, gamma, beta, rows, width, 1e-12)
        var fusedY = [Float](repeating: .nan, count: rows * width), fusedResidual = residual
        ak_linear_residual_layer_norm(x, inputs, rows, inputs, packed, width, bias, &fusedY, width, &fusedResidual, gamma, beta, 1e-12)
        #expect(fusedY == y)
        #expect(worst(fusedResidual, expectedResidual.map(Double.init)) <= 1e-6)
        #expect(worst(fusedResidual, residual.map(Double.init)) > 0.1)  // the norm did run
    }

    /// With W = I the GEMM is exact, which isolates the fused bias and GELU.
    @Test(arguments: [64, 37])
    func geluIsFusedIntoTheLastPass(_ width: Int) {
        let rows = 16
        let x = values(rows * width, seed: 3, scale: 6), bias = values(width, seed: 8, scale: 0.5)
        let identity = (0..<(width * width)).map { $0 / width == $0 % width ? Float(1) : 0 }
        var packed = [Float](repeating: 0, count: ak_linear_packed_count(width, width))
        ak_linear_pack(identity, width, width, 0, &packed)
        let shifted = (0..<(rows * width)).map { Double(x[$0]) + Double(bias[$0 % width]) }
        var gelu = [Float](repeating: 0, count: rows * width), geluTanh = gelu
        ak_linear(x, width, rows, width, packed, width, bias, AK_ACTIVATION_GELU_ERF, &gelu, width)
        #expect(worst(gelu, shifted.map { 0.5 * $0 * (1 + erf($0 / 2.0.squareRoot())) }) <= 1e-6)
        ak_linear(x, width, rows, width, packed, width, bias, AK_ACTIVATION_GELU_TANH, &geluTanh, width)
        #expect(worst(geluTanh, shifted.map { v in
            0.5 * v * (1 + tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v)))
        }) <= 1e-6)
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

        // Residual and LayerNorm in one pass: x = LN(x + y).
        let y = values(rows * width, seed: 12)
        var fused = x
        ak_residual_layer_norm(&fused, y, gamma, beta, rows, width, 1e-5)
        var unfused = [Float](repeating: 0, count: rows * width)
        ak_layer_norm(zip(x, y).map { $0 + $1 }, &unfused, gamma, beta, rows, width, width, 1e-5)
        #expect(worst(fused, unfused.map(Double.init)) <= 1e-5)

        ak_rms_norm(x, &out, gamma, rows, width, width, 1e-6)
        expected = []
        for r in 0..<rows {
            let row = x[(r * width)..<((r + 1) * width)].map(Double.init)
            let rms = (row.map { $0 * $0 }.reduce(0, +) / Double(width) + 1e-6).squareRoot()
            expected += row.enumerated().map { $1 / rms * Double(gamma[$0]) }
        }
        #expect(worst(out, expected) <= 1e-5)
    }

    /// Three query heads, run as head 0 and then heads 1..<3 (so one call covers several
    /// heads and prefetches), with their own k/v heads or all sharing one (grouped-query).
    @Test(arguments: [(32, 16), (13, 20), (1, 8), (130, 32), (6, 64), (128, 32), (37, 48)])
    func attentionHeadsMatchTheDefinition(_ length: Int, _ headDim: Int) {
        let heads = 3
        for (causal, group) in [(false, 1), (true, 1), (false, 3), (true, 3)] {
            let kvHeads = heads / group, queryWidth = heads * headDim, kvWidth = kvHeads * headDim
            let ld = queryWidth + 2 * kvWidth + 5
            let qkv = values(length * ld, seed: UInt64(length * 100 + headDim))
            var out = [Float](repeating: .nan, count: length * queryWidth)
            var scratch = [Float](repeating: .nan, count: ak_attention_scratch(length, headDim))
            let scale = 1 / Float(headDim).squareRoot()
            qkv.withUnsafeBufferPointer { p in
                let q = p.baseAddress!, k = q + queryWidth, v = k + kvWidth
                for (first, end) in [(0, 1), (1, heads)] {
                    ak_attention(q, k, v, ld, length, headDim, first, end, group, scale, causal ? 1 : 0, &scratch, &out, queryWidth)
                }
            }
            var expected = [Double](repeating: 0, count: length * queryWidth)
            for head in 0..<heads {
                let qc = head * headDim, kc = queryWidth + head / group * headDim, vc = kc + kvWidth
                for i in 0..<length {
                    let visible = causal ? i + 1 : length
                    let scores = (0..<visible).map { j in
                        (0..<headDim).reduce(0.0) { $0 + Double(qkv[i * ld + qc + $1]) * Double(qkv[j * ld + kc + $1]) } * Double(scale)
                    }
                    let top = scores.max()!
                    let weights = scores.map { exp($0 - top) }
                    let total = weights.reduce(0, +)
                    for c in 0..<headDim {
                        expected[i * queryWidth + qc + c] = (0..<visible).reduce(0.0) {
                            $0 + weights[$1] / total * Double(qkv[$1 * ld + vc + c])
                        }
                    }
                }
            }
            #expect(worst(out, expected) <= 1e-5, "length \(length) headDim \(headDim) causal \(causal) group \(group)")
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
