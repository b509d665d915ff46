import Foundation

/// A Hugging Face `tokenizer.json`, encoding text to exactly the ids the Rust `tokenizers`
/// library (and transformers' fast tokenizers) produce.
///
/// The pipeline, as in the Rust library:
/// 1. added tokens marked `normalized: false` are cut out of the raw text;
/// 2. each stretch between them is normalized, then added tokens marked `normalized: true`
///    are cut out of the normalized text;
/// 3. the remaining stretches are pre-tokenized into words and each word goes through the model;
/// 4. the post-processor's special tokens go around the result.
///
/// Thread-safe: encode from any number of tasks at once.
public final class Tokenizer: Sendable {
    private let definition: TokenizerDefinition
    /// Added tokens by exact UTF-8 content, for `id(forToken:)`.
    private let addedTokenIDs: [[UInt8]: Int32]
    private let addedTokenContents: [Int32: String]

    /// Loads a `tokenizer.json` file.
    public convenience init(contentsOfFile path: String) throws(TokenizerError) {
        let bytes: [UInt8]
        do {
            bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw TokenizerError(
                .unreadableFile, "cannot read the tokenizer file (\(error.localizedDescription))",
                remedy: "check that the path names an existing, readable tokenizer.json", file: path)
        }
        let definition: TokenizerDefinition
        do {
            definition = try TokenizerDefinition(jsonData: bytes)
        } catch {
            throw error.located(in: path)
        }
        self.init(definition: definition)
    }

    /// Loads a `tokenizer.json` held in memory.
    public convenience init(jsonData: [UInt8]) throws(TokenizerError) {
        self.init(definition: try TokenizerDefinition(jsonData: jsonData))
    }

    private init(definition: TokenizerDefinition) {
        self.definition = definition
        var ids: [[UInt8]: Int32] = [:]
        var contents: [Int32: String] = [:]
        for token in definition.addedTokens {
            ids[Array(token.content.utf8)] = token.id
            contents[token.id] = token.content
        }
        addedTokenIDs = ids
        addedTokenContents = contents
    }

    /// The ids transformers' `tokenizer(text)["input_ids"]` gives, with the post-processor's
    /// special tokens when `addSpecialTokens` is true. Never fails: any string encodes.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        if addSpecialTokens { ids.append(contentsOf: definition.postProcessor.prefix) }

        let scalars = Array(text.unicodeScalars)
        for raw in split(scalars, with: definition.rawMatcher) {
            if let id = raw.id {
                ids.append(id)
                continue
            }
            var normalized = NormalizedText(
                scalars: raw.range.count == scalars.count ? scalars : Array(scalars[raw.range]),
                startsAtOriginalStart: raw.range.lowerBound == 0)
            definition.normalizer?.normalize(&normalized)
            for piece in split(normalized.scalars, with: definition.normalizedMatcher) {
                if let id = piece.id {
                    ids.append(id)
                    continue
                }
                let text = PreToken(
                    scalars: piece.range.count == normalized.scalars.count ? normalized.scalars : Array(normalized.scalars[piece.range]),
                    atOriginalStart: normalized.startsAtOriginalStart && piece.range.lowerBound == 0)
                if let preTokenizer = definition.preTokenizer {
                    for word in preTokenizer.preTokenize([text]) {
                        definition.model.tokenize(word.scalars, into: &ids)
                    }
                } else {
                    definition.model.tokenize(text.scalars, into: &ids)
                }
            }
        }

        if addSpecialTokens { ids.append(contentsOf: definition.postProcessor.suffix) }
        return ids
    }

    /// Added tokens and the text between them; empty text yields nothing.
    private func split(_ scalars: [Unicode.Scalar], with matcher: AddedTokenMatcher) -> [(range: Range<Int>, id: Int32?)] {
        if scalars.isEmpty { return [] }
        if matcher.isEmpty { return [(0..<scalars.count, nil)] }
        return matcher.split(scalars)
    }

    /// The special ids the post-processor puts before a single sequence (BERT: [CLS]).
    public var singleSequencePrefix: [Int32] { definition.postProcessor.prefix }

    /// The special ids the post-processor puts after a single sequence (BERT: [SEP]).
    public var singleSequenceSuffix: [Int32] { definition.postProcessor.suffix }

    /// Highest id + 1, counting the model's vocabulary and the added tokens.
    public var vocabularySize: Int {
        let modelSize = definition.model.vocabulary.tokens.count
        let addedSize = definition.addedTokens.map { Int($0.id) + 1 }.max() ?? 0
        return max(modelSize, addedSize)
    }

    /// The id of a token, spelled as in the vocabulary (byte-level tokens as "Ġhello").
    public func id(forToken token: String) -> Int32? {
        addedTokenIDs[Array(token.utf8)] ?? definition.model.vocabulary.id(token)
    }

    /// The vocabulary spelling of an id, or nil when no token has it.
    public func token(forID id: Int32) -> String? {
        if let content = addedTokenContents[id] { return content }
        let tokens = definition.model.vocabulary.tokens
        guard id >= 0, Int(id) < tokens.count else { return nil }
        return tokens[Int(id)]
    }

    /// The padding id: the `padding` section's pad_id, else a `[PAD]` or `<pad>` added token.
    public var paddingID: Int32? { definition.paddingID }

    /// Ids of the added tokens marked special.
    public var specialTokenIDs: Set<Int32> { Set(definition.addedTokens.filter(\.special).map(\.id)) }
}
