/// BERT's WordPiece: greedy longest-match-first from the start of the word, continuation pieces
/// spelled with a prefix ("##"); a word with any unmatched remainder, or one longer than
/// `max_input_chars_per_word` characters, becomes a single unknown token.
struct WordPieceModel: Sendable {
    let vocabulary: Vocabulary
    let unknownID: Int32
    let continuationPrefix: [UInt8]
    let maximumCharactersPerWord: Int

    init(json: JSONObject) throws(TokenizerError) {
        let component = "WordPiece model"
        vocabulary = try Vocabulary(json: try json.object("vocab", in: component), in: component)
        let unknown = try json.optionalString("unk_token", in: component) ?? "[UNK]"
        unknownID = try vocabulary.requiredID(unknown, role: "unk_token", in: component)
        continuationPrefix = Array((try json.optionalString("continuing_subword_prefix", in: component) ?? "##").utf8)
        maximumCharactersPerWord = try json.optionalInteger("max_input_chars_per_word", in: component) ?? 100
    }

    func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int32]) {
        // The limit counts characters (scalars), as Rust's `chars().count()` does.
        if word.count > maximumCharactersPerWord {
            ids.append(unknownID)
            return
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(word.count)
        var boundaries: [Int] = []  // byte offset of each scalar, then the end
        boundaries.reserveCapacity(word.count + 1)
        for scalar in word {
            boundaries.append(bytes.count)
            scalar.appendUTF8(to: &bytes)
        }
        boundaries.append(bytes.count)

        let firstNew = ids.count
        let found: Bool = bytes.withUnsafeBufferPointer { buffer in
            var start = 0
            while start < word.count {
                var end = word.count
                var match: Int32?
                while start < end {
                    let piece = UnsafeBufferPointer(rebasing: buffer[boundaries[start]..<boundaries[end]])
                    match = start > 0 ? vocabulary.table.id(prefix: continuationPrefix, piece) : vocabulary.table.id(for: piece)
                    if match != nil { break }
                    end -= 1
                }
                guard let match else { return false }
                ids.append(match)
                start = end
            }
            return true
        }
        if !found {
            ids.removeSubrange(firstNew...)
            ids.append(unknownID)
        }
    }
}

/// WordLevel: the whole word is a token, or it is unknown.
struct WordLevelModel: Sendable {
    let vocabulary: Vocabulary
    let unknownID: Int32?

    init(json: JSONObject) throws(TokenizerError) {
        let component = "WordLevel model"
        vocabulary = try Vocabulary(json: try json.object("vocab", in: component), in: component)
        if let unknown = try json.optionalString("unk_token", in: component) {
            unknownID = try vocabulary.requiredID(unknown, role: "unk_token", in: component)
        } else {
            unknownID = nil
        }
    }

    func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int32]) {
        var bytes: [UInt8] = []
        word.appendUTF8(to: &bytes)
        if let id = vocabulary.table.id(for: bytes) {
            ids.append(id)
        } else if let unknownID {
            ids.append(unknownID)
        }
    }
}
