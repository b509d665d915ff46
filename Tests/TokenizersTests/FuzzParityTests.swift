import Foundation
import Testing

@testable import Tokenizers

/// Differential cases written by Tests/Reference/fuzz_tokenizers.py with the real Rust library.
/// They live outside the repository, so this runs only when TOKENIZERS_FUZZ_DIR points at them.
@Suite("Fuzz parity")
struct FuzzParityTests {
    static let directory = ProcessInfo.processInfo.environment["TOKENIZERS_FUZZ_DIR"]

    @Test("random texts and tokenizer variants match the Rust library", .enabled(if: directory != nil))
    func fuzzCasesMatch() throws {
        let directory = URL(fileURLWithPath: try #require(Self.directory))
        let files = try FileManager.default.contentsOfDirectory(atPath: directory.path)
            .filter { $0.hasSuffix(".json") && !$0.hasSuffix(".tokenizer.json") && $0 != "unicode-classes.json" }
            .sorted()
        #expect(!files.isEmpty)
        for file in files {
            let fixture = try JSONDecoder().decode(
                ReferenceFixture.self, from: Data(contentsOf: directory.appendingPathComponent(file)))
            let tokenizer = try Tokenizer(contentsOfFile: directory.appendingPathComponent(fixture.tokenizer).path)
            var failures = 0
            for testCase in fixture.cases {
                let withSpecial = tokenizer.encode(testCase.text)
                let withoutSpecial = tokenizer.encode(testCase.text, addSpecialTokens: false)
                guard withSpecial != testCase.ids || withoutSpecial != testCase.idsNoSpecial else { continue }
                failures += 1
                // The first few are enough to debug; the count says how widespread it is.
                if failures <= 3 {
                    Issue.record(
                        """
                        \(file): text "\(visible(testCase.text))"
                          expected \(testCase.ids) \(testCase.tokens)
                          actual   \(withSpecial) \(withSpecial.map { tokenizer.token(forID: $0) ?? "?" })
                          no-special expected \(testCase.idsNoSpecial) actual \(withoutSpecial)
                        """)
                }
            }
            print("\(file): \(fixture.cases.count - failures)/\(fixture.cases.count) fuzz cases match")
        }
    }

    /// How the Rust library classifies each code point, written by `--unicode-classes`.
    private struct UnicodeClasses: Decodable {
        let sets: [String: [[UInt32]]]
        let mappings: [String: [String: [UInt32]]]
    }

    @Test(
        "every code point is classified and normalized as in the Rust library",
        .enabled(if: directory.map { FileManager.default.fileExists(atPath: $0 + "/unicode-classes.json") } ?? false))
    func unicodeClassesMatch() throws {
        let url = URL(fileURLWithPath: try #require(Self.directory)).appendingPathComponent("unicode-classes.json")
        let classes = try JSONDecoder().decode(UnicodeClasses.self, from: Data(contentsOf: url))

        func normalized(_ scalars: [Unicode.Scalar], _ normalizer: Normalizer) -> [Unicode.Scalar] {
            var text = NormalizedText(scalars: scalars, startsAtOriginalStart: true)
            normalizer.normalize(&text)
            return text.scalars
        }
        let clean = Normalizer.bert(cleanText: true, handleChineseCharacters: false, stripAccents: false, lowercase: false)
        let stripNonspacing = Normalizer.bert(cleanText: false, handleChineseCharacters: false, stripAccents: true, lowercase: false)
        let predicates: [String: (Unicode.Scalar) -> Bool] = [
            "bert_removed": { normalized([$0], clean).isEmpty },
            "bert_mn": { $0.value >= 0x300 && normalized(["a", $0], stripNonspacing) == ["a"] },
            "marks": { $0.value >= 0x300 && normalized([$0], .stripAccents).isEmpty },
            "bert_punctuation": { $0.isBertPunctuation },
            "regex_letter": { $0.isLetter },
            "regex_number": { $0.isNumber },
            "regex_space": { $0.isWhiteSpace },
            "numeric": { $0.isNumeric },
            "whitespace": { $0.isWhiteSpace },
            "word": { $0.isWordCharacter },
            "single_word": { $0.isWordCharacter },
        ]
        #expect(Set(predicates.keys) == Set(classes.sets.keys))
        for (name, ranges) in classes.sets.sorted(by: { $0.key < $1.key }) {
            guard let predicate = predicates[name] else { continue }
            var rust = Set<UInt32>()
            for range in ranges { rust.formUnion(range[0]...range[1]) }
            let differing = (0..<UInt32(0x110000)).filter { value in
                guard let scalar = Unicode.Scalar(value) else { return false }
                return predicate(scalar) != rust.contains(value)
            }
            #expect(differing.isEmpty, "\(name): \(differing.count) code points differ, e.g. \(differing.prefix(8).map { String($0, radix: 16) })")
        }

        let forms: [String: Normalizer] = [
            "NFD": .unicode(.nfd), "NFKD": .unicode(.nfkd), "NFC": .unicode(.nfc), "NFKC": .unicode(.nfkc), "Lowercase": .lowercase,
        ]
        for (name, normalizer) in forms.sorted(by: { $0.key < $1.key }) {
            let changed = try #require(classes.mappings[name])
            let differing = (0..<UInt32(0x110000)).filter { value in
                guard let scalar = Unicode.Scalar(value) else { return false }
                let expected = changed[String(value)] ?? [value]
                return normalized([scalar], normalizer).map(\.value) != expected
            }
            #expect(differing.isEmpty, "\(name): \(differing.count) code points differ, e.g. \(differing.prefix(8).map { String($0, radix: 16) })")
        }
    }
}
