/// Why a `tokenizer.json` could not be loaded. Every case reads as one sentence: what is wrong,
/// where (the file, once known), and what to do about it. Bad input never ends in a crash.
public struct TokenizerError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// The file could not be opened or read.
        case unreadableFile
        /// The bytes are not valid JSON.
        case malformedJSON
        /// Valid JSON, but it names a component or option this library does not implement.
        case unsupported
        /// A supported component whose settings are inconsistent (a merge naming a missing token, …).
        case invalidConfiguration
    }

    public let kind: Kind
    /// What is wrong, e.g. `unsupported normalizer type "Precompiled"`.
    public let problem: String
    /// What the user can do about it.
    public let remedy: String
    /// The file the problem was found in; nil when the JSON came from memory.
    public internal(set) var file: String?

    init(_ kind: Kind, _ problem: String, remedy: String, file: String? = nil) {
        self.kind = kind
        self.problem = problem
        self.remedy = remedy
        self.file = file
    }

    public var description: String {
        "\(file ?? "tokenizer JSON"): \(problem); \(remedy)"
    }

    /// The same error, attributed to `path` (the loaders parse bytes before they know a path).
    func located(in path: String) -> TokenizerError {
        var copy = self
        copy.file = path
        return copy
    }

    static func unsupported(_ what: String, supported: String) -> TokenizerError {
        TokenizerError(
            .unsupported, "unsupported \(what)",
            remedy: "this library implements \(supported); export the tokenizer with those or extend Sources/Tokenizers")
    }

    static func invalid(_ problem: String, remedy: String = "regenerate the file with the Hugging Face tokenizers library") -> TokenizerError {
        TokenizerError(.invalidConfiguration, problem, remedy: remedy)
    }
}
