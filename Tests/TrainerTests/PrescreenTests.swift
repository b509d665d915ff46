import Foundation
import Testing

@testable import Trainer

/// The int8 prescreen against a plain sgemm + sort at the bench's shape (d = 384, m = 6144,
/// k = 32), on easy rows (Gaussian, PyTorch's uniform W_enc init) and hard ones (heavy-tailed
/// W_enc, rows with a few large dimensions, which coarsen the int8 grid), with AuxK over dead
/// latents; and on rows with one huge dimension, where the int8 values say almost nothing and
/// every row must be done exactly. The sets must be the sgemm's on at least 99.9% of rows and
/// may differ only at near-ties; the values must be the fp32 values.
@Suite struct PrescreenTests {
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var n = 1536, d = 384, m = 6144, k = 32
        var dead = 0, auxK = 0
        var description: String { name }
    }

    static let cases = [
        Case(name: "gaussian"),
        Case(name: "heavy", dead: 700, auxK: 192),
        Case(name: "outlier", n: 96, dead: 50, auxK: 16),
    ]

    static func data(_ test: Case) -> (SparseAutoencoder, [Float]) {
        var random = SplitMix64(seed: 7)
        let model = SparseAutoencoder(config: DictionaryConfig(architecture: .topk, width: test.d, latents: test.m, k: test.k), random: &random)
        for i in 0..<test.m { model.encoderBias[i] = Float(random.nextNormal() * 0.05) }
        for c in 0..<test.d { model.decoderBias[c] = Float(random.nextNormal() * 0.1) }
        var x = (0..<(test.n * test.d)).map { _ in Float(random.nextNormal()) }
        switch test.name {
        case "heavy":
            // Cubes of normals: a few weights per latent far above the rest.
            for i in 0..<(test.m * test.d) {
                let g = random.nextNormal()
                model.encoderWeight[i] = Float(g * g * g * 0.02)
            }
            for r in 0..<test.n { for c in [3, 77, 200] { x[r * test.d + c] *= 12 } }
        case "outlier":
            for r in 0..<test.n { x[r * test.d + 5] = 1e4 }
        default:
            break
        }
        return (model, x)
    }

    @Test(arguments: cases)
    func prescreenSelectsTheFP32Sets(_ test: Case) throws {
        try #require(EncoderPath.best(exactOnly: false) == .int8Prescreen, "no AVX-512 VNNI here")
        let (model, x) = Self.data(test)
        let dead = (0..<test.dead).map { Int32(($0 * 7 + 3) % test.m) }
        let codes = SparseCodes(), auxCodes = SparseCodes(), exact = SparseCodes(), exactAux = SparseCodes()
        let workspace = EncoderWorkspace(), exactWorkspace = EncoderWorkspace()
        workspace.path = .int8Prescreen
        exactWorkspace.path = .fused
        x.withUnsafeBufferPointer { x in
            for (workspace, codes, auxCodes) in [(workspace, codes, auxCodes), (exactWorkspace, exact, exactAux)] {
                model.encodeTopK(
                    normalized: x.baseAddress!, rows: test.n, k: test.k, threads: 2, workspace: workspace, into: codes,
                    auxSubset: dead.isEmpty ? nil : dead, auxK: test.auxK, auxInto: auxCodes)
            }
        }
        let pre = plainPreactivations(model, x, rows: test.n)

        let stats = workspace.prescreenStats
        let perRow = Double(stats.recomputed) / Double(test.n)
        for (what, codes, exactCodes, latents, k) in [
            ("topk", codes, exact, Array(0..<test.m), test.k), ("aux", auxCodes, exactAux, dead.map { Int($0) }, test.auxK),
        ] where k > 0 {
            var identical = 0, identicalToFused = 0, clearMisses = 0
            var worst: Float = 0
            for r in 0..<test.n {
                let row = latents.map { (latent: $0, value: max(0, pre[r * test.m + $0])) }.sorted { $0.value > $1.value }
                let want = Set(row.prefix(k).filter { $0.value > 0 }.map(\.latent))
                let entries = Int(codes.start[r])..<Int(codes.start[r + 1])
                #expect(entries.count == k)
                let got = Set(entries.filter { codes.values[$0] > 0 }.map { Int(codes.indices[$0]) })
                let fused = Set((Int(exactCodes.start[r])..<Int(exactCodes.start[r + 1])).filter { exactCodes.values[$0] > 0 }.map { Int(exactCodes.indices[$0]) })
                // Values: the chosen latents' own fp32 pre-activations.
                for e in entries where codes.values[e] > 0 {
                    let reference = pre[r * test.m + Int(codes.indices[e])]
                    worst = max(worst, abs(reference - codes.values[e]) / max(1, abs(reference)))
                }
                if got == want { identical += 1 }
                if got == fused { identicalToFused += 1 }
                // A different set is only acceptable at a near-tie of the k-th and (k+1)-th values.
                let cut = k < row.count ? row[k].value : 0
                if got != want, row[k - 1].value > cut + 1e-4 * max(1, abs(cut)) { clearMisses += 1 }
            }
            let agreement = Double(identical) / Double(test.n)
            print(
                "prescreen \(test) \(what): identical sets \(identical)/\(test.n) (\(String(format: "%.4f", agreement))) vs sgemm, "
                    + "\(identicalToFused)/\(test.n) vs the fp32 fused encoder; max relative |Δ| \(worst); "
                    + "recomputed \(String(format: "%.1f", perRow)) values per row, rows done in full \(stats.fullRows)")
            #expect(agreement >= 0.999, "\(what)")
            #expect(clearMisses == 0, "\(what)")
            #expect(worst <= 1e-4, "\(what)")
        }
        switch test.name {
        case "outlier":
            // The int8 grid is useless here, so the rows must have gone the exact way.
            #expect(stats.fullRows == UInt64(test.n))
        case "gaussian":
            // The prescreen must actually screen: a few times k values recomputed per row.
            #expect(stats.fullRows == 0)
            #expect(perRow < Double(8 * test.k))
        default:
            // Heavy tails widen the bounds; rows may go the exact way, but the result is checked above.
            break
        }
    }
}
