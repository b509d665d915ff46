/// Token text to id, keyed by exact UTF-8 bytes.
///
/// Why not `[String: Int32]`: Swift compares strings by canonical equivalence, so "é" and
/// "e\u{301}" would be the same key, while the Rust library tells them apart. Byte keys in one
/// arena also let lookups run on slices of a word without building a String.
struct TokenTable: Sendable {
    private var arena: [UInt8] = []
    private var keyStarts: [Int32] = []
    private var keyLengths: [Int32] = []
    private var ids: [Int32] = []
    /// Open addressing: an index into the key arrays, or -1 for an empty slot.
    private var slots: [Int32]
    private var mask: Int

    var count: Int { ids.count }

    /// Builds the table; a later entry with the same bytes replaces an earlier one, as a map
    /// built from JSON does in the Rust library.
    init(entries: some Collection<(bytes: [UInt8], id: Int32)>) {
        var capacity = 16
        while capacity < entries.count * 2 { capacity *= 2 }
        slots = [Int32](repeating: -1, count: capacity)
        mask = capacity - 1
        arena.reserveCapacity(entries.reduce(0) { $0 + $1.bytes.count })
        for entry in entries { insert(entry.bytes, id: entry.id) }
    }

    private mutating func insert(_ key: [UInt8], id: Int32) {
        let hash = key.withUnsafeBufferPointer { Self.hash(prefix: [], $0) }
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] >= 0 {
            let entry = Int(slots[slot])
            if keyMatches(entry, prefix: [], key) {
                ids[entry] = id
                return
            }
            slot = (slot + 1) & mask
        }
        slots[slot] = Int32(ids.count)
        keyStarts.append(Int32(arena.count))
        keyLengths.append(Int32(key.count))
        ids.append(id)
        arena.append(contentsOf: key)
    }

    func id(for key: [UInt8]) -> Int32? {
        key.withUnsafeBufferPointer { id(prefix: [], $0) }
    }

    func id(for key: UnsafeBufferPointer<UInt8>) -> Int32? {
        id(prefix: [], key)
    }

    /// The id of `prefix + key` (WordPiece's "##" continuation), without concatenating.
    func id(prefix: [UInt8], _ key: UnsafeBufferPointer<UInt8>) -> Int32? {
        let hash = Self.hash(prefix: prefix, key)
        var slot = Int(truncatingIfNeeded: hash) & mask
        while true {
            let entry = slots[slot]
            if entry < 0 { return nil }
            if keyMatches(Int(entry), prefix: prefix, key) { return ids[Int(entry)] }
            slot = (slot + 1) & mask
        }
    }

    /// Every (bytes, id) entry, in insertion order.
    var entries: [(bytes: [UInt8], id: Int32)] {
        ids.indices.map { entry in
            let start = Int(keyStarts[entry])
            return (Array(arena[start..<(start + Int(keyLengths[entry]))]), ids[entry])
        }
    }

    private func keyMatches(_ entry: Int, prefix: [UInt8], _ key: some Collection<UInt8>) -> Bool {
        let length = Int(keyLengths[entry])
        guard length == prefix.count + key.count else { return false }
        let start = Int(keyStarts[entry])
        return arena.withUnsafeBufferPointer { arena in
            var position = start
            for byte in prefix {
                if arena[position] != byte { return false }
                position += 1
            }
            for byte in key {
                if arena[position] != byte { return false }
                position += 1
            }
            return true
        }
    }

    /// FNV-1a over prefix then key, with the high bits folded in for the power-of-two mask.
    @inline(__always)
    private static func hash(prefix: [UInt8], _ key: some Collection<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in prefix {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        for byte in key {
            hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        return hash ^ (hash >> 29)
    }
}
