/// A parsed `tokenizer.json`: every section the encoder needs, checked once at load time.
/// The `truncation` and `padding` sections are ignored for encoding, as transformers ignores
/// them for `tokenizer(text)`; only padding's pad id is kept.
struct TokenizerDefinition: Sendable {
    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: Model
    let postProcessor: PostProcessor
    let addedTokens: [AddedToken]
    /// Added tokens matched in the raw text, and those matched after normalization.
    let rawMatcher: AddedTokenMatcher
    let normalizedMatcher: AddedTokenMatcher
    let paddingID: Int32?

    init(jsonData: [UInt8]) throws(TokenizerError) {
        guard let root = try JSONParser.parse(jsonData).object else {
            throw TokenizerError(
                .malformedJSON, "the JSON document is not an object",
                remedy: "pass a tokenizer.json as written by the Hugging Face tokenizers library")
        }
        guard let modelJSON = root.value("model")?.object else {
            throw TokenizerError.invalid("the tokenizer JSON has no \"model\" object")
        }
        model = try Model(json: modelJSON)
        normalizer = try root.value("normalizer").map { value throws(TokenizerError) in
            try Normalizer(json: try value.requireObject("the normalizer section"))
        }
        preTokenizer = try root.value("pre_tokenizer").map { value throws(TokenizerError) in
            try PreTokenizer(json: try value.requireObject("the pre_tokenizer section"))
        }
        postProcessor = try root.value("post_processor").map { value throws(TokenizerError) in
            try PostProcessor(json: try value.requireObject("the post_processor section"))
        } ?? PostProcessor()

        var tokens: [AddedToken] = []
        for item in root.value("added_tokens")?.array ?? [] {
            tokens.append(try AddedToken(json: try item.requireObject("an added_tokens entry")))
        }
        addedTokens = tokens
        // Special tokens first, then the others, as the Rust library builds its automata.
        let ordered = tokens.filter(\.special) + tokens.filter { !$0.special }
        let raw = ordered.filter { !$0.normalized }
        rawMatcher = AddedTokenMatcher(tokens: raw, patterns: raw.map { Array($0.content.unicodeScalars) })
        let normalized = ordered.filter(\.normalized)
        let normalizer = normalizer
        normalizedMatcher = AddedTokenMatcher(
            tokens: normalized,
            patterns: normalized.map { token in
                var text = NormalizedText(scalars: Array(token.content.unicodeScalars), startsAtOriginalStart: true)
                normalizer?.normalize(&text)
                return text.scalars
            })

        if let padding = root.value("padding")?.object, let id = padding.value("pad_id")?.integer,
            id >= 0, id <= Int(Int32.max)
        {
            paddingID = Int32(id)
        } else {
            paddingID = tokens.first { $0.content == "[PAD]" || $0.content == "<pad>" }.map(\.id)
        }
    }
}
