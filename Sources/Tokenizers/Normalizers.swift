import Foundation

/// Text on its way through the normalizer, with the one piece of alignment the pipeline reads.
struct NormalizedText {
    var scalars: [Unicode.Scalar]
    /// Whether the first scalar still lines up with the start of the piece in the original text.
    /// The Rust library tracks a full alignment map; only Metaspace's `prepend_scheme: "first"`
    /// reads it, and only at the start of a piece, so one flag is enough.
    var startsAtOriginalStart: Bool
}

/// The `normalizer` section: rewrites each stretch of text between added tokens before it is
/// split into words.
indirect enum Normalizer: Sendable {
    case bert(cleanText: Bool, handleChineseCharacters: Bool, stripAccents: Bool, lowercase: Bool)
    case lowercase
    case unicode(UnicodeForm)
    case stripAccents
    case strip(left: Bool, right: Bool)
    case prepend([Unicode.Scalar])
    case replace(pattern: [Unicode.Scalar], content: [Unicode.Scalar])
    case byteLevel
    case sequence([Normalizer])

    enum UnicodeForm: Sendable {
        case nfd, nfc, nfkd, nfkc
    }

    static let supportedTypes =
        "normalizers BertNormalizer, Lowercase, NFD, NFC, NFKD, NFKC, StripAccents, Strip, Prepend, Replace (string pattern), ByteLevel and Sequence"

    init(json: JSONObject) throws(TokenizerError) {
        guard let type = json.typeName else {
            throw TokenizerError.invalid("a normalizer has no \"type\" field")
        }
        let component = "normalizer \"\(type)\""
        switch type {
        case "BertNormalizer":
            let lowercase = try json.bool("lowercase", default: true, in: component)
            self = .bert(
                cleanText: try json.bool("clean_text", default: true, in: component),
                handleChineseCharacters: try json.bool("handle_chinese_chars", default: true, in: component),
                // A null strip_accents follows lowercase, as in the original BERT code.
                stripAccents: try json.optionalBool("strip_accents", in: component) ?? lowercase,
                lowercase: lowercase)
        case "Lowercase": self = .lowercase
        case "NFD": self = .unicode(.nfd)
        case "NFC": self = .unicode(.nfc)
        case "NFKD": self = .unicode(.nfkd)
        case "NFKC": self = .unicode(.nfkc)
        case "StripAccents": self = .stripAccents
        case "Strip":
            self = .strip(
                left: try json.bool("strip_left", default: true, in: component),
                right: try json.bool("strip_right", default: true, in: component))
        case "Prepend":
            self = .prepend(Array(try json.string("prepend", in: component).unicodeScalars))
        case "Replace":
            let pattern = try PatternSpec(json: try json.object("pattern", in: component), in: component)
            guard let literal = pattern.literal else {
                throw TokenizerError.unsupported(
                    "Replace normalizer regex \"\(pattern.source)\"", supported: "Replace with a string pattern")
            }
            self = .replace(pattern: literal, content: Array(try json.string("content", in: component).unicodeScalars))
        case "ByteLevel": self = .byteLevel
        case "Sequence":
            let items = try json.array("normalizers", in: component)
            var normalizers: [Normalizer] = []
            for item in items {
                normalizers.append(try Normalizer(json: try item.requireObject("an entry of a Sequence normalizer")))
            }
            self = .sequence(normalizers)
        default:
            throw TokenizerError.unsupported("normalizer type \"\(type)\"", supported: Self.supportedTypes)
        }
    }

    func normalize(_ text: inout NormalizedText) {
        switch self {
        case .bert(let cleanText, let handleChineseCharacters, let stripAccents, let lowercase):
            if cleanText || handleChineseCharacters {
                Self.bertClean(&text, cleanText: cleanText, handleChineseCharacters: handleChineseCharacters)
            }
            if stripAccents { Self.stripAccents(&text) }
            if lowercase { Self.lowercase(&text.scalars) }
        case .lowercase:
            Self.lowercase(&text.scalars)
        case .unicode(let form):
            text.scalars = Self.normalize(text.scalars, form: form)
        case .stripAccents:
            // Unlike BertNormalizer's strip_accents (Mn only), this one drops every mark
            // (Mn, Mc, Me: unicode-normalization's is_combining_mark).
            Self.removeAll(from: &text) { $0.isMark }
        case .strip(let left, let right):
            if right {
                while let last = text.scalars.last, last.isWhiteSpace { text.scalars.removeLast() }
            }
            if left {
                let leading = text.scalars.prefix(while: { $0.isWhiteSpace }).count
                if leading > 0 {
                    text.scalars.removeFirst(leading)
                    text.startsAtOriginalStart = false
                }
            }
        case .prepend(let prefix):
            // Prepended text takes the alignment of the first character, so the flag stays.
            if !text.scalars.isEmpty { text.scalars.insert(contentsOf: prefix, at: 0) }
        case .replace(let pattern, let content):
            let replaced = Self.replace(text.scalars, pattern: pattern, content: content)
            if content.isEmpty, replaced.count < text.scalars.count, text.scalars.starts(with: pattern) {
                text.startsAtOriginalStart = false
            }
            text.scalars = replaced
        case .byteLevel:
            text.scalars = ByteLevelAlphabet.map(text.scalars)
        case .sequence(let normalizers):
            for normalizer in normalizers { normalizer.normalize(&text) }
        }
    }

    /// BERT's clean_text (drop NUL, U+FFFD and control characters, turn whitespace into a plain
    /// space) and CJK handling (a space on both sides of every ideograph), in one pass.
    private static func bertClean(_ text: inout NormalizedText, cleanText: Bool, handleChineseCharacters: Bool) {
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(text.scalars.count + 8)
        for (index, scalar) in text.scalars.enumerated() {
            let value = scalar.value
            if cleanText {
                if value == 0 || value == 0xFFFD || scalar.isBertControl {
                    if index == 0 { text.startsAtOriginalStart = false }
                    continue
                }
                if scalar.isWhiteSpace {
                    output.append(" ")
                    continue
                }
            }
            if handleChineseCharacters && value >= 0x3400 && scalar.isChineseCharacter {
                output.append(" ")
                output.append(scalar)
                output.append(" ")
            } else {
                output.append(scalar)
            }
        }
        text.scalars = output
    }

    /// BertNormalizer's strip_accents: canonical decomposition, then nonspacing marks (Mn) out.
    private static func stripAccents(_ text: inout NormalizedText) {
        text.scalars = normalize(text.scalars, form: .nfd)
        removeAll(from: &text) { $0.isNonspacingMark }
    }

    private static func removeAll(from text: inout NormalizedText, where shouldRemove: (Unicode.Scalar) -> Bool) {
        guard text.scalars.contains(where: shouldRemove) else { return }
        if shouldRemove(text.scalars[0]) { text.startsAtOriginalStart = false }
        text.scalars.removeAll(where: shouldRemove)
    }

    /// Rust's `char::to_lowercase` applied character by character: no context rules (a final
    /// sigma stays σ), and some characters grow (İ becomes i + U+0307).
    static func lowercase(_ scalars: inout [Unicode.Scalar]) {
        var index = 0
        let count = scalars.count
        while index < count {
            let value = scalars[index].value
            if value >= 0x80 { break }
            if value >= 0x41 && value <= 0x5A { scalars[index] = Unicode.Scalar(value | 0x20)! }
            index += 1
        }
        guard index < count else { return }
        var output = Array(scalars[..<index])
        output.reserveCapacity(count + 4)
        for scalar in scalars[index...] {
            let value = scalar.value
            if value < 0x80 {
                output.append(value >= 0x41 && value <= 0x5A ? Unicode.Scalar(value | 0x20)! : scalar)
            } else if scalar.changesWhenLowercased {
                output.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            } else {
                output.append(scalar)
            }
        }
        scalars = output
    }

    /// Unicode normalization as the Rust library's (Unicode 9) tables do it.
    static func normalize(_ scalars: [Unicode.Scalar], form: UnicodeForm) -> [Unicode.Scalar] {
        // Below U+00C0 nothing has a canonical decomposition or composes; below U+00A0 nothing
        // has a compatibility one either.
        let stableBelow: UInt32 = (form == .nfd || form == .nfc) ? 0xC0 : 0xA0
        if scalars.allSatisfy({ $0.value < stableBelow }) { return scalars }
        switch form {
        case .nfd: return Decompositions.canonical.decompose(scalars)
        case .nfkd: return Decompositions.compatibility.decompose(scalars)
        case .nfc, .nfkc: break
        }
        // Composition goes through Foundation. Characters newer than the Rust tables neither
        // decompose, compose nor reorder there: they are plain starters, which nothing crosses,
        // so the text is composed in pieces between them and they are kept as they are.
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(scalars.count + 8)
        var pieceStart = 0
        for (index, scalar) in scalars.enumerated()
        where scalar.value >= stableBelow && !scalar.assigned(by: UnicodeTables.normalization) {
            output.append(contentsOf: compose(scalars[pieceStart..<index], compatibility: form == .nfkc))
            output.append(scalar)
            pieceStart = index + 1
        }
        output.append(contentsOf: compose(scalars[pieceStart...], compatibility: form == .nfkc))
        return output
    }

    /// NFC or NFKC of text free of characters newer than the Rust tables. Foundation does not
    /// reorder marks that follow a character whose decomposition starts with one (U+073A U+0F81
    /// stays unsorted), so it composes the decomposition as ordered here instead.
    private static func compose(_ scalars: ArraySlice<Unicode.Scalar>, compatibility: Bool) -> [Unicode.Scalar] {
        if scalars.isEmpty { return [] }
        let table = compatibility ? Decompositions.compatibility : Decompositions.canonical
        var text = ""
        text.unicodeScalars.append(contentsOf: table.decompose(Array(scalars)))
        return Array(text.precomposedStringWithCanonicalMapping.unicodeScalars)
    }

    /// Every non-overlapping occurrence of `pattern`, leftmost first, replaced by `content`.
    static func replace(_ scalars: [Unicode.Scalar], pattern: [Unicode.Scalar], content: [Unicode.Scalar]) -> [Unicode.Scalar] {
        guard !pattern.isEmpty, scalars.count >= pattern.count else { return scalars }
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(scalars.count + content.count)
        var index = 0
        let first = pattern[0]
        while index < scalars.count {
            if scalars[index] == first, index + pattern.count <= scalars.count,
                scalars[index..<(index + pattern.count)].elementsEqual(pattern)
            {
                output.append(contentsOf: content)
                index += pattern.count
            } else {
                output.append(scalars[index])
                index += 1
            }
        }
        return output
    }
}

/// A `pattern` field: `{"String": "…"}` or `{"Regex": "…"}`.
struct PatternSpec: Sendable {
    let source: String
    let isRegex: Bool

    init(json: JSONObject, in component: String) throws(TokenizerError) {
        if let text = json.value("String")?.string {
            source = text
            isRegex = false
        } else if let text = json.value("Regex")?.string {
            source = text
            isRegex = true
        } else {
            throw TokenizerError.invalid("\(component) has a \"pattern\" that is neither {\"String\": …} nor {\"Regex\": …}")
        }
    }

    /// The scalars to match literally: a string pattern, or a regex without metacharacters.
    var literal: [Unicode.Scalar]? {
        if !isRegex { return Array(source.unicodeScalars) }
        let metacharacters: Set<Unicode.Scalar> = ["\\", ".", "^", "$", "|", "?", "*", "+", "(", ")", "[", "]", "{", "}"]
        if source.unicodeScalars.contains(where: { metacharacters.contains($0) }) { return nil }
        return Array(source.unicodeScalars)
    }
}
