import Foundation
import SafeTensors
import Testing

@testable import Trainer

/// Gradients against torch autograd (Tests/Reference/make_trainer_fixtures.py).
@Suite struct TorchFixtureTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Reference/fixtures/trainer/gradients.safetensors").path

    static let cases = ["topk_even", "topk_odd", "batchtopk_even", "batchtopk_odd", "relu_even", "relu_odd"]

    @Test(arguments: cases)
    func gradientsMatchTorchAutograd(_ name: String) throws {
        let file = try SafeTensorsFile(path: Self.fixture)
        let shape = try file.integers(name + ".config").map { Int($0) }
        let (n, d, m, k) = (shape[0], shape[1], shape[2], shape[3])
        let arch = Architecture(rawValue: String(name.split(separator: "_")[0]))!
        let model = SparseAutoencoder(config: DictionaryConfig(architecture: arch, width: d, latents: m, k: k))
        model.encoderWeight.copy(from: try file.floats(name + ".W_enc"))
        model.encoderBias.copy(from: try file.floats(name + ".b_enc"))
        model.decoderWeight.copy(from: try file.floats(name + ".W_dec"))
        model.decoderBias.copy(from: try file.floats(name + ".b_dec"))
        let training = TrainingConfig(
            learningRate: 1e-3, batchTokens: n, totalTokens: 10 * n, auxKCoefficient: 1.0 / 32, auxK: d / 2, deadTokens: 1000,
            l1Coefficient: 0.3, warmupSteps: 1)
        let trainer = SAETrainer(model: model, training: training, threads: 2)
        for (i, dead) in try file.integers(name + ".dead").enumerated() where dead == 1 { trainer.tokensSinceFired[i] = 5000 }
        trainer.load(normalized: try file.floats(name + ".x"), rows: n)
        let result = trainer.computeGradients(rows: n)
        let loss = Double(try file.floats(name + ".loss")[0])
        print("\(name): loss \(result.loss) vs torch \(loss)")
        #expect(abs(result.loss - loss) <= 1e-5 * max(1, abs(loss)))
        for (tensor, ours) in [
            ("W_enc", trainer.gradEncoderWeight), ("b_enc", trainer.gradEncoderBias), ("W_dec", trainer.gradDecoderWeight),
            ("b_dec", trainer.gradDecoderBias),
        ] {
            let expected = try file.floats(name + ".grad." + tensor)
            let worst = zip(ours.array, expected).map { abs($0 - $1) }.max() ?? 0
            let scale = expected.map { abs($0) }.max() ?? 0
            print("\(name): grad \(tensor) max |Δ| = \(worst) (max |grad| \(scale))")
            #expect(worst <= 1e-4 * max(scale, 1e-3), "\(name) grad \(tensor)")
        }
    }
}
