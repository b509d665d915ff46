/// The Unicode versions of the tables the Rust tokenizers library (0.23) is built with. Swift's
/// tables are newer, and a character added since would otherwise be classified differently
/// (a new letter, mark or format character). Each version was measured by probing every code
/// point through the Python bindings; see Tests/Reference/fuzz_tokenizers.py.
enum UnicodeTables {
    /// Oniguruma, behind the Split and ByteLevel regexes (`\p{L}`, `\p{N}`).
    static let oniguruma = (major: 16, minor: 0)
    /// The regex crate, behind the Whitespace pre-tokenizer and added tokens' single_word
    /// test (`\w`).
    static let regexCrate = (major: 16, minor: 0)
    /// The unicode_categories crate: BertNormalizer's control and Mn tests, BERT punctuation.
    static let unicodeCategories = (major: 8, minor: 0)
    /// unicode-normalization-alignments: NFD/NFC/NFKD/NFKC and StripAccents' mark test.
    static let normalization = (major: 9, minor: 0)
}

/// The character classes the Rust tokenizers library tests, each named after its Rust or regex
/// spelling. The `computed…` definitions are the reference; the hot paths read the same answers
/// from `ScalarFlags`, and answer ASCII (most of the input) inline.
extension Unicode.Scalar {
    /// Whether the character was already assigned in Unicode `version`.
    @inline(__always)
    func assigned(by version: (major: Int, minor: Int)) -> Bool {
        guard let age = properties.age else { return false }
        return age.major < version.major || (age.major == version.major && age.minor <= version.minor)
    }

    /// Rust `char::is_whitespace`, regex `\s`: the White_Space property.
    @inline(__always)
    var isWhiteSpace: Bool {
        let v = value
        if v < 0x80 { return v == 0x20 || (v >= 0x09 && v <= 0x0D) }
        switch v {
        case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// Regex `\p{L}` (Oniguruma): general category L (Lu, Ll, Lt, Lm, Lo).
    var computedIsLetter: Bool {
        let v = value
        if v < 0x80 { return (v | 0x20) >= 0x61 && (v | 0x20) <= 0x7A }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            return assigned(by: UnicodeTables.oniguruma)
        default:
            return false
        }
    }

    /// Regex `\p{N}` (Oniguruma): general category N (Nd, Nl, No).
    var computedIsNumber: Bool {
        let v = value
        if v < 0x80 { return v >= 0x30 && v <= 0x39 }
        return computedIsNumeric && assigned(by: UnicodeTables.oniguruma)
    }

    /// Rust `char::is_numeric` (current Unicode): general category N.
    var computedIsNumeric: Bool {
        let v = value
        if v < 0x80 { return v >= 0x30 && v <= 0x39 }
        switch properties.generalCategory {
        case .decimalNumber, .letterNumber, .otherNumber: return true
        default: return false
        }
    }

    /// Unicode general category P (all punctuation).
    var isPunctuationCategory: Bool {
        switch properties.generalCategory {
        case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
            .initialPunctuation, .finalPunctuation, .otherPunctuation:
            return true
        default:
            return false
        }
    }

    /// The BERT and `Punctuation` pre-tokenizers' test: ASCII punctuation (which includes symbols
    /// such as `$+<=>^`|~`) or Unicode punctuation as of the unicode_categories tables.
    var computedIsBertPunctuation: Bool {
        let v = value
        if v < 0x80 {
            return (v >= 0x21 && v <= 0x2F) || (v >= 0x3A && v <= 0x40) || (v >= 0x5B && v <= 0x60)
                || (v >= 0x7B && v <= 0x7E)
        }
        // Punctuation in Unicode 8 that has since changed category.
        if v == 0x166D || v == 0x111C9 { return true }
        return isPunctuationCategory && assigned(by: UnicodeTables.unicodeCategories)
    }

    /// Regex `\w` as the regex crate defines it (UTS #18): Alphabetic, marks, decimal digits,
    /// connector punctuation and the joiners. The Whitespace pre-tokenizer and added tokens'
    /// single_word test use it.
    var computedIsWordCharacter: Bool {
        let v = value
        if v < 0x80 { return computedIsLetter || computedIsNumber || v == 0x5F }
        guard assigned(by: UnicodeTables.regexCrate) else { return false }
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// General category Mn as of the unicode_categories tables, which BertNormalizer's
    /// strip_accents removes after NFD.
    var computedIsNonspacingMark: Bool {
        let v = value
        guard v >= 0x300 else { return false }
        switch v {
        case 0x1734, 0x1171E: return true  // Mn in Unicode 8, Mc now
        case 0x1885, 0x1886, 0xA9BD, 0x111C9: return false  // Mn now, something else in Unicode 8
        default: return properties.generalCategory == .nonspacingMark && assigned(by: UnicodeTables.unicodeCategories)
        }
    }

    /// General category M (Mn, Mc, Me) as of the normalization tables, which the StripAccents
    /// normalizer removes (unicode-normalization's `is_combining_mark`).
    var computedIsMark: Bool {
        let v = value
        guard v >= 0x300 else { return false }
        switch v {
        case 0x1CF2, 0x1CF3: return true  // marks in Unicode 9, letters now
        case 0x111C9: return false  // punctuation in Unicode 9, a mark now
        default:
            switch properties.generalCategory {
            case .nonspacingMark, .spacingMark, .enclosingMark: return assigned(by: UnicodeTables.normalization)
            default: return false
            }
        }
    }

    /// BertNormalizer's "control": the unicode_categories crate's `is_other` (Cc, Cf, Cs, Co as
    /// of Unicode 8; its Cn table is empty, so unassigned code points survive) except tab,
    /// newline and return, which count as whitespace.
    var computedIsBertControl: Bool {
        let v = value
        if v < 0x80 { return (v < 0x20 && v != 0x09 && v != 0x0A && v != 0x0D) || v == 0x7F }
        switch properties.generalCategory {
        case .control, .surrogate, .privateUse: return true
        case .format: return assigned(by: UnicodeTables.unicodeCategories)
        default: return false
        }
    }

    /// BertNormalizer's CJK test: the CJK Unified Ideograph blocks as the Rust code lists them.
    @inline(__always)
    var isChineseCharacter: Bool {
        switch value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F, 0x2B740...0x2B81F,
            0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }
}

/// The classes above for every character of the Basic Multilingual Plane, computed once: the
/// Unicode property lookups behind them dominate the cost of non-ASCII text otherwise.
struct ScalarFlags: OptionSet {
    let rawValue: UInt16
    static let letter = ScalarFlags(rawValue: 1 << 0)
    static let number = ScalarFlags(rawValue: 1 << 1)
    static let numeric = ScalarFlags(rawValue: 1 << 2)
    static let bertPunctuation = ScalarFlags(rawValue: 1 << 3)
    static let word = ScalarFlags(rawValue: 1 << 4)
    static let nonspacingMark = ScalarFlags(rawValue: 1 << 5)
    static let mark = ScalarFlags(rawValue: 1 << 6)
    static let bertControl = ScalarFlags(rawValue: 1 << 7)
    static let changesWhenLowercased = ScalarFlags(rawValue: 1 << 8)

    init(rawValue: UInt16) { self.rawValue = rawValue }

    init(_ scalar: Unicode.Scalar) {
        var flags: ScalarFlags = []
        if scalar.computedIsLetter { flags.insert(.letter) }
        if scalar.computedIsNumber { flags.insert(.number) }
        if scalar.computedIsNumeric { flags.insert(.numeric) }
        if scalar.computedIsBertPunctuation { flags.insert(.bertPunctuation) }
        if scalar.computedIsWordCharacter { flags.insert(.word) }
        if scalar.computedIsNonspacingMark { flags.insert(.nonspacingMark) }
        if scalar.computedIsMark { flags.insert(.mark) }
        if scalar.computedIsBertControl { flags.insert(.bertControl) }
        if scalar.properties.changesWhenLowercased { flags.insert(.changesWhenLowercased) }
        self = flags
    }

    /// Immutable once built; a raw pointer keeps the hot lookups free of bounds and
    /// exclusivity checks.
    nonisolated(unsafe) private static let basicPlane: UnsafePointer<UInt16> = {
        let table = UnsafeMutablePointer<UInt16>.allocate(capacity: 0x10000)
        for value in 0..<0x10000 {
            table[value] = Unicode.Scalar(UInt32(value)).map { ScalarFlags($0).rawValue } ?? 0
        }
        return UnsafePointer(table)
    }()

    @inline(__always)
    static func of(_ scalar: Unicode.Scalar) -> ScalarFlags {
        let value = scalar.value
        return value < 0x10000 ? ScalarFlags(rawValue: basicPlane[Int(value)]) : ScalarFlags(scalar)
    }
}

extension Unicode.Scalar {
    /// Regex `\p{L}` (Oniguruma): general category L (Lu, Ll, Lt, Lm, Lo).
    @inline(__always)
    var isLetter: Bool {
        let v = value
        if v < 0x80 { return (v | 0x20) >= 0x61 && (v | 0x20) <= 0x7A }
        return ScalarFlags.of(self).contains(.letter)
    }

    /// Regex `\p{N}` (Oniguruma): general category N (Nd, Nl, No).
    @inline(__always)
    var isNumber: Bool {
        let v = value
        if v < 0x80 { return v >= 0x30 && v <= 0x39 }
        return ScalarFlags.of(self).contains(.number)
    }

    /// Rust `char::is_numeric` (current Unicode): general category N.
    @inline(__always)
    var isNumeric: Bool {
        let v = value
        if v < 0x80 { return v >= 0x30 && v <= 0x39 }
        return ScalarFlags.of(self).contains(.numeric)
    }

    /// ASCII punctuation or Unicode punctuation as of the unicode_categories tables.
    @inline(__always)
    var isBertPunctuation: Bool {
        if value < 0x80 { return computedIsBertPunctuation }
        return ScalarFlags.of(self).contains(.bertPunctuation)
    }

    /// Regex `\w` as the regex crate defines it.
    @inline(__always)
    var isWordCharacter: Bool {
        let v = value
        if v < 0x80 { return (v | 0x20) >= 0x61 && (v | 0x20) <= 0x7A || (v >= 0x30 && v <= 0x39) || v == 0x5F }
        return ScalarFlags.of(self).contains(.word)
    }

    /// Mn as of the unicode_categories tables.
    @inline(__always)
    var isNonspacingMark: Bool {
        value >= 0x300 && ScalarFlags.of(self).contains(.nonspacingMark)
    }

    /// M as of the normalization tables.
    @inline(__always)
    var isMark: Bool {
        value >= 0x300 && ScalarFlags.of(self).contains(.mark)
    }

    /// BertNormalizer's control test.
    @inline(__always)
    var isBertControl: Bool {
        let v = value
        if v < 0x80 { return (v < 0x20 && v != 0x09 && v != 0x0A && v != 0x0D) || v == 0x7F }
        return ScalarFlags.of(self).contains(.bertControl)
    }

    @inline(__always)
    var changesWhenLowercased: Bool {
        let v = value
        if v < 0x80 { return v >= 0x41 && v <= 0x5A }
        return ScalarFlags.of(self).contains(.changesWhenLowercased)
    }
}

extension Array where Element == Unicode.Scalar {
    /// The UTF-8 encoding of the scalars, appended to `bytes`.
    func appendUTF8(to bytes: inout [UInt8]) {
        for scalar in self { scalar.appendUTF8(to: &bytes) }
    }
}

extension Unicode.Scalar {
    @inline(__always)
    func appendUTF8(to bytes: inout [UInt8]) {
        let v = value
        if v < 0x80 {
            bytes.append(UInt8(v))
        } else if v < 0x800 {
            bytes.append(UInt8(0xC0 | (v >> 6)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        } else if v < 0x10000 {
            bytes.append(UInt8(0xE0 | (v >> 12)))
            bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        } else {
            bytes.append(UInt8(0xF0 | (v >> 18)))
            bytes.append(UInt8(0x80 | ((v >> 12) & 0x3F)))
            bytes.append(UInt8(0x80 | ((v >> 6) & 0x3F)))
            bytes.append(UInt8(0x80 | (v & 0x3F)))
        }
    }

    /// Writes the UTF-8 bytes at `pointer` (room for 4) and returns how many.
    @inline(__always)
    func encodeUTF8(into pointer: UnsafeMutablePointer<UInt8>) -> Int {
        let v = value
        if v < 0x80 {
            pointer[0] = UInt8(v)
            return 1
        } else if v < 0x800 {
            pointer[0] = UInt8(0xC0 | (v >> 6))
            pointer[1] = UInt8(0x80 | (v & 0x3F))
            return 2
        } else if v < 0x10000 {
            pointer[0] = UInt8(0xE0 | (v >> 12))
            pointer[1] = UInt8(0x80 | ((v >> 6) & 0x3F))
            pointer[2] = UInt8(0x80 | (v & 0x3F))
            return 3
        } else {
            pointer[0] = UInt8(0xF0 | (v >> 18))
            pointer[1] = UInt8(0x80 | ((v >> 12) & 0x3F))
            pointer[2] = UInt8(0x80 | ((v >> 6) & 0x3F))
            pointer[3] = UInt8(0x80 | (v & 0x3F))
            return 4
        }
    }

    /// Length of the scalar in UTF-8.
    @inline(__always)
    var utf8Length: Int {
        let v = value
        return v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4
    }
}
