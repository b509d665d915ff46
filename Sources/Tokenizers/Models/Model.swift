/// The `model` section: turns one pre-tokenized word into ids.
enum Model: Sendable {
    case wordPiece(WordPieceModel)
    case bpe(BPEModel)
    case wordLevel(WordLevelModel)

    static let supportedTypes = "models WordPiece, BPE and WordLevel"

    init(json: JSONObject) throws(TokenizerError) {
        // Old files leave out "type"; serde then recognises the model by its fields.
        let type = json.typeName
            ?? (json["merges"] != nil ? "BPE" : json["max_input_chars_per_word"] != nil ? "WordPiece" : nil)
        switch type {
        case "WordPiece": self = .wordPiece(try WordPieceModel(json: json))
        case "BPE": self = .bpe(try BPEModel(json: json))
        case "WordLevel": self = .wordLevel(try WordLevelModel(json: json))
        case let type?: throw TokenizerError.unsupported("model type \"\(type)\"", supported: Self.supportedTypes)
        case nil: throw TokenizerError.invalid("the model has no \"type\" field")
        }
    }

    var vocabulary: Vocabulary {
        switch self {
        case .wordPiece(let model): model.vocabulary
        case .bpe(let model): model.vocabulary
        case .wordLevel(let model): model.vocabulary
        }
    }

    func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int32]) {
        switch self {
        case .wordPiece(let model): model.tokenize(word, into: &ids)
        case .bpe(let model): model.tokenize(word, into: &ids)
        case .wordLevel(let model): model.tokenize(word, into: &ids)
        }
    }
}
