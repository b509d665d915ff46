import Foundation
import Testing

@testable import Trainer

/// The sparse forward and backward against a plain dense reference in Float64: the loss is
/// written the obvious way (dense m-wide codes) and differentiated by central differences.
struct DenseReference {
    let arch: Architecture
    let n: Int, d: Int, m: Int, k: Int
    let x: [Double]
    let dead: Set<Int>
    let auxK: Int
    let alpha: Double
    let lambda: Double

    struct Parameters {
        var wEnc: [Double], bEnc: [Double], wDec: [Double], bDec: [Double]
    }

    func pre(_ p: Parameters) -> [Double] {
        var out = [Double](repeating: 0, count: n * m)
        for r in 0..<n {
            for i in 0..<m {
                var s = p.bEnc[i]
                for c in 0..<d { s += p.wEnc[i * d + c] * (x[r * d + c] - p.bDec[c]) }
                out[r * m + i] = max(0, s)
            }
        }
        return out
    }

    /// Dense codes [n, m] under the training semantics.
    func codes(_ pre: [Double]) -> [Double] {
        var z = [Double](repeating: 0, count: n * m)
        switch arch {
        case .topk:
            for r in 0..<n {
                let order = (0..<m).sorted { pre[r * m + $0] > pre[r * m + $1] }
                for i in order.prefix(k) { z[r * m + i] = pre[r * m + i] }
            }
        case .batchtopk:
            let order = (0..<(n * m)).filter { pre[$0] > 0 }.sorted { pre[$0] > pre[$1] }
            for j in order.prefix(n * k) { z[j] = pre[j] }
        case .relu:
            z = pre
        }
        return z
    }

    func decode(_ z: [Double], _ p: Parameters, bias: Bool) -> [Double] {
        var out = [Double](repeating: 0, count: n * d)
        for r in 0..<n {
            for c in 0..<d { out[r * d + c] = bias ? p.bDec[c] : 0 }
            for i in 0..<m where z[r * m + i] != 0 {
                for c in 0..<d { out[r * d + c] += z[r * m + i] * p.wDec[i * d + c] }
            }
        }
        return out
    }

    var totalVariance: Double {
        var total = 0.0
        for c in 0..<d {
            let mean = (0..<n).reduce(0.0) { $0 + x[$1 * d + c] } / Double(n)
            for r in 0..<n { total += (x[r * d + c] - mean) * (x[r * d + c] - mean) }
        }
        return total
    }

    /// Total loss; `residual` is the AuxK target E held constant (detached).
    func loss(_ p: Parameters, residual: [Double]) -> Double {
        let a = pre(p)
        let z = codes(a)
        let xhat = decode(z, p, bias: true)
        var sse = 0.0
        for j in 0..<(n * d) { sse += (x[j] - xhat[j]) * (x[j] - xhat[j]) }
        if arch == .relu {
            var l1 = 0.0
            for i in 0..<m {
                let norm = (0..<d).reduce(0.0) { $0 + p.wDec[i * d + $1] * p.wDec[i * d + $1] }.squareRoot()
                for r in 0..<n { l1 += z[r * m + i] * norm }
            }
            return sse / Double(n) + lambda * l1 / Double(n)
        }
        var total = sse / totalVariance
        if !dead.isEmpty {
            let kAux = min(auxK, dead.count)
            let scale = min(Double(dead.count) / Double(auxK), 1)
            var zAux = [Double](repeating: 0, count: n * m)
            for r in 0..<n {
                let order = dead.sorted().sorted { a[r * m + $0] > a[r * m + $1] }
                for i in order.prefix(kAux) { zAux[r * m + i] = a[r * m + i] }
            }
            let ehat = decode(zAux, p, bias: false)
            var aux = 0.0
            for j in 0..<(n * d) { aux += (ehat[j] - residual[j]) * (ehat[j] - residual[j]) }
            total += alpha * scale * aux / totalVariance
        }
        return total
    }

    func residual(_ p: Parameters) -> [Double] {
        let xhat = decode(codes(pre(p)), p, bias: true)
        return (0..<(n * d)).map { x[$0] - xhat[$0] }
    }
}

@Suite struct GradientTests {
    struct Case: CustomStringConvertible, Sendable {
        var arch: Architecture
        var n: Int, d: Int, m: Int, k: Int
        var deadCount: Int
        var description: String { "\(arch) n=\(n) d=\(d) m=\(m) k=\(k) dead=\(deadCount)" }
    }

    static let cases: [Case] = [
        Case(arch: .topk, n: 8, d: 16, m: 64, k: 4, deadCount: 0),
        Case(arch: .topk, n: 7, d: 13, m: 37, k: 5, deadCount: 0),
        Case(arch: .topk, n: 8, d: 16, m: 64, k: 4, deadCount: 20),
        Case(arch: .topk, n: 7, d: 13, m: 37, k: 5, deadCount: 3),
        Case(arch: .batchtopk, n: 8, d: 16, m: 64, k: 4, deadCount: 10),
        Case(arch: .batchtopk, n: 7, d: 13, m: 37, k: 3, deadCount: 0),
        Case(arch: .relu, n: 8, d: 16, m: 64, k: 0, deadCount: 0),
        Case(arch: .relu, n: 7, d: 13, m: 37, k: 0, deadCount: 0),
    ]

    @Test(arguments: cases)
    func sparseKernelsMatchDenseReference(_ test: Case) throws {
        var random = SplitMix64(seed: UInt64(test.n * 1000 + test.m))
        let config = DictionaryConfig(architecture: test.arch, width: test.d, latents: test.m, k: test.k)
        let model = SparseAutoencoder(config: config, random: &random)
        for i in 0..<test.m { model.encoderBias[i] = Float(random.nextNormal() * 0.05) }
        for c in 0..<test.d { model.decoderBias[c] = Float(random.nextNormal() * 0.1) }
        if test.arch == .relu {  // decoder norms away from 1 so the L1 weighting matters
            for i in 0..<(test.m * test.d) { model.decoderWeight[i] *= Float(1 + 0.5 * random.nextUnit()) }
        }
        let training = TrainingConfig(
            learningRate: 1e-3, batchTokens: test.n, totalTokens: 100 * test.n, auxKCoefficient: 1.0 / 32, auxK: test.d / 2,
            deadTokens: 1000, l1Coefficient: 0.3, warmupSteps: 1)
        let trainer = SAETrainer(model: model, training: training, threads: 2)
        let dead = Set((0..<test.deadCount).map { ($0 * 7 + 3) % test.m })
        for i in dead { trainer.tokensSinceFired[i] = 5000 }
        let x = (0..<(test.n * test.d)).map { _ in Float(random.nextNormal()) }
        trainer.load(normalized: x, rows: test.n)
        let result = trainer.computeGradients(rows: test.n)

        let reference = DenseReference(
            arch: test.arch, n: test.n, d: test.d, m: test.m, k: test.k, x: x.map(Double.init), dead: dead, auxK: test.d / 2,
            alpha: 1.0 / 32, lambda: 0.3)
        var p = DenseReference.Parameters(
            wEnc: model.encoderWeight.array.map(Double.init), bEnc: model.encoderBias.array.map(Double.init),
            wDec: model.decoderWeight.array.map(Double.init), bDec: model.decoderBias.array.map(Double.init))
        let residual = reference.residual(p)

        // Forward: codes and loss.
        let denseCodes = reference.codes(reference.pre(p))
        let ours = trainer.codes.dense(latents: test.m)
        let codeError = zip(ours, denseCodes).map { abs(Double($0) - $1) }.max() ?? 0
        let referenceLoss = reference.loss(p, residual: residual)
        print("\(test): max |z − z_ref| = \(codeError), loss \(result.loss) vs \(referenceLoss)")
        #expect(codeError < 1e-4)
        #expect(abs(result.loss - referenceLoss) <= 1e-4 * max(1, abs(referenceLoss)))

        // Every gradient against central differences of the reference loss.
        func check(_ name: String, _ ours: [Float], _ keyPath: WritableKeyPath<DenseReference.Parameters, [Double]>) {
            var worst = 0.0, scale = 0.0
            for i in 0..<ours.count {
                let saved = p[keyPath: keyPath][i]
                let h = 1e-6
                p[keyPath: keyPath][i] = saved + h
                let plus = reference.loss(p, residual: residual)
                p[keyPath: keyPath][i] = saved - h
                let minus = reference.loss(p, residual: residual)
                p[keyPath: keyPath][i] = saved
                let numeric = (plus - minus) / (2 * h)
                worst = max(worst, abs(numeric - Double(ours[i])))
                scale = max(scale, abs(numeric))
            }
            print("\(test): \(name) max abs diff \(worst) (largest gradient \(scale))")
            #expect(worst <= 2e-3 * max(scale, 1e-3), "\(name)")
        }
        check("W_enc", trainer.gradEncoderWeight.array, \.wEnc)
        check("b_enc", trainer.gradEncoderBias.array, \.bEnc)
        check("W_dec", trainer.gradDecoderWeight.array, \.wDec)
        check("b_dec", trainer.gradDecoderBias.array, \.bDec)
    }

    @Test func batchTopKKeepsExactlyTheBudget() {
        var random = SplitMix64(seed: 5)
        let rows = 33, m = 97, total = 33 * 4
        let pre = (0..<(rows * m)).map { _ in Float(random.nextNormal()) }
        let codes = SparseCodes()
        let threshold = pre.withUnsafeBufferPointer {
            Selection.batchTopK(pre: $0.baseAddress!, bias: nil, rows: rows, latents: m, total: total, threads: 2, into: codes)
        }
        let sorted = pre.sorted(by: >)
        #expect(codes.entries == total)
        #expect(threshold == sorted[total - 1])
    }
}
