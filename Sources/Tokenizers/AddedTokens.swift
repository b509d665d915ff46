/// One entry of `added_tokens`.
struct AddedToken: Sendable {
    let id: Int32
    let content: String
    let singleWord: Bool
    let leftStrip: Bool
    let rightStrip: Bool
    /// Matched in the normalized text (after the normalizer) rather than in the raw input.
    let normalized: Bool
    let special: Bool

    init(json: JSONObject) throws(TokenizerError) {
        let component = "added token"
        let id = try json.integer("id", in: component)
        guard id >= 0, id <= Int(Int32.max) else { throw TokenizerError.invalid("an added token has the invalid id \(id)") }
        self.id = Int32(id)
        content = try json.string("content", in: component)
        let where_ = "added token \"\(content)\""
        singleWord = try json.bool("single_word", default: false, in: where_)
        leftStrip = try json.bool("lstrip", default: false, in: where_)
        rightStrip = try json.bool("rstrip", default: false, in: where_)
        special = try json.bool("special", default: false, in: where_)
        normalized = try json.bool("normalized", default: !special, in: where_)
    }
}

/// Finds added tokens in text the way the Rust library's `AddedVocabulary` does: an
/// Aho-Corasick search with leftmost-longest matches, then the single_word, lstrip and rstrip
/// rules. One matcher serves the raw text, another the normalized text.
struct AddedTokenMatcher: Sendable {
    /// A trie over scalars: node 0 is the root.
    private var children: [[UInt32: Int32]] = [[:]]
    /// Index into `tokens` of the token ending at each node, or -1.
    private var terminal: [Int32] = [-1]
    private let tokens: [AddedToken]
    /// First scalars of the patterns, to skip most text with one set lookup.
    private var asciiFirst = [Bool](repeating: false, count: 128)
    private var otherFirst: Set<UInt32> = []

    var isEmpty: Bool { tokens.isEmpty }

    /// - Parameter patterns: the scalars to search for each token (its content, or its content
    ///   after normalization for the normalized matcher).
    init(tokens: [AddedToken], patterns: [[Unicode.Scalar]]) {
        self.tokens = tokens
        for (index, pattern) in patterns.enumerated() where !pattern.isEmpty {
            var node = 0
            for scalar in pattern {
                if let next = children[node][scalar.value] {
                    node = Int(next)
                } else {
                    children.append([:])
                    terminal.append(-1)
                    children[node][scalar.value] = Int32(children.count - 1)
                    node = children.count - 1
                }
            }
            // The first token with a given pattern wins, as the first pattern does in Aho-Corasick.
            if terminal[node] < 0 { terminal[node] = Int32(index) }
            let first = pattern[0].value
            if first < 128 { asciiFirst[Int(first)] = true } else { otherFirst.insert(first) }
        }
    }

    /// Splits `text` into added tokens and the stretches between them, covering the whole text.
    func split(_ text: [Unicode.Scalar]) -> [(range: Range<Int>, id: Int32?)] {
        var pieces: [(range: Range<Int>, id: Int32?)] = []
        var pieceStart = 0
        for match in leftmostLongestMatches(text) {
            let token = tokens[match.token]
            var start = match.range.lowerBound
            var end = match.range.upperBound
            if token.singleWord {
                let startsWord = start == 0 || !text[start - 1].isWordCharacter
                let endsWord = end == text.count || !text[end].isWordCharacter
                if !startsWord || !endsWord { continue }
            }
            if token.leftStrip {
                var newStart = start
                while newStart > 0 && text[newStart - 1].isWhiteSpace { newStart -= 1 }
                // Spaces already claimed by the previous match stay with it.
                start = max(newStart, pieceStart)
            }
            if token.rightStrip {
                while end < text.count && text[end].isWhiteSpace { end += 1 }
            }
            if pieceStart < start { pieces.append((pieceStart..<start, nil)) }
            pieces.append((start..<end, token.id))
            pieceStart = end
        }
        if pieceStart < text.count { pieces.append((pieceStart..<text.count, nil)) }
        return pieces
    }

    /// Non-overlapping matches: at the leftmost position where any pattern starts, the longest
    /// pattern there; the search resumes after it.
    private func leftmostLongestMatches(_ text: [Unicode.Scalar]) -> [(range: Range<Int>, token: Int)] {
        var matches: [(range: Range<Int>, token: Int)] = []
        var index = 0
        while index < text.count {
            let first = text[index].value
            let canStart = first < 128 ? asciiFirst[Int(first)] : otherFirst.contains(first)
            guard canStart else {
                index += 1
                continue
            }
            var node = 0
            var position = index
            var best: (end: Int, token: Int)?
            while position < text.count, let next = children[node][text[position].value] {
                node = Int(next)
                position += 1
                if terminal[node] >= 0 { best = (position, Int(terminal[node])) }
            }
            if let best {
                matches.append((index..<best.end, best.token))
                index = best.end
            } else {
                index += 1
            }
        }
        return matches
    }
}
