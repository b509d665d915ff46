import Foundation

/// Canonical and compatibility decompositions of every character the Rust library's
/// normalization tables know (Unicode 9), read from Foundation once per process.
///
/// Why: normalizing through Foundation costs a String bridge per call, which dominated BERT
/// tokenization of accented text. Decomposing is per character, so one Foundation call over all
/// characters (each followed by a starter that nothing crosses) yields the whole table, and
/// `decompose` is then a lookup plus the canonical ordering of marks.
enum Decompositions {
    static let canonical = Table(compatibility: false)
    static let compatibility = Table(compatibility: true)

    struct Table: Sendable {
        /// One bit per code point: does it decompose at all?
        private let decomposes: [UInt64]
        private let mappings: [UInt32: [Unicode.Scalar]]

        init(compatibility: Bool) {
            var characters: [Unicode.Scalar] = []
            // Nothing below U+00A0 or beyond the CJK compatibility supplement decomposes; Hangul
            // syllables decompose by formula; ideographs, Tangut and private use never do; and
            // characters newer than the Rust tables stay as they are.
            for value in UInt32(0xA0)..<0x2FA20 {
                if (0xAC00...0xD7A3).contains(value) || (0xE000...0xF8FF).contains(value) || (0x17000...0x18AFF).contains(value) {
                    continue
                }
                guard let scalar = Unicode.Scalar(value), !scalar.properties.isUnifiedIdeograph,
                    scalar.assigned(by: UnicodeTables.normalization)
                else { continue }
                characters.append(scalar)
            }
            var text = ""
            text.unicodeScalars.reserveCapacity(characters.count * 2)
            for scalar in characters {
                text.unicodeScalars.append(scalar)
                text.unicodeScalars.append("\u{1}")
            }
            let decomposed = compatibility ? text.decomposedStringWithCompatibilityMapping : text.decomposedStringWithCanonicalMapping
            var mappings: [UInt32: [Unicode.Scalar]] = [:]
            var bits = [UInt64](repeating: 0, count: 0x2FA20 / 64 + 1)
            var index = 0
            var current: [Unicode.Scalar] = []
            for scalar in decomposed.unicodeScalars {
                guard scalar == "\u{1}" else {
                    current.append(scalar)
                    continue
                }
                let original = characters[index]
                if current.count != 1 || current[0] != original {
                    mappings[original.value] = current
                    bits[Int(original.value) >> 6] |= 1 << (UInt64(original.value) & 63)
                }
                current.removeAll(keepingCapacity: true)
                index += 1
            }
            self.mappings = mappings
            self.decomposes = bits
        }

        /// The full decomposition of each scalar, then the canonical ordering of marks.
        func decompose(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
            var output: [Unicode.Scalar] = []
            output.reserveCapacity(scalars.count + 8)
            for scalar in scalars {
                let value = scalar.value
                if value < 0x2FA20 && decomposes[Int(value) >> 6] & (1 << (UInt64(value) & 63)) != 0,
                    let mapping = mappings[value]
                {
                    output.append(contentsOf: mapping)
                } else if value >= 0xAC00 && value <= 0xD7A3 {
                    Decompositions.appendHangulJamo(value, to: &output)
                } else {
                    output.append(scalar)
                }
            }
            Decompositions.sortCombiningMarks(&output)
            return output
        }
    }

    /// A Hangul syllable's conjoining jamo (Unicode chapter 3.12): leading consonant, vowel and,
    /// unless the syllable has none, trailing consonant.
    @inline(__always)
    static func appendHangulJamo(_ syllable: UInt32, to output: inout [Unicode.Scalar]) {
        let index = syllable - 0xAC00
        output.append(Unicode.Scalar(0x1100 + index / 588)!)
        output.append(Unicode.Scalar(0x1161 + (index % 588) / 28)!)
        if index % 28 != 0 { output.append(Unicode.Scalar(0x11A7 + index % 28)!) }
    }

    /// The canonical ordering algorithm: each run of non-starters sorted by combining class,
    /// stably. Characters newer than the Rust tables count as starters there.
    static func sortCombiningMarks(_ scalars: inout [Unicode.Scalar]) {
        var index = 1
        while index < scalars.count {
            let scalar = scalars[index]
            let combiningClass = combiningClass(scalar)
            if combiningClass != 0 {
                // Insertion sort: runs are a few marks long.
                var position = index
                while position > 0 {
                    let previous = Self.combiningClass(scalars[position - 1])
                    if previous == 0 || previous <= combiningClass { break }
                    scalars[position] = scalars[position - 1]
                    position -= 1
                }
                if position != index { scalars[position] = scalar }
            }
            index += 1
        }
    }

    @inline(__always)
    private static func combiningClass(_ scalar: Unicode.Scalar) -> UInt8 {
        if scalar.value < 0x300 { return 0 }
        let combiningClass = scalar.properties.canonicalCombiningClass.rawValue
        return combiningClass == 0 || scalar.assigned(by: UnicodeTables.normalization) ? combiningClass : 0
    }
}
