/// A problem with a shard file or manifest, as a sentence for the user: which file, which
/// part (header, block, index, trailer), what was checked, what was expected and what was
/// found. Readers throw it; `ShardReader.verify()` returns a list of them.
public struct ShardError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Part: Equatable, Sendable, CustomStringConvertible {
        case file
        case header
        case block(Int)
        case index
        case trailer
        case manifest

        public var description: String {
            switch self {
            case .file: "file"
            case .header: "header"
            case .block(let number): "block \(number)"
            case .index: "index"
            case .trailer: "trailer"
            case .manifest: "manifest"
            }
        }
    }

    public let path: String
    public let part: Part
    /// What was checked, e.g. "CRC-32C of the stored block bytes".
    public let check: String
    public let expected: String
    public let found: String
    /// Extra context, e.g. the block's rows and byte range, or what to do.
    public let detail: String

    public init(path: String, part: Part, check: String, expected: String, found: String, detail: String = "") {
        self.path = path
        self.part = part
        self.check = check
        self.expected = expected
        self.found = found
        self.detail = detail
    }

    public var description: String {
        var text = "\(path): \(part): \(check): expected \(expected), found \(found)"
        if !detail.isEmpty { text += " (\(detail))" }
        return text
    }
}
