/// One piece of normalized text on its way to the model: a word, or a stretch that a later
/// pre-tokenizer may split further.
struct PreToken {
    var scalars: [Unicode.Scalar]
    /// Whether the piece begins at offset 0 of the original text (see `NormalizedText`).
    var atOriginalStart: Bool
}

/// What happens to the delimiters a pre-tokenizer finds (`SplitDelimiterBehavior` in Rust).
/// For `the-final--countdown` split on `-`:
/// removed `the|final|countdown`, isolated `the|-|final|-|-|countdown`,
/// mergedWithPrevious `the-|final-|-|countdown`, mergedWithNext `the|-final|-|-countdown`,
/// contiguous `the|-|final|--|countdown`.
enum SplitBehavior: Sendable {
    case removed, isolated, mergedWithPrevious, mergedWithNext, contiguous

    init(name: String, in component: String) throws(TokenizerError) {
        switch name {
        case "Removed": self = .removed
        case "Isolated": self = .isolated
        case "MergedWithPrevious": self = .mergedWithPrevious
        case "MergedWithNext": self = .mergedWithNext
        case "Contiguous": self = .contiguous
        default:
            throw TokenizerError.invalid("\(component) has an unknown split behavior \"\(name)\"")
        }
    }
}

/// What a `Split` pre-tokenizer searches for.
enum SplitPattern: Sendable {
    case literal([Unicode.Scalar])
    case gpt2
    case llama3(maximumDigits: Int)

    func matches(in scalars: [Unicode.Scalar]) -> [Range<Int>] {
        switch self {
        case .literal(let pattern): Self.occurrences(of: pattern, in: scalars)
        case .gpt2: RegexScanners.gpt2(scalars)
        case .llama3(let maximumDigits): RegexScanners.llama3(scalars, maximumDigits: maximumDigits)
        }
    }

    /// Non-overlapping occurrences, leftmost first (an empty pattern matches nothing).
    static func occurrences(of pattern: [Unicode.Scalar], in scalars: [Unicode.Scalar]) -> [Range<Int>] {
        guard !pattern.isEmpty, scalars.count >= pattern.count else { return [] }
        var matches: [Range<Int>] = []
        var index = 0
        while index + pattern.count <= scalars.count {
            if scalars[index] == pattern[0], scalars[index..<(index + pattern.count)].elementsEqual(pattern) {
                matches.append(index..<(index + pattern.count))
                index += pattern.count
            } else {
                index += 1
            }
        }
        return matches
    }
}

/// Metaspace's `prepend_scheme`.
enum PrependScheme: Sendable {
    case always, first, never
}

/// The `pre_tokenizer` section: splits normalized text into the words the model sees.
indirect enum PreTokenizer: Sendable {
    case bert
    case whitespace
    case whitespaceSplit
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(SplitPattern, behavior: SplitBehavior, invert: Bool)
    case metaspace(replacement: Unicode.Scalar, prependScheme: PrependScheme, split: Bool)
    case digits(individually: Bool)
    case punctuation(SplitBehavior)
    case characterDelimiter(Unicode.Scalar)
    case sequence([PreTokenizer])

    static let supportedTypes =
        "pre-tokenizers BertPreTokenizer, Whitespace, WhitespaceSplit, ByteLevel, Split (string patterns and the GPT-2 and Llama-3 regexes), Metaspace, Digits, Punctuation, CharDelimiterSplit and Sequence"

    init(json: JSONObject) throws(TokenizerError) {
        guard let type = json.typeName else {
            throw TokenizerError.invalid("a pre-tokenizer has no \"type\" field")
        }
        let component = "pre-tokenizer \"\(type)\""
        switch type {
        case "BertPreTokenizer": self = .bert
        case "Whitespace": self = .whitespace
        case "WhitespaceSplit": self = .whitespaceSplit
        case "ByteLevel":
            self = .byteLevel(
                addPrefixSpace: try json.bool("add_prefix_space", default: true, in: component),
                useRegex: try json.bool("use_regex", default: true, in: component))
        case "Split":
            let spec = try PatternSpec(json: try json.object("pattern", in: component), in: component)
            let pattern: SplitPattern
            if let literal = spec.literal {
                pattern = .literal(literal)
            } else if spec.source == RegexScanners.gpt2Pattern {
                pattern = .gpt2
            } else if spec.source == RegexScanners.llama3Pattern {
                pattern = .llama3(maximumDigits: 3)
            } else if spec.source == RegexScanners.llama3SingleDigitPattern {
                pattern = .llama3(maximumDigits: 1)
            } else {
                throw TokenizerError.unsupported(
                    "Split pre-tokenizer regex \"\(spec.source)\"",
                    supported: "Split with string patterns, the GPT-2 regex and the Llama-3 regex (hand-written scanners in RegexScanners.swift)")
            }
            self = .split(
                pattern, behavior: try SplitBehavior(name: try json.string("behavior", in: component), in: component),
                invert: try json.bool("invert", default: false, in: component))
        case "Metaspace":
            let replacement = try json.character("replacement", default: "▁", in: component)
            // Older files have only add_prefix_space; false there means never.
            let addPrefixSpace = try json.optionalBool("add_prefix_space", in: component)
            let scheme: PrependScheme
            switch try json.optionalString("prepend_scheme", in: component) {
            case nil: scheme = addPrefixSpace == false ? .never : .always
            case "always": scheme = addPrefixSpace == false ? .never : .always
            case "first": scheme = .first
            case "never": scheme = .never
            case let other?:
                throw TokenizerError.invalid("\(component) has an unknown prepend_scheme \"\(other)\"")
            }
            self = .metaspace(
                replacement: replacement, prependScheme: scheme, split: try json.bool("split", default: true, in: component))
        case "Digits":
            self = .digits(individually: try json.bool("individual_digits", default: false, in: component))
        case "Punctuation":
            let behavior = try json.optionalString("behavior", in: component) ?? "Isolated"
            self = .punctuation(try SplitBehavior(name: behavior, in: component))
        case "CharDelimiterSplit":
            self = .characterDelimiter(try json.character("delimiter", default: " ", in: component))
        case "Sequence":
            var steps: [PreTokenizer] = []
            for item in try json.array("pretokenizers", in: component) {
                steps.append(try PreTokenizer(json: try item.requireObject("an entry of a Sequence pre-tokenizer")))
            }
            self = .sequence(steps)
        default:
            throw TokenizerError.unsupported("pre-tokenizer type \"\(type)\"", supported: Self.supportedTypes)
        }
    }

    /// Splits every piece; pieces that end up empty are dropped, as in the Rust library.
    func preTokenize(_ pieces: [PreToken]) -> [PreToken] {
        if case .sequence(let steps) = self {
            var current = pieces
            for step in steps { current = step.preTokenize(current) }
            return current
        }
        var output: [PreToken] = []
        output.reserveCapacity(pieces.count * 2)
        for piece in pieces { split(piece, into: &output) }
        return output
    }

    private func split(_ piece: PreToken, into output: inout [PreToken]) {
        switch self {
        case .bert:
            // Whitespace removed, then each punctuation character isolated.
            Self.splitCharacters(piece, into: &output) { scalar in
                scalar.isWhiteSpace ? .drop : scalar.isBertPunctuation ? .isolate : .keep
            }
        case .whitespaceSplit:
            Self.splitCharacters(piece, into: &output) { $0.isWhiteSpace ? .drop : .keep }
        case .whitespace:
            for range in RegexScanners.wordsAndSymbols(piece.scalars) {
                Self.emit(piece, range, into: &output)
            }
        case .characterDelimiter(let delimiter):
            Self.splitCharacters(piece, into: &output) { $0 == delimiter ? .drop : .keep }
        case .byteLevel(let addPrefixSpace, let useRegex):
            var text = piece
            if addPrefixSpace, let first = text.scalars.first, first != " " {
                text.scalars.insert(" ", at: 0)
            }
            var words: [PreToken] = []
            if useRegex {
                Self.apply(matches: RegexScanners.gpt2(text.scalars), behavior: .isolated, invert: false, to: text, into: &words)
            } else if !text.scalars.isEmpty {
                words.append(text)
            }
            for word in words {
                output.append(PreToken(scalars: ByteLevelAlphabet.map(word.scalars), atOriginalStart: word.atOriginalStart))
            }
        case .split(let pattern, let behavior, let invert):
            Self.apply(matches: pattern.matches(in: piece.scalars), behavior: behavior, invert: invert, to: piece, into: &output)
        case .metaspace(let replacement, let prependScheme, let split):
            var text = piece
            for index in text.scalars.indices where text.scalars[index] == " " {
                text.scalars[index] = replacement
            }
            let prepend: Bool
            switch prependScheme {
            case .always: prepend = text.scalars.first != replacement
            case .first: prepend = text.scalars.first != replacement && text.atOriginalStart
            case .never: prepend = false
            }
            if prepend && !text.scalars.isEmpty { text.scalars.insert(replacement, at: 0) }
            if split {
                let matches = text.scalars.indices.filter { text.scalars[$0] == replacement }.map { $0..<($0 + 1) }
                Self.apply(matches: matches, behavior: .mergedWithNext, invert: false, to: text, into: &output)
            } else if !text.scalars.isEmpty {
                output.append(text)
            }
        case .digits(let individually):
            let matches = piece.scalars.indices.filter { piece.scalars[$0].isNumeric }.map { $0..<($0 + 1) }
            Self.apply(
                matches: matches, behavior: individually ? .isolated : .contiguous, invert: false, to: piece, into: &output)
        case .punctuation(let behavior):
            let matches = piece.scalars.indices.filter { piece.scalars[$0].isBertPunctuation }.map { $0..<($0 + 1) }
            Self.apply(matches: matches, behavior: behavior, invert: false, to: piece, into: &output)
        case .sequence(let steps):
            var current = [piece]
            for step in steps { current = step.preTokenize(current) }
            output.append(contentsOf: current)
        }
    }

    private enum CharacterRole {
        case keep, drop, isolate
    }

    /// The common per-character split (drop the delimiter or make it a piece of its own) in one
    /// pass, without building the match list.
    private static func splitCharacters(
        _ piece: PreToken, into output: inout [PreToken], role: (Unicode.Scalar) -> CharacterRole
    ) {
        let scalars = piece.scalars
        var start = 0
        for index in scalars.indices {
            switch role(scalars[index]) {
            case .keep:
                continue
            case .drop:
                if start < index { emit(piece, start..<index, into: &output) }
                start = index + 1
            case .isolate:
                if start < index { emit(piece, start..<index, into: &output) }
                emit(piece, index..<(index + 1), into: &output)
                start = index + 1
            }
        }
        if start < scalars.count { emit(piece, start..<scalars.count, into: &output) }
    }

    @inline(__always)
    private static func emit(_ piece: PreToken, _ range: Range<Int>, into output: inout [PreToken]) {
        guard !range.isEmpty else { return }
        if range.count == piece.scalars.count {
            output.append(piece)
        } else {
            output.append(
                PreToken(scalars: Array(piece.scalars[range]), atOriginalStart: piece.atOriginalStart && range.lowerBound == 0))
        }
    }

    /// `NormalizedString::split`: the matches and the gaps between them cover the piece; the
    /// behavior decides which become pieces of their own and which are joined or dropped.
    static func apply(
        matches: [Range<Int>], behavior: SplitBehavior, invert: Bool, to piece: PreToken, into output: inout [PreToken]
    ) {
        let count = piece.scalars.count
        guard count > 0 else { return }
        if behavior == .isolated {
            // Matches and the gaps between them, in order: no bookkeeping needed.
            var previousEnd = 0
            for match in matches {
                if previousEnd < match.lowerBound { emit(piece, previousEnd..<match.lowerBound, into: &output) }
                emit(piece, match, into: &output)
                previousEnd = match.upperBound
            }
            if previousEnd < count { emit(piece, previousEnd..<count, into: &output) }
            return
        }
        // (range, isMatch) covering the whole piece.
        var segments: [(range: Range<Int>, isMatch: Bool)] = []
        segments.reserveCapacity(matches.count * 2 + 1)
        var previousEnd = 0
        for match in matches {
            if previousEnd < match.lowerBound { segments.append((previousEnd..<match.lowerBound, invert)) }
            segments.append((match, !invert))
            previousEnd = match.upperBound
        }
        if previousEnd < count { segments.append((previousEnd..<count, invert)) }

        var kept: [Range<Int>] = []
        kept.reserveCapacity(segments.count)
        switch behavior {
        case .isolated:
            kept = segments.map(\.range)
        case .removed:
            kept = segments.filter { !$0.isMatch }.map(\.range)
        case .contiguous:
            var previousWasMatch = false
            for segment in segments {
                if segment.isMatch == previousWasMatch, let last = kept.last {
                    kept[kept.count - 1] = last.lowerBound..<segment.range.upperBound
                } else {
                    kept.append(segment.range)
                }
                previousWasMatch = segment.isMatch
            }
        case .mergedWithPrevious:
            var previousWasMatch = false
            for segment in segments {
                if segment.isMatch && !previousWasMatch, let last = kept.last {
                    kept[kept.count - 1] = last.lowerBound..<segment.range.upperBound
                } else {
                    kept.append(segment.range)
                }
                previousWasMatch = segment.isMatch
            }
        case .mergedWithNext:
            var previousWasMatch = false
            for segment in segments.reversed() {
                if segment.isMatch && !previousWasMatch, let last = kept.last {
                    kept[kept.count - 1] = segment.range.lowerBound..<last.upperBound
                } else {
                    kept.append(segment.range)
                }
                previousWasMatch = segment.isMatch
            }
            kept.reverse()
        }
        for range in kept { emit(piece, range, into: &output) }
    }
}
