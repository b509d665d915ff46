import Foundation
import Testing
import Tokenizers

/// Bad input ends in a TokenizerError whose sentence names the problem, never in a crash.
@Suite("Errors")
struct ErrorTests {
    /// A minimal valid WordPiece tokenizer; `extra` adds top-level fields.
    fileprivate func json(model: String = #"{"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 1}}"#, extra: String = "") -> [UInt8] {
        Array(#"{"version": "1.0", "added_tokens": [], \#(extra) "model": \#(model)}"#.utf8)
    }

    fileprivate func loadError(_ bytes: [UInt8]) -> TokenizerError? {
        do {
            _ = try Tokenizer(jsonData: bytes)
            return nil
        } catch {
            return error
        }
    }

    @Test func aMinimalTokenizerLoads() throws {
        // No pre-tokenizer: the whole text is one word, unknown to WordPiece.
        #expect(try Tokenizer(jsonData: json()).encode("a a b") == [0])
        let tokenizer = try Tokenizer(jsonData: json(extra: #""pre_tokenizer": {"type": "WhitespaceSplit"},"#))
        #expect(tokenizer.encode("a a b") == [1, 1, 0])
        #expect(tokenizer.singleSequencePrefix.isEmpty && tokenizer.singleSequenceSuffix.isEmpty)
    }

    @Test(arguments: ["", "{", #"{"model": "#, #"{"model": {"type": "BPE",}}"#, "[1, 2", #"{"a": "unterminated}"#, "nul"])
    func malformedJSON(text: String) throws {
        let error = try #require(loadError(Array(text.utf8)))
        #expect(error.kind == .malformedJSON)
        #expect(error.description.contains("malformed JSON"), "\(error)")
        #expect(error.description.contains("line 1"), "\(error)")
    }

    @Test func jsonThatIsNotAnObject() throws {
        let error = try #require(loadError(Array("[1, 2, 3]".utf8)))
        #expect(error.kind == .malformedJSON)
        #expect(error.description.contains("not an object"))
    }

    @Test func missingModel() throws {
        let error = try #require(loadError(Array(#"{"version": "1.0"}"#.utf8)))
        #expect(error.kind == .invalidConfiguration)
        #expect(error.description.contains("\"model\""))
    }

    @Test func unsupportedModelType() throws {
        let error = try #require(loadError(json(model: #"{"type": "Unigram", "vocab": [["a", 0.0]]}"#)))
        #expect(error.kind == .unsupported)
        #expect(error.description.contains(#"unsupported model type "Unigram""#), "\(error)")
        #expect(error.description.contains("WordPiece, BPE and WordLevel"), "\(error)")
    }

    @Test func unsupportedNormalizer() throws {
        let error = try #require(loadError(json(extra: #""normalizer": {"type": "Precompiled", "precompiled_charsmap": ""},"#)))
        #expect(error.kind == .unsupported)
        #expect(error.description.contains(#"unsupported normalizer type "Precompiled""#), "\(error)")
    }

    @Test func unsupportedSplitRegexIsNamed() throws {
        let pattern = #"\\p{Han}+"#
        let extra = #""pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\#(pattern)"}, "behavior": "Isolated", "invert": false},"#
        let error = try #require(loadError(json(extra: extra)))
        #expect(error.kind == .unsupported)
        #expect(error.description.contains(#"\p{Han}+"#), "\(error)")
    }

    @Test func bpeMergeWithUnknownToken() throws {
        let model = #"{"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b", "a c"]}"#
        let error = try #require(loadError(json(model: model)))
        #expect(error.kind == .invalidConfiguration)
        #expect(error.description.contains("merge 2"), "\(error)")
    }

    @Test func bpeDropoutIsRefused() throws {
        let model = #"{"type": "BPE", "dropout": 0.1, "vocab": {"a": 0}, "merges": []}"#
        let error = try #require(loadError(json(model: model)))
        #expect(error.kind == .unsupported)
        #expect(error.description.contains("dropout"), "\(error)")
    }

    @Test func wordPieceWithoutItsUnknownToken() throws {
        let error = try #require(loadError(json(model: #"{"type": "WordPiece", "vocab": {"a": 0}}"#)))
        #expect(error.kind == .invalidConfiguration)
        #expect(error.description.contains("[UNK]"), "\(error)")
    }

    @Test func missingFileNamesThePath() throws {
        let path = "/nonexistent/actcluster/tokenizer.json"
        do {
            _ = try Tokenizer(contentsOfFile: path)
            Issue.record("loading a missing file succeeded")
        } catch {
            #expect(error.kind == .unreadableFile)
            #expect(error.file == path)
            #expect(error.description.hasPrefix(path), "\(error)")
            #expect(error.description.contains("cannot read"), "\(error)")
        }
    }

    @Test func errorsInAFileNameTheFile() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("tokenizers-error-\(getpid()).json").path
        try Data(json(model: #"{"type": "Unigram", "vocab": []}"#)).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try Tokenizer(contentsOfFile: path)
            Issue.record("an unsupported model loaded")
        } catch {
            #expect(error.file == path)
            #expect(error.description.hasPrefix("\(path): unsupported model type"), "\(error)")
        }
    }
}

extension ErrorTests {
    @Test func absurdVocabularyIDIsRefused() throws {
        let error = try #require(loadError(json(model: #"{"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 2000000000}}"#)))
        #expect(error.kind == .invalidConfiguration)
        #expect(error.description.contains("2000000000"), "\(error)")
    }
}
