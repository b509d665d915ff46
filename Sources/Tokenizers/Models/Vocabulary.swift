/// A model's `vocab` object: token to id both ways.
struct Vocabulary: Sendable {
    let table: TokenTable
    /// Token text by id; nil where no token has that id.
    let tokens: [String?]

    /// Far above any real vocabulary; a larger id is a corrupt file, not a reason to allocate
    /// gigabytes for the id-to-token array.
    static let maximumID = (1 << 24) - 1

    init(json: JSONObject, in component: String) throws(TokenizerError) {
        var entries: [(bytes: [UInt8], id: Int32)] = []
        entries.reserveCapacity(json.entries.count)
        var highest = -1
        for (token, value) in json.entries {
            guard let id = value.integer, id >= 0, id <= Self.maximumID else {
                throw TokenizerError.invalid(
                    "\(component) vocab entry \"\(token)\" has an invalid id (\(value.integer.map(String.init) ?? value.kindName)); ids must be integers from 0 to \(Self.maximumID)")
            }
            entries.append((Array(token.utf8), Int32(id)))
            highest = max(highest, id)
        }
        table = TokenTable(entries: entries)
        var tokens = [String?](repeating: nil, count: highest + 1)
        for (token, value) in json.entries { tokens[value.integer!] = token }
        self.tokens = tokens
    }

    func id(_ token: String) -> Int32? {
        table.id(for: Array(token.utf8))
    }

    /// The id of a token that a model option names (unk_token and the like), or an error.
    func requiredID(_ token: String, role: String, in component: String) throws(TokenizerError) -> Int32 {
        guard let id = id(token) else {
            throw TokenizerError.invalid("\(component) names \"\(token)\" as its \(role), but the vocab has no such token")
        }
        return id
    }
}
