import Foundation
import Testing
import Transformers

/// Replacing a hook's activation during the pass (`Splice`), the final hidden state and the
/// next-token losses, against transformers (Tests/Reference/make_splice_fixtures.py).
@Suite struct Splicing {
    /// Rewrites the activation with the values it already holds.
    static func identity(at point: HookPoint, calls: UnsafeMutablePointer<Int>, width: Int) -> Splice {
        Splice(at: point) { activation, rows in
            #expect(activation.count == rows * width)
            calls.pointee += 1
            let copy = Array(activation)
            _ = activation.update(fromContentsOf: copy)
        }
    }

    @Test(arguments: ["tiny-bert", "tiny-gpt2", "tiny-llama"])
    func identitySpliceLeavesOutputsUnchanged(_ name: String) throws {
        let folder = fixtures.appendingPathComponent(name).path
        let sequences = try Reference(path: folder + "/reference.safetensors").sequences
        let model = try TransformerModel(directory: folder, languageModelHead: true)
        model.threads = 2
        let clean = try model.finalHiddenStates(sequences)
        let cleanLosses = model.config.isCausal ? try model.nextTokenLosses(sequences) : []
        let calls = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        defer { calls.deallocate() }
        for layer in [0, 2] {
            for site in HookPoint.Site.allCases {
                let point = HookPoint(layer: layer, site: site)
                guard (try? model.checkSplice(at: point)) != nil else { continue }
                calls.pointee = 0
                let spliced = try model.finalHiddenStates(sequences, splice: Self.identity(at: point, calls: calls, width: model.width(of: point)))
                #expect(calls.pointee == 1, "\(name) \(point): the splice ran \(calls.pointee) times")
                // Bit for bit: GPT-2's fused sites move the residual by exactly zero.
                #expect(spliced == clean, "\(name) \(point): max |diff| \(maxDifference(spliced, clean))")
                if model.config.isCausal {
                    let losses = try model.nextTokenLosses(sequences, splice: Self.identity(at: point, calls: calls, width: model.width(of: point)))
                    #expect(losses == cleanLosses, "\(name) \(point)")
                }
                // And a real change reaches the output, so the equality above is not vacuous
                // (not a uniform scale or shift, which the final norm would undo).
                let moved = try model.finalHiddenStates(sequences, splice: Splice(at: point) { activation, _ in
                    for i in activation.indices { activation[i] += Float(i % 7) * 0.1 }
                })
                #expect(maxDifference(moved, clean) > 1e-3, "\(name) \(point): changing the activation changed nothing")
            }
        }
    }

    /// Clean and zero-ablated losses need no dictionary: the head and log-softmax against
    /// transformers' cross-entropy, per token.
    @Test(arguments: ["gpt2-resid-pre", "gpt2-attn-out", "llama-resid-post"])
    func lossesMatchTransformers(_ name: String) throws {
        let expected = try Reference(path: fixtures.appendingPathComponent("splice/\(name)/expected.safetensors").path)
        let meta = try JSONSerialization.jsonObject(
            with: Data(contentsOf: fixtures.appendingPathComponent("splice/\(name)/expected.json"))) as! [String: Any]
        let model = try TransformerModel(directory: fixtures.appendingPathComponent(meta["model"] as! String).path, languageModelHead: true)
        model.threads = 2
        let point = try HookPoint(meta["hook"] as! String, layers: model.config.layers)
        let clean = try model.nextTokenLosses(expected.sequences)
        let ablated = try model.nextTokenLosses(expected.sequences, splice: .zeroAblation(at: point))
        for (ours, tensor) in [(clean, "loss.clean"), (ablated, "loss.ablated")] {
            let reference = try expected.file.floats(tensor)
            #expect(ours.count == reference.count)
            let worst = zip(ours, reference).map { abs($0 - $1) / max(1, abs($1)) }.max() ?? 0
            print("\(name) \(tensor): worst relative |diff| \(worst) over \(ours.count) tokens")
            #expect(worst <= 1e-5)
        }
    }

    @Test func splicedValuesAreWhatLaterHooksSee() throws {
        let folder = fixtures.appendingPathComponent("tiny-gpt2").path
        let sequences = try Reference(path: folder + "/reference.safetensors").sequences
        let model = try TransformerModel(directory: folder)
        let hooks = try model.hooks(["blocks.1.hook_attn_out", "blocks.1.hook_resid_post", "blocks.2.hook_resid_pre"])
        let point = hooks.points[0]
        let clean = try model.forward(sequences, hooks: hooks)
        let ablated = try model.forward(sequences, hooks: hooks, splice: .zeroAblation(at: point))
        #expect(ablated[point]!.allSatisfy { $0 == 0 })
        // resid_post = resid_pre + attn_out + mlp_out: removing attn_out moves it.
        #expect(maxDifference(ablated[hooks.points[1]]!, clean[hooks.points[1]]!) > 1e-2)
        #expect(ablated[hooks.points[1]]! == ablated[hooks.points[2]]!)
    }

    /// BERT fuses its residual add and LayerNorm into the sublayer's GEMM; a splice there must
    /// still reach the norm (post-LN, so the change cannot be added afterwards as GPT-2's is).
    @Test(arguments: ["blocks.1.hook_attn_out", "blocks.1.hook_mlp_out"])
    func bertSublayerSplicesReachTheResidual(_ name: String) throws {
        let folder = fixtures.appendingPathComponent("tiny-bert").path
        let sequences = try Reference(path: folder + "/reference.safetensors").sequences
        let model = try TransformerModel(directory: folder)
        let hooks = try model.hooks([name, "blocks.1.hook_resid_post"])
        let point = hooks.points[0], after = hooks.points[1]
        let clean = try model.forward(sequences, hooks: hooks)
        let ablated = try model.forward(sequences, hooks: hooks, splice: .zeroAblation(at: point))
        #expect(ablated[point]!.allSatisfy { $0 == 0 })
        #expect(maxDifference(ablated[after]!, clean[after]!) > 1e-2)
        // The unfused path with nothing changed is the fused one.
        let calls = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        defer { calls.deallocate() }
        calls.pointee = 0
        let same = try model.forward(sequences, hooks: hooks, splice: Self.identity(at: point, calls: calls, width: model.width(of: point)))
        #expect(calls.pointee == 1)
        #expect(maxDifference(same[after]!, clean[after]!) <= 1e-6)
    }

    @Test func unsupportedRequestsAreSentences() throws {
        func message(_ body: () throws -> Void) -> String? {
            do {
                try body()
                return nil
            } catch {
                return "\(error)"
            }
        }
        let bert = try TransformerModel(directory: fixtures.appendingPathComponent("tiny-bert").path)
        #expect(message { try bert.checkSplice(at: HookPoint(layer: 3, site: .residPre)) }?.hasPrefix("unknown hook blocks.3.hook_resid_pre") == true)
        #expect(message { _ = try bert.nextTokenLosses([[2, 3]]) }?.contains("bert is an encoder") == true)
        let llama = try TransformerModel(directory: fixtures.appendingPathComponent("tiny-llama").path)
        #expect(message { _ = try llama.nextTokenLosses([[480, 39]]) }?.contains("loaded without its language-model head") == true)
    }
}
