import Foundation
import Testing

@testable import Trainer

/// The fast paths of the TopK trainer against plain versions, at sizes that run every part of
/// them (several row chunks and panel blocks of the fused encoder, candidate buffers cut back
/// many times, column slices with and without a narrow last slice, AuxK rows) and at odd sizes.
/// The plain reference for the encoders: (x − b_dec) · W_encᵀ + b_enc by sgemm, [rows, m].
func plainPreactivations(_ model: SparseAutoencoder, _ x: [Float], rows: Int) -> [Float] {
    let m = model.latents
    var pre = [Float](repeating: 0, count: rows * m)
    let centered = Storage<Float>(count: 0, repeating: 0)
    x.withUnsafeBufferPointer { x in
        pre.withUnsafeMutableBufferPointer { pre in
            model.encoderProducts(model.center(x.baseAddress!, rows: rows, threads: 2, into: centered), rows: rows, threads: 2, into: pre.baseAddress!)
        }
    }
    for r in 0..<rows { for i in 0..<m { pre[r * m + i] += model.encoderBias[i] } }
    return pre
}

@Suite struct KernelTests {
    struct Case: CustomStringConvertible, Sendable {
        var n: Int, d: Int, m: Int, k: Int
        var dead: Int, auxK: Int
        var description: String { "n=\(n) d=\(d) m=\(m) k=\(k) dead=\(dead) aux_k=\(auxK)" }
    }

    static let encoderCases = [
        Case(n: 1100, d: 64, m: 640, k: 8, dead: 100, auxK: 16),
        Case(n: 37, d: 13, m: 99, k: 5, dead: 9, auxK: 4),
        Case(n: 50, d: 20, m: 100, k: 100, dead: 0, auxK: 0),
    ]

    static func model(_ test: Case, seed: UInt64) -> SparseAutoencoder {
        var random = SplitMix64(seed: seed)
        let model = SparseAutoencoder(config: DictionaryConfig(architecture: .topk, width: test.d, latents: test.m, k: test.k), random: &random)
        for i in 0..<test.m { model.encoderBias[i] = Float(random.nextNormal() * 0.05) }
        for c in 0..<test.d { model.decoderBias[c] = Float(random.nextNormal() * 0.1) }
        return model
    }

    static func rows(_ test: Case, seed: UInt64) -> [Float] {
        var random = SplitMix64(seed: seed)
        return (0..<(test.n * test.d)).map { _ in Float(random.nextNormal()) }
    }

    /// Per row, the top `k` of relu(pre) among `latents` from the plain sgemm, against the codes.
    static func compare(
        _ name: String, codes: SparseCodes, pre: [Float], test: Case, latents: [Int], k: Int
    ) -> (worst: Float, mismatched: Int) {
        var worst: Float = 0, mismatched = 0
        for r in 0..<test.n {
            let expected = latents.map { (latent: $0, value: max(0, pre[r * test.m + $0])) }.sorted { $0.value > $1.value }
            let got = (Int(codes.start[r])..<Int(codes.start[r + 1])).map { (latent: Int(codes.indices[$0]), value: codes.values[$0]) }
                .sorted { $0.value > $1.value }
            #expect(got.count == k, "\(name) row \(r): \(got.count) entries")
            for (e, g) in zip(expected.prefix(k), got) { worst = max(worst, abs(e.value - g.value)) }
            // The chosen positive latents must carry their own pre-activation.
            for g in got where g.value > 0 { worst = max(worst, abs(max(0, pre[r * test.m + g.latent]) - g.value)) }
            // Where the k-th and (k+1)-th values are apart, the chosen sets agree.
            let cut = k < expected.count ? expected[k].value : -1
            if expected[k - 1].value > cut + 1e-4 {
                let want = Set(expected.prefix(k).filter { $0.value > 0 }.map(\.latent))
                if want != Set(got.filter { $0.value > 0 }.map(\.latent)) { mismatched += 1 }
            }
        }
        return (worst, mismatched)
    }

    @Test(arguments: encoderCases)
    func fusedTopKMatchesSgemmAndSort(_ test: Case) {
        let model = Self.model(test, seed: UInt64(test.m))
        let x = Self.rows(test, seed: UInt64(test.n))
        let dead = (0..<test.dead).map { Int32(($0 * 7 + 3) % test.m) }
        // One worker takes all rows in one call (several row chunks); two split them. The
        // portable path (sgemm into row blocks, then a selection) runs too.
        // The int8 prescreen (where the CPU has VNNI) runs alike on one and two workers.
        let codes = SparseCodes(), auxCodes = SparseCodes(), split = SparseCodes(), splitAux = SparseCodes()
        let portable = SparseCodes(), portableAux = SparseCodes()
        let int8 = SparseCodes(), int8Aux = SparseCodes(), int8Split = SparseCodes(), int8SplitAux = SparseCodes()
        func workspace(_ path: EncoderPath) -> EncoderWorkspace {
            let workspace = EncoderWorkspace()
            workspace.path = path
            return workspace
        }
        let hasInt8 = EncoderPath.best(exactOnly: false) == .int8Prescreen
        let exact = EncoderPath.best(exactOnly: true)
        x.withUnsafeBufferPointer { x in
            var runs = [
                (1, workspace(exact), codes, auxCodes), (2, workspace(exact), split, splitAux), (2, workspace(.portable), portable, portableAux),
            ]
            if hasInt8 { runs += [(1, workspace(.int8Prescreen), int8, int8Aux), (2, workspace(.int8Prescreen), int8Split, int8SplitAux)] }
            for (threads, workspace, codes, auxCodes) in runs {
                model.encodeTopK(
                    normalized: x.baseAddress!, rows: test.n, k: test.k, threads: threads, workspace: workspace, into: codes,
                    auxSubset: dead.isEmpty ? nil : dead, auxK: test.auxK, auxInto: auxCodes)
            }
        }
        #expect(codes.indices.array == split.indices.array && codes.values.array == split.values.array)
        #expect(auxCodes.indices.array == splitAux.indices.array && auxCodes.values.array == splitAux.values.array)
        if hasInt8 {
            #expect(int8.indices.array == int8Split.indices.array && int8.values.array == int8Split.values.array)
            #expect(int8Aux.indices.array == int8SplitAux.indices.array && int8Aux.values.array == int8SplitAux.values.array)
        }
        // Plain pre-activations, then a sort per row.
        let pre = plainPreactivations(model, x, rows: test.n)
        var paths = [("\(exact)", codes, auxCodes), ("portable", portable, portableAux)]
        if hasInt8 { paths.append(("int8", int8, int8Aux)) }
        for (path, codes, auxCodes) in paths {
            let main = Self.compare("topk", codes: codes, pre: pre, test: test, latents: Array(0..<test.m), k: test.k)
            print("\(test) \(path): top k max |Δ| = \(main.worst), rows with another set \(main.mismatched)")
            #expect(main.worst <= 1e-4, "\(path)")
            #expect(main.mismatched == 0, "\(path)")
            if !dead.isEmpty {
                let aux = Self.compare("aux", codes: auxCodes, pre: pre, test: test, latents: dead.map { Int($0) }, k: test.auxK)
                print("\(test) \(path): AuxK max |Δ| = \(aux.worst), rows with another set \(aux.mismatched)")
                #expect(aux.worst <= 1e-4, "\(path)")
                #expect(aux.mismatched == 0, "\(path)")
            }
        }
    }

    static let gradientCases = [
        Case(n: 600, d: 48, m: 300, k: 6, dead: 40, auxK: 24),
        Case(n: 37, d: 13, m: 99, k: 5, dead: 7, auxK: 6),
        Case(n: 64, d: 32, m: 128, k: 4, dead: 0, auxK: 0),
    ]

    /// The trainer's gradients against the same backward written densely (m-wide codes), in
    /// Float64, from the trainer's own codes.
    @Test(arguments: gradientCases)
    func sparseBackwardMatchesDenseBackward(_ test: Case) {
        let (n, d, m) = (test.n, test.d, test.m)
        let model = Self.model(test, seed: UInt64(test.m + 1))
        let training = TrainingConfig(
            learningRate: 1e-3, batchTokens: n, totalTokens: 100 * n, auxKCoefficient: 1.0 / 32, auxK: test.auxK, deadTokens: 1000,
            warmupSteps: 1)
        let trainer = SAETrainer(model: model, training: training, threads: 2)
        let dead = (0..<test.dead).map { ($0 * 7 + 3) % m }
        for i in dead { trainer.tokensSinceFired[i] = 5000 }
        let x = Self.rows(test, seed: UInt64(n + 1))
        trainer.load(normalized: x, rows: n)
        _ = trainer.computeGradients(rows: n)

        let z = trainer.codes.dense(latents: m).map(Double.init)
        let zAux = test.dead > 0 ? trainer.auxCodes.dense(latents: m).map(Double.init) : [Double](repeating: 0, count: n * m)
        let wEnc = model.encoderWeight.array.map(Double.init), wDec = model.decoderWeight.array.map(Double.init)
        let bDec = model.decoderBias.array.map(Double.init)
        let xd = x.map(Double.init)
        var mean = [Double](repeating: 0, count: d)
        for r in 0..<n { for c in 0..<d { mean[c] += xd[r * d + c] / Double(n) } }
        var variance = 0.0
        for r in 0..<n { for c in 0..<d { variance += (xd[r * d + c] - mean[c]) * (xd[r * d + c] - mean[c]) } }
        let auxScale = test.dead > 0 ? min(Double(dead.count) / Double(test.auxK), 1) : 0
        // ∂L/∂x̂ and ∂L/∂ê per row.
        var g = [Double](repeating: 0, count: n * d), ga = [Double](repeating: 0, count: n * d)
        for r in 0..<n {
            for c in 0..<d {
                var xhat = bDec[c], ehat = 0.0
                for i in 0..<m {
                    xhat += z[r * m + i] * wDec[i * d + c]
                    ehat += zAux[r * m + i] * wDec[i * d + c]
                }
                let e = xd[r * d + c] - xhat
                g[r * d + c] = -2 * e / variance
                ga[r * d + c] = 2 * training.auxKCoefficient * auxScale * (ehat - e) / variance
            }
        }
        var gDec = [Double](repeating: 0, count: m * d), gEnc = [Double](repeating: 0, count: m * d)
        var gBEnc = [Double](repeating: 0, count: m), gBDec = [Double](repeating: 0, count: d)
        for r in 0..<n {
            for c in 0..<d { gBDec[c] += g[r * d + c] }
            for i in 0..<m where z[r * m + i] > 0 || zAux[r * m + i] > 0 {
                var dpre = 0.0
                for c in 0..<d {
                    gDec[i * d + c] += z[r * m + i] * g[r * d + c] + zAux[r * m + i] * ga[r * d + c]
                    if z[r * m + i] > 0 { dpre += wDec[i * d + c] * g[r * d + c] }
                    if zAux[r * m + i] > 0 { dpre += wDec[i * d + c] * ga[r * d + c] }
                }
                gBEnc[i] += dpre
                for c in 0..<d { gEnc[i * d + c] += dpre * (xd[r * d + c] - bDec[c]) }
            }
        }
        for i in 0..<m { for c in 0..<d { gBDec[c] -= gBEnc[i] * wEnc[i * d + c] } }

        for (name, ours, expected) in [
            ("W_enc", trainer.gradEncoderWeight.array, gEnc), ("b_enc", trainer.gradEncoderBias.array, gBEnc),
            ("W_dec", trainer.gradDecoderWeight.array, gDec), ("b_dec", trainer.gradDecoderBias.array, gBDec),
        ] {
            let worst = zip(ours, expected).map { abs(Double($0) - $1) }.max() ?? 0
            let scale = expected.map { abs($0) }.max() ?? 0
            print("\(test): \(name) max |Δ| = \(worst) (largest gradient \(scale))")
            #expect(worst <= 1e-4 * max(scale, 1e-6), "\(name)")
        }
    }
}
