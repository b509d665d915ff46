import Foundation
import Testing

@testable import Tokenizers

/// The fast paths checked against straightforward versions: the hand-written regex scanners
/// against Swift's regex engine, and the heap-driven BPE merge loop against the textbook
/// "merge the lowest-ranked pair, leftmost first" loop.
@Suite("Fast paths against plain references")
struct ReferenceImplementationTests {
    /// Pieces old enough that every engine classifies them alike (no ſ: Swift's case folding
    /// of it differs from Oniguruma's).
    static let pool: [String] = [
        "a", "Z", "hello", "World", "é", "e\u{301}", "ß", "Σ", "我", "カ", "각", "ع", "क्ष", "0", "7", "123", "4567", "٣", "²", "½",
        " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n ", "\u{a0}", "\u{2028}", "\u{3000}", "\u{b}",
        "'", "'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'d", "'x", ".", ",", "!", "...", "-", "_", "$", "<", "«",
        "—", "😀", "👍🏽", "\u{200d}", "\u{301}", "\u{0}", "\u{7f}", "▁",
    ]

    static func randomText(_ noise: inout Noise, pieces: Int) -> String {
        (0..<pieces).map { _ in pool[noise.below(pool.count)] }.joined()
    }

    /// Match ranges in scalar offsets, found by Swift Regex with Unicode-scalar semantics.
    static func regexMatches(_ pattern: String, in text: String) throws -> [Range<Int>] {
        let regex = try Regex(pattern).matchingSemantics(.unicodeScalar)
        let scalars = text.unicodeScalars
        return text.matches(of: regex).map { match in
            let start = scalars.distance(from: scalars.startIndex, to: match.range.lowerBound)
            return start..<(start + scalars[match.range].count)
        }
    }

    @Test(
        "regex scanners agree with Swift Regex",
        arguments: [
            (RegexScanners.gpt2Pattern, SplitPattern.gpt2),
            (RegexScanners.llama3Pattern, SplitPattern.llama3(maximumDigits: 3)),
            (RegexScanners.llama3SingleDigitPattern, SplitPattern.llama3(maximumDigits: 1)),
        ])
    func scannersMatchRegex(pattern: String, scanner: SplitPattern) throws {
        var noise = Noise(seed: 42)
        // Power-of-two and odd sizes, as for any kernel.
        for pieces in [1, 2, 7, 16, 33, 64] {
            for _ in 0..<60 {
                let text = Self.randomText(&noise, pieces: pieces)
                let expected = try Self.regexMatches(pattern, in: text)
                let actual = scanner.matches(in: Array(text.unicodeScalars))
                #expect(actual == expected, "\(visible(text))")
            }
        }
    }

    /// The textbook BPE loop over symbol ids.
    static func plainMerge(_ ids: [Int32], merges: [String: (rank: Int, merged: Int32)]) -> [Int32] {
        var symbols = ids
        while symbols.count > 1 {
            var best: (rank: Int, index: Int, merged: Int32)?
            for index in 0..<(symbols.count - 1) {
                if let merge = merges["\(symbols[index]) \(symbols[index + 1])"], merge.rank < (best?.rank ?? Int.max) {
                    best = (merge.rank, index, merge.merged)
                }
            }
            guard let best else { break }
            symbols.replaceSubrange(best.index...(best.index + 1), with: [best.merged])
        }
        return symbols
    }

    @Test("BPE merge loop agrees with the plain loop", arguments: ["tiny-gpt2-bytelevel-bpe", "sp-bpe", "llama3-bpe"])
    func bpeMatchesPlainLoop(fixture: String) throws {
        let path = try ReferenceFixture.load(fixture).tokenizerPath
        let root = try #require(try JSONParser.parse(Array(Data(contentsOf: URL(fileURLWithPath: path)))).object)
        var modelJSON = try #require(root.value("model")?.object)
        // Whole-word lookups would hide the merge loop.
        modelJSON.entries.removeAll { $0.key == "ignore_merges" }
        let model = try BPEModel(json: modelJSON)
        let vocabulary = model.vocabulary

        var merges: [String: (rank: Int, merged: Int32)] = [:]
        for (rank, item) in try modelJSON.array("merges", in: "test").enumerated() {
            let pair = try #require(item.array?.compactMap(\.string) ?? item.string?.split(separator: " ").map(String.init))
            let left = try #require(vocabulary.id(pair[0]))
            let right = try #require(vocabulary.id(pair[1]))
            let merged = try #require(vocabulary.id(pair[0] + pair[1]))
            merges["\(left) \(right)"] = (rank, merged)
        }
        // Words over the model's single-character alphabet, so every symbol is in the vocab.
        let alphabet = vocabulary.tokens.compactMap { $0 }.filter { $0.unicodeScalars.count == 1 }.map { $0.unicodeScalars.first! }
        var noise = Noise(seed: 3)
        for length in [1, 2, 3, 8, 17, 64, 255, 256, 1000] {
            for _ in 0..<20 {
                let word = (0..<length).map { _ in alphabet[noise.below(alphabet.count)] }
                let start = word.map { vocabulary.id(String($0))! }
                var actual: [Int32] = []
                model.tokenize(word, into: &actual)
                #expect(actual == Self.plainMerge(start, merges: merges), "\(fixture), length \(length)")
            }
        }
    }
}
