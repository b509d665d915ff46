import CKernels

/// BERT (and MiniLM, which is a small BERT): absolute positions, post-LayerNorm blocks, GELU.
///
/// Per block, with x the residual stream [rows, d]:
///   a = Attention(x) Wₒ + bₒ                  → hook_attn_out
///   x = LayerNorm(a + x)                      (in the GEMM, per block of rows, unless a is spliced)
///   h = GELU(x Wᵢ + bᵢ)                       → mlp.hook_post [rows, m] (GELU fused into the GEMM)
///   f = h Wₒ₂ + bₒ₂                           → hook_mlp_out
///   x = LayerNorm(f + x)                      → hook_resid_post (in the GEMM, likewise)
/// The last block's x is the final hidden state (transformers' `last_hidden_state`).
final class BertModel: ForwardModel {
    private struct Block {
        let qkv: Linear, attentionOutput: Linear, attentionNorm: LayerNorm
        let intermediate: Linear, output: Linear, outputNorm: LayerNorm
    }

    let config: BertConfig
    private let wordEmbeddings, positionEmbeddings, tokenTypeEmbeddings: FloatBuffer
    private let embeddingNorm: LayerNorm
    private let blocks: [Block]
    private let attention: Attention
    /// An encoder: no language-model head.
    let head: Linear? = nil

    init(config: BertConfig, weights: WeightStore) throws {
        self.config = config
        let d = config.hidden, m = config.intermediate, eps = config.layerNormEpsilon
        // BertForMaskedLM and friends nest the encoder under "bert.".
        let p = weights.prefix(probing: "embeddings.word_embeddings.weight", candidates: ["", "bert."])
        wordEmbeddings = try weights.take(p + "embeddings.word_embeddings.weight", [config.vocabularySize, d])
        positionEmbeddings = try weights.take(p + "embeddings.position_embeddings.weight", [config.maxPositions, d])
        tokenTypeEmbeddings = try weights.take(p + "embeddings.token_type_embeddings.weight", [config.typeVocabularySize, d])
        embeddingNorm = try weights.layerNorm(p + "embeddings.LayerNorm", width: d, epsilon: eps)
        blocks = try (0..<config.layers).map { layer in
            let b = "\(p)encoder.layer.\(layer)."
            return Block(
                qkv: try weights.linear(
                    ["query", "key", "value"].map { b + "attention.self." + $0 }, inputs: d, outputs: [d, d, d]),
                attentionOutput: try weights.linear(b + "attention.output.dense", inputs: d, outputs: d),
                attentionNorm: try weights.layerNorm(b + "attention.output.LayerNorm", width: d, epsilon: eps),
                intermediate: try weights.linear(b + "intermediate.dense", inputs: d, outputs: m),
                output: try weights.linear(b + "output.dense", inputs: m, outputs: d),
                outputNorm: try weights.layerNorm(b + "output.LayerNorm", width: d, epsilon: eps))
        }
        attention = Attention(heads: config.heads, kvHeads: config.heads, headDim: d / config.heads, causal: false)
        // Position ids buffer, pooler and pre-training heads are not part of the encoder pass.
        weights.ignore { name in
            name.hasSuffix("embeddings.position_ids") || name.hasPrefix(p + "pooler.") || name.hasPrefix("cls.")
        }
    }

    func forward(_ batch: TokenBatch, capture: inout Capture, workspace: Workspace, threads: Int) {
        let rows = batch.rows, d = config.hidden, m = config.intermediate
        let x = workspace.slot(0, count: rows * d)
        let qkv = workspace.slot(1, count: rows * attention.fusedWidth)
        let context = workspace.slot(2, count: rows * d)
        let sublayer = workspace.slot(3, count: rows * d)
        let hidden = workspace.slot(4, count: rows * m)
        let scratch = workspace.slot(5, count: threads * attention.scratchPerThread(longest: batch.longest))

        // Embeddings: word + position + token type 0, then LayerNorm.
        gatherRows(wordEmbeddings, width: d, indices: batch.tokens, into: x)
        addRows(positionEmbeddings, width: d, indices: batch.positions, into: x)
        ak_add_rows(x, tokenTypeEmbeddings.pointer, rows, d, d)
        embeddingNorm.apply(x, into: x, rows: rows, width: d, threads: threads)

        for (layer, block) in blocks.enumerated() {
            func hook(_ site: HookPoint.Site, _ source: UnsafeMutablePointer<Float>, _ width: Int) -> Bool {
                capture.record(HookPoint(layer: layer, site: site), source, width: width)
            }
            /// sublayer = input Wᵀ + b (hooked at `site`), then x = norm(x + sublayer), fused in
            /// the GEMM unless `site` is spliced: the splice must come before the norm. True
            /// when the pass stops at `site`.
            func outputThenNorm(_ site: HookPoint.Site, _ linear: Linear, _ input: UnsafePointer<Float>, ldx: Int, _ norm: LayerNorm) -> Bool {
                guard capture.splices(HookPoint(layer: layer, site: site)) else {
                    linear.applyResidualNorm(input, rows: rows, ldx: ldx, into: sublayer, ldy: d, residual: x, norm: norm, threads: threads)
                    return hook(site, sublayer, d)
                }
                linear.apply(input, rows: rows, ldx: ldx, into: sublayer, ldy: d, threads: threads)
                if hook(site, sublayer, d) { return true }
                norm.apply(residual: x, adding: sublayer, rows: rows, width: d, threads: threads)
                return false
            }
            if hook(.residPre, x, d) { return }

            block.qkv.apply(x, rows: rows, ldx: d, into: qkv, ldy: attention.fusedWidth, threads: threads)
            attention.apply(qkv: qkv, batch: batch, scratch: scratch, into: context, threads: threads)
            if outputThenNorm(.attnOut, block.attentionOutput, context, ldx: d, block.attentionNorm) { return }

            block.intermediate.apply(x, rows: rows, ldx: d, into: hidden, ldy: m, threads: threads, activation: .geluErf)
            if hook(.mlpPost, hidden, m) { return }
            if outputThenNorm(.mlpOut, block.output, hidden, ldx: m, block.outputNorm) { return }
            if hook(.residPost, x, d) { return }
        }
        capture.recordFinal(x, width: d)
    }
}
