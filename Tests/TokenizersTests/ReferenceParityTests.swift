import Testing
import Tokenizers

/// Every fixture case must give exactly the Python library's ids, with and without special
/// tokens. A failure names the text, both id lists and the first differing position.
@Suite("Reference parity")
struct ReferenceParityTests {
    @Test("ids match the Rust tokenizers library", arguments: ReferenceFixture.names)
    func idsMatch(fixtureName: String) throws {
        let (fixture, path) = try ReferenceFixture.load(fixtureName)
        let tokenizer = try Tokenizer(contentsOfFile: path)
        #expect(fixture.cases.count == 85)
        var passed = 0
        for (index, testCase) in fixture.cases.enumerated() {
            let withSpecial = tokenizer.encode(testCase.text)
            let withoutSpecial = tokenizer.encode(testCase.text, addSpecialTokens: false)
            #expect(
                withSpecial == testCase.ids,
                "\(fixtureName) case \(index) with special tokens: \(mismatch(tokenizer, testCase.text, expected: testCase.ids, actual: withSpecial, tokens: testCase.tokens))"
            )
            #expect(
                withoutSpecial == testCase.idsNoSpecial,
                "\(fixtureName) case \(index) without special tokens: \(mismatch(tokenizer, testCase.text, expected: testCase.idsNoSpecial, actual: withoutSpecial, tokens: nil))"
            )
            if withSpecial == testCase.ids && withoutSpecial == testCase.idsNoSpecial { passed += 1 }
        }
        print("\(fixtureName): \(passed)/\(fixture.cases.count) cases match")
    }

    @Test("special ids around a single sequence", arguments: ReferenceFixture.names)
    func singleSequenceSpecials(fixtureName: String) throws {
        let (fixture, path) = try ReferenceFixture.load(fixtureName)
        let tokenizer = try Tokenizer(contentsOfFile: path)
        // ids = prefix + ids_no_special + suffix; the first non-empty case fixes the split.
        let sample = try #require(fixture.cases.first { !$0.idsNoSpecial.isEmpty })
        let extra = sample.ids.count - sample.idsNoSpecial.count
        let offset = try #require(
            (0...max(extra, 0)).first { Array(sample.ids.dropFirst($0).prefix(sample.idsNoSpecial.count)) == sample.idsNoSpecial })
        let prefix = Array(sample.ids.prefix(offset))
        let suffix = Array(sample.ids.dropFirst(offset + sample.idsNoSpecial.count))
        #expect(tokenizer.singleSequencePrefix == prefix)
        #expect(tokenizer.singleSequenceSuffix == suffix)
        // And the same wrapping holds for every case, the empty text included.
        for testCase in fixture.cases {
            #expect(testCase.ids == prefix + testCase.idsNoSpecial + suffix)
        }
    }

    @Test("tokens and ids map both ways", arguments: ReferenceFixture.names)
    func vocabularyLookups(fixtureName: String) throws {
        let (fixture, path) = try ReferenceFixture.load(fixtureName)
        let tokenizer = try Tokenizer(contentsOfFile: path)
        for testCase in fixture.cases {
            for (id, token) in zip(testCase.ids, testCase.tokens) {
                #expect(tokenizer.token(forID: id) == token, "\(fixtureName): id \(id)")
                #expect(tokenizer.id(forToken: token) == id, "\(fixtureName): token \(token)")
            }
        }
        let highest = fixture.cases.flatMap(\.ids).max() ?? 0
        #expect(tokenizer.vocabularySize > Int(highest))
        #expect(tokenizer.token(forID: Int32(tokenizer.vocabularySize)) == nil)
        #expect(tokenizer.token(forID: -1) == nil)
    }

    private func mismatch(_ tokenizer: Tokenizer, _ text: String, expected: [Int32], actual: [Int32], tokens: [String]?) -> String {
        let firstDifference = zip(expected, actual).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(expected.count, actual.count)
        let actualTokens = actual.map { tokenizer.token(forID: $0) ?? "?" }
        var message = "text \"\(visible(text))\"\n  expected \(expected)\n  actual   \(actual)\n  first difference at \(firstDifference)"
        if let tokens { message += "\n  expected tokens \(tokens)" }
        message += "\n  actual tokens   \(actualTokens)"
        return message
    }
}

@Suite("Vocabulary facts")
struct VocabularyFactTests {
    @Test(
        "padding id and special ids",
        arguments: [
            ("tiny-bert-wordpiece", 0, [0, 1, 2, 3, 4], 600),
            ("minilm-wordpiece", 0, [0, 100, 101, 102, 103], 30522),
            ("tiny-gpt2-bytelevel-bpe", nil, [450], 451),
            ("llama3-bpe", nil, [480, 481, 482, 483, 484], 485),
            ("sp-bpe", nil, [0, 1, 2], 556),
            ("sp-bpe-legacy", nil, [0, 1, 2], 556),
        ] as [(String, Int32?, Set<Int32>, Int)])
    func facts(fixture: String, padding: Int32?, specials: Set<Int32>, size: Int) throws {
        let tokenizer = try Tokenizer(contentsOfFile: try ReferenceFixture.load(fixture).tokenizerPath)
        #expect(tokenizer.paddingID == padding)
        #expect(tokenizer.specialTokenIDs == specials)
        #expect(tokenizer.vocabularySize == size)
    }
}
