/// The character classes the Rust tokenizers library tests, each named after its Rust or regex
/// spelling. ASCII is answered without touching the Unicode tables: it is most of the input.
extension Unicode.Scalar {
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

    /// Regex `\p{L}`: general category L (Lu, Ll, Lt, Lm, Lo).
    @inline(__always)
    var isLetter: Bool {
        let v = value
        if v < 0x80 { return (v | 0x20) >= 0x61 && (v | 0x20) <= 0x7A }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
        default: return false
        }
    }

    /// Regex `\p{N}`, Rust `char::is_numeric`: general category N (Nd, Nl, No).
    @inline(__always)
    var isNumber: Bool {
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
    /// such as `$+<=>^`|~`) or any Unicode punctuation.
    @inline(__always)
    var isBertPunctuation: Bool {
        let v = value
        if v < 0x80 {
            return (v >= 0x21 && v <= 0x2F) || (v >= 0x3A && v <= 0x40) || (v >= 0x5B && v <= 0x60)
                || (v >= 0x7B && v <= 0x7E)
        }
        return isPunctuationCategory
    }

    /// Rust `char::is_alphanumeric`: Alphabetic or numeric.
    var isRustAlphanumeric: Bool {
        if value < 0x80 { return isLetter || isNumber }
        return properties.isAlphabetic || isNumber
    }

    /// Regex `\w` (Unicode): Alphabetic, marks, decimal digits, connector punctuation, joiners.
    var isWordCharacter: Bool {
        let v = value
        if v < 0x80 { return isLetter || isNumber || v == 0x5F }
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    /// General category Mn, which `strip_accents` removes after NFD.
    @inline(__always)
    var isNonspacingMark: Bool {
        value >= 0x300 && properties.generalCategory == .nonspacingMark
    }

    /// BertNormalizer's "control": the `unicode_categories` crate's `is_other` (Cc, Cf, Cs, Co;
    /// its Cn table is empty, so unassigned code points survive) except tab, newline and return,
    /// which count as whitespace.
    @inline(__always)
    var isBertControl: Bool {
        let v = value
        if v < 0x80 { return (v < 0x20 && v != 0x09 && v != 0x0A && v != 0x0D) || v == 0x7F }
        switch properties.generalCategory {
        case .control, .format, .surrogate, .privateUse: return true
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

extension Array where Element == Unicode.Scalar {
    /// The UTF-8 encoding of the scalars, appended to `bytes`.
    func appendUTF8(to bytes: inout [UInt8]) {
        for scalar in self { scalar.appendUTF8(to: &bytes) }
    }
}

extension ArraySlice where Element == Unicode.Scalar {
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

    /// Length of the scalar in UTF-8.
    @inline(__always)
    var utf8Length: Int {
        let v = value
        return v < 0x80 ? 1 : v < 0x800 ? 2 : v < 0x10000 ? 3 : 4
    }
}
