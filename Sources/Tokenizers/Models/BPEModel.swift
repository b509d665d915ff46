import Synchronization

/// Byte-pair encoding as the Rust library runs it: each character starts as a symbol (unknown
/// ones become byte-fallback tokens `<0xNN>` or the unknown token), then the lowest-ranked
/// adjacent pair is merged, leftmost first, until no pair has a merge.
final class BPEModel: Sendable {
    let vocabulary: Vocabulary
    private let merges: MergeTable
    private let unknownID: Int32?
    private let fusesUnknown: Bool
    /// `<0x00>`…`<0xFF>` ids when byte_fallback is on; -1 where the vocab lacks one.
    private let byteFallbackIDs: [Int32]?
    private let continuationPrefix: [UInt8]?
    private let endOfWordSuffix: [UInt8]?
    private let ignoresMerges: Bool
    /// Id of every single-scalar token below U+10000 (else -1): the first lookup of every
    /// character, kept out of the hash table.
    private let basicScalarIDs: [Int32]
    private let cache = WordCache()

    init(json: JSONObject) throws(TokenizerError) {
        let component = "BPE model"
        if let dropout = json.value("dropout") {
            guard dropout.number == 0 else {
                throw TokenizerError.unsupported(
                    "BPE dropout \(dropout.number.map { String($0) } ?? dropout.kindName)",
                    supported: "deterministic BPE (dropout null)")
            }
        }
        let vocabulary = try Vocabulary(json: try json.object("vocab", in: component), in: component)
        self.vocabulary = vocabulary
        let prefix = try json.optionalString("continuing_subword_prefix", in: component)
        continuationPrefix = prefix.map { Array($0.utf8) }
        endOfWordSuffix = try json.optionalString("end_of_word_suffix", in: component).map { Array($0.utf8) }
        fusesUnknown = try json.bool("fuse_unk", default: false, in: component)
        ignoresMerges = try json.bool("ignore_merges", default: false, in: component)
        // A missing unk token only fails in Rust once a word needs it; here such characters are
        // dropped instead, since encode cannot fail.
        unknownID = try json.optionalString("unk_token", in: component).flatMap { vocabulary.id($0) }
        if try json.bool("byte_fallback", default: false, in: component) {
            byteFallbackIDs = (0..<256).map { byte in
                let hex = String(byte, radix: 16, uppercase: true)
                return vocabulary.id("<0x\(hex.count == 1 ? "0" + hex : hex)>") ?? -1
            }
        } else {
            byteFallbackIDs = nil
        }

        var basic = [Int32](repeating: -1, count: 0x10000)
        for (bytes, id) in vocabulary.table.allEntries {
            let scalars = Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
            if scalars.count == 1, scalars[0].value < 0x10000, scalars[0].utf8Length == bytes.count {
                basic[Int(scalars[0].value)] = id
            }
        }
        basicScalarIDs = basic

        var mergeList: [(left: Int32, right: Int32, merged: Int32)] = []
        let prefixLength = continuationPrefix?.count ?? 0
        for (rank, item) in (try json.array("merges", in: component)).enumerated() {
            let pair: (String, String)
            if let text = item.string, let space = text.utf8.firstIndex(of: UInt8(ascii: " ")) {
                pair = (String(text[..<space]), String(text[text.utf8.index(after: space)...]))
            } else if let parts = item.array, parts.count == 2, let left = parts[0].string, let right = parts[1].string {
                pair = (left, right)
            } else {
                throw TokenizerError.invalid("\(component) merge \(rank + 1) is neither \"a b\" nor [\"a\", \"b\"]")
            }
            guard let left = vocabulary.id(pair.0), let right = vocabulary.id(pair.1) else {
                throw TokenizerError.invalid(
                    "\(component) merge \(rank + 1) (\"\(pair.0)\" \"\(pair.1)\") names a token missing from the vocab")
            }
            // The merged token drops the right side's continuation prefix.
            let rightBytes = Array(pair.1.utf8)
            let mergedBytes = Array(pair.0.utf8) + rightBytes.dropFirst(min(prefixLength, rightBytes.count))
            guard let merged = vocabulary.table.id(for: mergedBytes) else {
                throw TokenizerError.invalid(
                    "\(component) merge \(rank + 1) produces \"\(String(decoding: mergedBytes, as: UTF8.self))\", which is missing from the vocab")
            }
            mergeList.append((left, right, merged))
        }
        merges = MergeTable(merges: mergeList)
    }

    func tokenize(_ word: [Unicode.Scalar], into ids: inout [Int32]) {
        guard !word.isEmpty else { return }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(word.count + 4)
        word.appendUTF8(to: &bytes)
        if ignoresMerges, let id = vocabulary.table.id(for: bytes) {
            ids.append(id)
            return
        }
        let key = WordCache.Key(bytes)
        if let cached = cache.lookup(key) {
            ids.append(contentsOf: cached)
            return
        }
        let result = merge(word)
        if bytes.count < WordCache.maximumWordLength { cache.store(result, for: key) }
        ids.append(contentsOf: result)
    }

    /// One symbol of a word being merged; a doubly linked list threaded through an array.
    private struct Symbol {
        var id: Int32
        var previous: Int32
        var next: Int32
        /// Length in bytes; 0 once merged into the symbol on its left.
        var length: Int32
    }

    /// `Word::merge_all` from the Rust library, step for step, so ties and stale queue entries
    /// resolve the same way.
    private func merge(_ word: [Unicode.Scalar]) -> [Int32] {
        var symbols: [Symbol] = []
        symbols.reserveCapacity(word.count)
        func add(_ id: Int32, _ length: Int) {
            let count = Int32(symbols.count)
            if count > 0 { symbols[Int(count) - 1].next = count }
            symbols.append(Symbol(id: id, previous: count - 1, next: -1, length: Int32(length)))
        }

        var pendingUnknown: (id: Int32, length: Int)?
        var key: [UInt8] = []
        for (index, scalar) in word.enumerated() {
            let isFirst = index == 0
            let isLast = index == word.count - 1
            let length = scalar.utf8Length
            let usesAffix = (!isFirst && continuationPrefix != nil) || (isLast && endOfWordSuffix != nil)
            var id: Int32?
            if !usesAffix && scalar.value < 0x10000 {
                let basic = basicScalarIDs[Int(scalar.value)]
                id = basic >= 0 ? basic : nil
            }
            if id == nil {
                key.removeAll(keepingCapacity: true)
                if !isFirst, let prefix = continuationPrefix { key.append(contentsOf: prefix) }
                scalar.appendUTF8(to: &key)
                if isLast, let suffix = endOfWordSuffix { key.append(contentsOf: suffix) }
                if usesAffix || scalar.value >= 0x10000 { id = vocabulary.table.id(for: key) }
            }
            if let id {
                if let unknown = pendingUnknown {
                    add(unknown.id, unknown.length)
                    pendingUnknown = nil
                }
                add(id, length)
                continue
            }
            // Byte fallback covers every byte of the lookup key (affixes included) or none.
            if let fallback = byteFallbackIDs, key.allSatisfy({ fallback[Int($0)] >= 0 }) {
                for byte in key { add(fallback[Int(byte)], 1) }
                continue
            }
            if let unknownID {
                if let unknown = pendingUnknown {
                    if fusesUnknown {
                        pendingUnknown = (unknown.id, unknown.length + length)
                    } else {
                        add(unknown.id, unknown.length)
                        pendingUnknown = (unknownID, length)
                    }
                } else {
                    pendingUnknown = (unknownID, length)
                }
            }
        }
        if let unknown = pendingUnknown { add(unknown.id, unknown.length) }

        var queue = MergeQueue()
        for index in 0..<max(symbols.count - 1, 0) {
            if let merge = merges.lookup(symbols[index].id, symbols[index + 1].id) {
                queue.push(rank: merge.rank, position: Int32(index), merged: merge.merged)
            }
        }
        while let top = queue.pop() {
            let position = Int(top.position)
            if symbols[position].length == 0 { continue }
            let nextPosition = Int(symbols[position].next)
            if nextPosition < 0 { continue }
            let right = symbols[nextPosition]
            // Skip entries made stale by an earlier merge.
            guard let current = merges.lookup(symbols[position].id, right.id), current.merged == top.merged else { continue }

            symbols[position].id = top.merged
            symbols[position].length += right.length
            symbols[position].next = right.next
            symbols[nextPosition].length = 0
            if right.next >= 0 && Int(right.next) < symbols.count {
                symbols[Int(right.next)].previous = Int32(position)
            }
            let merged = symbols[position]
            if merged.previous >= 0 {
                let previous = symbols[Int(merged.previous)]
                if let pair = merges.lookup(previous.id, merged.id) {
                    queue.push(rank: pair.rank, position: merged.previous, merged: pair.merged)
                }
            }
            if merged.next >= 0 && Int(merged.next) < symbols.count {
                if let pair = merges.lookup(merged.id, symbols[Int(merged.next)].id) {
                    queue.push(rank: pair.rank, position: Int32(position), merged: pair.merged)
                }
            }
        }
        var result: [Int32] = []
        result.reserveCapacity(symbols.count)
        for symbol in symbols where symbol.length != 0 { result.append(symbol.id) }
        return result
    }
}

/// A binary min-heap of candidate merges ordered by (rank, position), as Rust's
/// `BinaryHeap<Merge>` with its reversed ordering pops them.
private struct MergeQueue {
    /// rank << 32 | position: one integer comparison orders both.
    private var keys: [UInt64] = []
    private var mergedIDs: [Int32] = []

    mutating func push(rank: Int32, position: Int32, merged: Int32) {
        keys.append(UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: position)))
        mergedIDs.append(merged)
        var child = keys.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if keys[parent] <= keys[child] { break }
            keys.swapAt(parent, child)
            mergedIDs.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> (position: Int32, merged: Int32)? {
        guard let topKey = keys.first else { return nil }
        let top = (Int32(truncatingIfNeeded: topKey & 0xFFFF_FFFF), mergedIDs[0])
        let lastKey = keys.removeLast()
        let lastID = mergedIDs.removeLast()
        if !keys.isEmpty {
            keys[0] = lastKey
            mergedIDs[0] = lastID
            var parent = 0
            while true {
                let left = 2 * parent + 1
                if left >= keys.count { break }
                let right = left + 1
                let smaller = right < keys.count && keys[right] < keys[left] ? right : left
                if keys[parent] <= keys[smaller] { break }
                keys.swapAt(parent, smaller)
                mergedIDs.swapAt(parent, smaller)
                parent = smaller
            }
        }
        return top
    }
}

/// Recent words and their ids. Corpora repeat words constantly, and merging is the costly part
/// of BPE. Bounded: once full it stops taking new words, like the Rust library's cache.
final class WordCache: Sendable {
    static let capacity = 10_000
    /// Longer words are rare and would crowd the cache (Rust's MAX_LENGTH).
    static let maximumWordLength = 256

    /// A word's UTF-8 bytes with their hash computed once (bytes, not String: see TokenTable).
    struct Key: Hashable, Sendable {
        let bytes: [UInt8]
        let hash: UInt64

        init(_ bytes: [UInt8]) {
            self.bytes = bytes
            var hash: UInt64 = 0xCBF2_9CE4_8422_2325
            for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
            self.hash = hash
        }

        static func == (a: Key, b: Key) -> Bool { a.hash == b.hash && a.bytes == b.bytes }
        func hash(into hasher: inout Hasher) { hasher.combine(hash) }
    }

    private let words = Mutex<[Key: [Int32]]>([:])

    func lookup(_ key: Key) -> [Int32]? {
        words.withLock { $0[key] }
    }

    func store(_ ids: [Int32], for key: Key) {
        words.withLock { words in
            if words.count < Self.capacity { words[key] = ids }
        }
    }
}
