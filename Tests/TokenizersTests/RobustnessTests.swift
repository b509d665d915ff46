import Foundation
import Testing
import Tokenizers

/// Deterministic random numbers (xorshift64*), so a failing input reproduces.
struct Noise {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }

    /// Any scalar: mostly ASCII and common scripts, sometimes anything in Unicode.
    mutating func scalar() -> Unicode.Scalar {
        let ranges: [ClosedRange<UInt32>] = [0...0x7F, 0x80...0x7FF, 0x800...0xD7FF, 0xE000...0xFFFF, 0x10000...0x10FFFF]
        let range = ranges[below(ranges.count)]
        return Unicode.Scalar(range.lowerBound + UInt32(below(Int(range.upperBound - range.lowerBound) + 1)))!
    }
}

/// `encode` takes any String: nothing may crash, and every id must exist.
@Suite("Robustness")
struct RobustnessTests {
    static func tokenizer(_ name: String) throws -> Tokenizer {
        try Tokenizer(contentsOfFile: try ReferenceFixture.load(name).tokenizerPath)
    }

    private func checkIDs(_ tokenizer: Tokenizer, _ text: String, _ fixture: String) {
        let ids = tokenizer.encode(text)
        #expect(ids.allSatisfy { $0 >= 0 && Int($0) < tokenizer.vocabularySize }, "\(fixture): \(visible(text))")
        let plain = tokenizer.encode(text, addSpecialTokens: false)
        #expect(ids == tokenizer.singleSequencePrefix + plain + tokenizer.singleSequenceSuffix, "\(fixture): \(visible(text))")
    }

    @Test("edge-case texts", arguments: ReferenceFixture.names)
    func edgeCases(fixture: String) throws {
        let tokenizer = try Self.tokenizer(fixture)
        #expect(tokenizer.encode("", addSpecialTokens: false).isEmpty)
        #expect(tokenizer.encode("") == tokenizer.singleSequencePrefix + tokenizer.singleSequenceSuffix)
        let texts = [
            String(repeating: "a", count: 100_000),
            String(repeating: "ab ", count: 20_000),
            String(repeating: " ", count: 10_000),
            String(repeating: "\n\r\t ", count: 2_000),
            String(repeating: "\u{301}", count: 5_000),
            String(repeating: "🏳️‍🌈", count: 1_000),
            String(repeating: "我", count: 3_000),
            String(repeating: "1", count: 1_000),
            String(repeating: "'s", count: 1_000),
            String(repeating: "<s>[CLS]<|endoftext|>", count: 300),
            (0..<0x20).map { String(UnicodeScalar($0)!) }.joined(),
            "\u{0}\u{FEFF}\u{200B}\u{FFFD}\u{E000}\u{10FFFF}\u{378}",
        ]
        for text in texts { checkIDs(tokenizer, text, fixture) }
    }

    @Test("random scalars", arguments: ReferenceFixture.names)
    func randomScalars(fixture: String) throws {
        let tokenizer = try Self.tokenizer(fixture)
        var noise = Noise(seed: 7)
        for _ in 0..<300 {
            var text = ""
            for _ in 0..<noise.below(60) { text.unicodeScalars.append(noise.scalar()) }
            checkIDs(tokenizer, text, fixture)
        }
    }

    @Test("concurrent encodes agree with serial ones", arguments: ["tiny-gpt2-bytelevel-bpe", "minilm-wordpiece", "llama3-bpe"])
    func concurrentEncodes(fixture: String) async throws {
        let (reference, path) = try ReferenceFixture.load(fixture)
        let tokenizer = try Tokenizer(contentsOfFile: path)
        let texts = reference.cases.map(\.text)
        let serial = texts.map { tokenizer.encode($0) }
        let parallel = await withTaskGroup(of: (Int, [Int32]).self) { group in
            for round in 0..<8 {
                for (index, text) in texts.enumerated() where (index + round) % 2 == 0 {
                    group.addTask { (index, tokenizer.encode(text)) }
                }
            }
            var results: [(Int, [Int32])] = []
            for await result in group { results.append(result) }
            return results
        }
        for (index, ids) in parallel { #expect(ids == serial[index], "\(fixture) case \(index)") }
    }
}
