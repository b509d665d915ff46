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
        // Words are short: their bytes, character boundaries and running hashes live on the stack.
        let found = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: word.count * 4) { bytes in
            withUnsafeTemporaryAllocation(of: Int.self, capacity: word.count + 1) { boundaries in
                withUnsafeTemporaryAllocation(of: UInt64.self, capacity: word.count + 1) { hashes in
                    var length = 0
                    for (index, scalar) in word.enumerated() {
                        boundaries[index] = length
                        length += scalar.encodeUTF8(into: bytes.baseAddress! + length)
                    }
                    boundaries[word.count] = length
                    return greedyLongestMatch(
                        UnsafeBufferPointer(rebasing: bytes[..<length]), boundaries: UnsafeBufferPointer(boundaries),
                        hashes: hashes, characters: word.count, into: &ids)
                }
            }
        }
        if !found { ids.append(unknownID) }
    }

    /// Appends the pieces of the word and returns true, or appends nothing and returns false
    /// when some remainder matches no token.
    private func greedyLongestMatch(
        _ bytes: UnsafeBufferPointer<UInt8>, boundaries: UnsafeBufferPointer<Int>, hashes: UnsafeMutableBufferPointer<UInt64>,
        characters: Int, into ids: inout [Int32]
    ) -> Bool {
        let table = vocabulary.table
        let limit = table.maximumKeyLength
        let firstNew = ids.count
        return continuationPrefix.withUnsafeBufferPointer { prefix in
            let prefixHash = TokenTable.hash(TokenTable.emptyHash, adding: prefix)
            var start = 0
            while start < characters {
                let usesPrefix = start > 0
                let budget = limit - (usesPrefix ? prefix.count : 0)
                // Running hashes of word[start..<end] for every end that fits in the longest token.
                var hash = usesPrefix ? prefixHash : TokenTable.emptyHash
                var end = start
                while end < characters && boundaries[end + 1] - boundaries[start] <= budget {
                    for offset in boundaries[end]..<boundaries[end + 1] { hash = TokenTable.hash(hash, adding: bytes[offset]) }
                    end += 1
                    hashes[end] = hash
                }
                var match: Int32?
                while end > start {
                    let piece = UnsafeBufferPointer(rebasing: bytes[boundaries[start]..<boundaries[end]])
                    match = table.id(hash: hashes[end], prefix: usesPrefix ? prefix : nil, key: piece)
                    if match != nil { break }
                    end -= 1
                }
                guard let match else {
                    ids.removeSubrange(firstNew...)
                    return false
                }
                ids.append(match)
                start = end
            }
            return true
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
