import Foundation

/// The committed reference fixtures from Tests/Reference/make_fixtures.py: each file names a
/// tokenizer.json and lists texts with the ids the Python library produced.
struct ReferenceFixture: Decodable {
    struct Case: Decodable {
        let text: String
        let ids: [Int32]
        let idsNoSpecial: [Int32]
        let tokens: [String]

        enum CodingKeys: String, CodingKey {
            case text, ids, tokens
            case idsNoSpecial = "ids_no_special"
        }
    }

    let tokenizer: String
    let cases: [Case]

    static let names = [
        "tiny-bert-wordpiece", "tiny-gpt2-bytelevel-bpe", "llama3-bpe", "sp-bpe", "sp-bpe-legacy", "minilm-wordpiece",
    ]

    /// The package root, found from this file's path so tests run from any directory.
    static let packageRoot: URL = {
        var directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while directory.path != "/" {
            if FileManager.default.fileExists(atPath: directory.appendingPathComponent("Package.swift").path) {
                return directory
            }
            directory.deleteLastPathComponent()
        }
        fatalError("no Package.swift above \(#filePath)")
    }()

    static let directory = packageRoot.appendingPathComponent("Tests/Reference/fixtures/tokenizers")

    static func load(_ name: String) throws -> (fixture: ReferenceFixture, tokenizerPath: String) {
        let url = directory.appendingPathComponent("\(name).json")
        let fixture = try JSONDecoder().decode(ReferenceFixture.self, from: Data(contentsOf: url))
        let tokenizerPath = directory.appendingPathComponent(fixture.tokenizer).standardizedFileURL.path
        return (fixture, tokenizerPath)
    }
}

/// A text made readable in failure messages: control and invisible characters as escapes.
func visible(_ text: String) -> String {
    var output = ""
    for scalar in text.unicodeScalars {
        let value = scalar.value
        if value < 0x20 || value == 0x7F || (0x80..<0xA0).contains(value) || scalar.properties.generalCategory == .format {
            output += "\\u{\(String(value, radix: 16))}"
        } else {
            output.unicodeScalars.append(scalar)
        }
    }
    return output
}
