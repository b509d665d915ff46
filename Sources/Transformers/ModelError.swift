/// Why a model could not be loaded or run: each case says what, where and what to do.
public enum ModelError: Error, Equatable, CustomStringConvertible {
    case missingFile(path: String, hint: String)
    case invalidConfig(path: String, problem: String)
    case unsupportedModelType(String)
    case unsupportedOption(name: String, value: String, family: String)
    case missingTensor(name: String, file: String)
    case unexpectedTensor(name: String, file: String)
    case wrongShape(name: String, expected: [Int], found: [Int])
    case unknownHook(name: String, valid: [String])
    case tokenOutOfRange(token: Int32, vocabularySize: Int)
    case sequenceTooLong(length: Int, maximum: Int)
    case emptyRequest(String)
    case noLanguageModelHead(String)

    public var description: String {
        switch self {
        case .missingFile(let path, let hint):
            "model file \(path) is missing; \(hint)"
        case .invalidConfig(let path, let problem):
            "\(path): \(problem)"
        case .unsupportedModelType(let type):
            "model_type \"\(type)\" is not supported; supported: bert, gpt2, llama, mistral, qwen2"
        case .unsupportedOption(let name, let value, let family):
            "\(family) option \(name) = \(value) is not supported"
        case .missingTensor(let name, let file):
            "tensor \(name) is missing from \(file); is this checkpoint the architecture config.json says?"
        case .unexpectedTensor(let name, let file):
            "tensor \(name) in \(file) is not part of the architecture config.json describes"
        case .wrongShape(let name, let expected, let found):
            "tensor \(name) has shape \(found), expected \(expected) from config.json"
        case .unknownHook(let name, let valid):
            "unknown hook \(name); valid hooks for this model: \(valid.joined(separator: ", "))"
        case .tokenOutOfRange(let token, let size):
            "token id \(token) is outside the vocabulary of \(size) tokens"
        case .sequenceTooLong(let length, let maximum):
            "a sequence of \(length) tokens exceeds the model's \(maximum) positions; lower --context"
        case .emptyRequest(let what):
            "nothing to run: \(what)"
        case .noLanguageModelHead(let why):
            "no language-model head: \(why)"
        }
    }
}
