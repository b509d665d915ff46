/// One context window: what the model runs, and where each row came from.
public struct PackedWindow: Sendable, Equatable {
    /// Unique across the collection.
    public let id: Int64
    public let tokens: [Int32]
    /// Document id of each token. Special tokens belong to the document next to them: a
    /// leading [CLS]/BOS to the first document's token, a separator or trailing [SEP] to the
    /// document it closes.
    public let documents: [Int64]
    /// Whether each token is a special token added by packing (BOS/CLS/SEP/separator).
    public let special: [Bool]
}

/// Packs a stream of tokenized documents into windows of `context` tokens: each window is
/// `prefix + content + suffix` (for BERT `[CLS] … [SEP]`, for Llama `BOS …`), and the content
/// is documents joined by `separator`. A document longer than a window continues in the next.
public struct WindowPacker: Sendable {
    public let context: Int
    public let prefix: [Int32]
    public let suffix: [Int32]
    public let separator: [Int32]
    private var nextWindowID: Int64
    private var content: [(token: Int32, document: Int64, special: Bool)] = []

    public init(context: Int, prefix: [Int32], suffix: [Int32], separator: [Int32], firstWindowID: Int64 = 0) {
        precondition(context > prefix.count + suffix.count, "context \(context) leaves no room between the special tokens")
        self.context = context
        self.prefix = prefix
        self.suffix = suffix
        self.separator = separator
        self.nextWindowID = firstWindowID
    }

    private var capacity: Int { context - prefix.count - suffix.count }

    /// Adds one document's tokens (without special tokens) and returns the windows it filled.
    public mutating func add(document: Int64, tokens: [Int32]) -> [PackedWindow] {
        guard !tokens.isEmpty else { return [] }
        if !content.isEmpty {
            content += separator.map { ($0, content[content.count - 1].document, true) }
        }
        content += tokens.map { ($0, document, false) }
        var windows: [PackedWindow] = []
        while content.count >= capacity {
            windows.append(emit(Array(content.prefix(capacity))))
            content.removeFirst(capacity)
            // A separator that would open the next window adds nothing: it already closed this one.
            if content.count >= separator.count && !separator.isEmpty
                && zip(content.prefix(separator.count), separator).allSatisfy({ $0.0.token == $0.1 && $0.0.special })
            {
                content.removeFirst(separator.count)
            }
        }
        return windows
    }

    /// The last, shorter window, if any content is left.
    public mutating func finish() -> PackedWindow? {
        guard !content.isEmpty else { return nil }
        defer { content.removeAll() }
        return emit(content)
    }

    private mutating func emit(_ body: [(token: Int32, document: Int64, special: Bool)]) -> PackedWindow {
        var body = body
        // Do not end with a separator that repeats the closing suffix ([SEP] [SEP]).
        if !suffix.isEmpty && suffix == separator && body.count > separator.count
            && zip(body.suffix(separator.count), separator).allSatisfy({ $0.0.token == $0.1 && $0.0.special })
        {
            body.removeLast(separator.count)
        }
        let first = body.first!.document, last = body.last!.document
        let tokens = prefix + body.map(\.token) + suffix
        let documents = prefix.map { _ in first } + body.map(\.document) + suffix.map { _ in last }
        let special = prefix.map { _ in true } + body.map(\.special) + suffix.map { _ in true }
        defer { nextWindowID += 1 }
        return PackedWindow(id: nextWindowID, tokens: tokens, documents: documents, special: special)
    }
}
