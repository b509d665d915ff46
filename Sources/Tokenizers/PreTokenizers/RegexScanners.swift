/// Hand-written equivalents of the split regexes that real tokenizers use. A general regex engine
/// is far too slow for the hot path; these walk the scalars once and reproduce Oniguruma's
/// leftmost-first alternation, greedy runs and backtracking exactly. Each returns the match
/// ranges in order; every scalar of the input falls in exactly one match.
enum RegexScanners {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`, the GPT-2
    /// pattern the ByteLevel pre-tokenizer uses.
    static let gpt2Pattern =
        #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    /// The Llama-3 (cl100k-style) pattern; `\p{N}{1,3}` groups digits by three.
    static let llama3Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The same pattern with single digits (`\p{N}`), as Qwen2 writes it.
    static let llama3SingleDigitPattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// Per-scalar classes, computed once so each scanner tests small integers.
    private enum Class: UInt8 {
        case letter, number, whitespace, other
    }

    private static func classify(_ scalars: [Unicode.Scalar]) -> [Class] {
        scalars.map { scalar in
            if scalar.isLetter { return .letter }
            if scalar.isNumber { return .number }
            if scalar.isWhiteSpace { return .whitespace }
            return .other
        }
    }

    private static func runEnd(_ classes: [Class], from start: Int, _ kind: Class) -> Int {
        var end = start
        while end < classes.count && classes[end] == kind { end += 1 }
        return end
    }

    /// `\s+(?!\S)|\s+` at a whitespace scalar: the whole run when it reaches the end of the text,
    /// else the run minus its last scalar (which then leads the next word), else one scalar.
    private static func whitespaceMatchEnd(_ classes: [Class], from start: Int) -> Int {
        let end = runEnd(classes, from: start, .whitespace)
        if end == classes.count { return end }
        return end - start >= 2 ? end - 1 : end
    }

    static func gpt2(_ text: [Unicode.Scalar]) -> [Range<Int>] {
        let classes = classify(text)
        let count = text.count
        var matches: [Range<Int>] = []
        matches.reserveCapacity(count / 4 + 1)
        var index = 0
        while index < count {
            let start = index
            let scalar = text[index]
            if scalar == "'", index + 1 < count {
                let next = text[index + 1]
                if next == "s" || next == "t" || next == "m" || next == "d" {
                    matches.append(start..<(start + 2))
                    index += 2
                    continue
                }
                if index + 2 < count {
                    let third = text[index + 2]
                    if (next == "r" && third == "e") || (next == "v" && third == "e") || (next == "l" && third == "l") {
                        matches.append(start..<(start + 3))
                        index += 3
                        continue
                    }
                }
            }
            // ` ?X+`: only a plain space can be the optional prefix, and a space is never X.
            let body = scalar == " " ? index + 1 : index
            if body < count, classes[body] != .whitespace {
                let end = runEnd(classes, from: body, classes[body])
                matches.append(start..<end)
                index = end
                continue
            }
            let end = whitespaceMatchEnd(classes, from: index)
            matches.append(start..<end)
            index = end
        }
        return matches
    }

    /// The Llama-3 pattern; `maximumDigits` is 3 for `\p{N}{1,3}` and 1 for `\p{N}`.
    static func llama3(_ text: [Unicode.Scalar], maximumDigits: Int) -> [Range<Int>] {
        let classes = classify(text)
        let count = text.count
        var matches: [Range<Int>] = []
        matches.reserveCapacity(count / 4 + 1)

        func isLineBreak(_ scalar: Unicode.Scalar) -> Bool { scalar == "\r" || scalar == "\n" }

        var index = 0
        while index < count {
            let start = index
            let scalar = text[index]
            // (?i:'s|'t|'re|'ve|'m|'ll|'d); under case folding ſ (U+017F) is an s too.
            if scalar == "'", index + 1 < count {
                let next = Self.foldedASCII(text[index + 1])
                if next == "s" || next == "t" || next == "m" || next == "d" {
                    matches.append(start..<(start + 2))
                    index += 2
                    continue
                }
                if index + 2 < count {
                    let third = Self.foldedASCII(text[index + 2])
                    if (next == "r" && third == "e") || (next == "v" && third == "e") || (next == "l" && third == "l") {
                        matches.append(start..<(start + 3))
                        index += 3
                        continue
                    }
                }
            }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            let kind = classes[index]
            if kind == .letter {
                let end = runEnd(classes, from: index, .letter)
                matches.append(start..<end)
                index = end
                continue
            }
            if kind != .number, !isLineBreak(scalar), index + 1 < count, classes[index + 1] == .letter {
                let end = runEnd(classes, from: index + 1, .letter)
                matches.append(start..<end)
                index = end
                continue
            }
            // \p{N}{1,3}
            if kind == .number {
                let end = min(runEnd(classes, from: index, .number), index + maximumDigits)
                matches.append(start..<end)
                index = end
                continue
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let body = scalar == " " ? index + 1 : index
            if body < count, classes[body] == .other {
                var end = runEnd(classes, from: body, .other)
                while end < count && isLineBreak(text[end]) { end += 1 }
                matches.append(start..<end)
                index = end
                continue
            }
            // Whitespace from here on. `\s*[\r\n]+` backtracks to end just after the run's last
            // line break.
            let whitespaceEnd = runEnd(classes, from: index, .whitespace)
            if let lastBreak = text[index..<whitespaceEnd].lastIndex(where: isLineBreak) {
                matches.append(start..<(lastBreak + 1))
                index = lastBreak + 1
                continue
            }
            let end = whitespaceMatchEnd(classes, from: index)
            matches.append(start..<end)
            index = end
        }
        return matches
    }

    /// ASCII letters lowered, and ſ folded to s, for the case-insensitive contractions.
    private static func foldedASCII(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        let value = scalar.value
        if value >= 0x41 && value <= 0x5A { return Unicode.Scalar(value | 0x20)! }
        if value == 0x17F { return "s" }
        return scalar
    }

    /// `\w+|[^\w\s]+` (the `Whitespace` pre-tokenizer, which uses the regex crate rather than
    /// Oniguruma): runs of word characters and runs of other non-space characters; whitespace
    /// is left out of every match.
    static func wordsAndSymbols(_ text: [Unicode.Scalar]) -> [Range<Int>] {
        var matches: [Range<Int>] = []
        var index = 0
        while index < text.count {
            let scalar = text[index]
            if scalar.isWordCharacter {
                var end = index + 1
                while end < text.count && text[end].isWordCharacter { end += 1 }
                matches.append(index..<end)
                index = end
            } else if !scalar.isWhiteSpace {
                var end = index + 1
                while end < text.count && !text[end].isWordCharacter && !text[end].isWhiteSpace { end += 1 }
                matches.append(index..<end)
                index = end
            } else {
                index += 1
            }
        }
        return matches
    }
}
