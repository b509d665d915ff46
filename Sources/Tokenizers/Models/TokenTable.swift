/// Token text to id, keyed by exact UTF-8 bytes.
///
/// Why not `[String: Int32]`: Swift compares strings by canonical equivalence, so "é" and
/// "e\u{301}" would be the same key, while the Rust library tells them apart. Byte keys in one
/// arena also let lookups run on slices of a word without building a String, and a hash that
/// can be extended byte by byte lets WordPiece try every prefix of a word for the cost of one.
///
/// Lookups are bound by memory latency, so each slot carries 32 bits of the hash: a probe that
/// hits the wrong key almost never has to read that key's bytes.
struct TokenTable: Sendable {
    private struct Entry {
        var start: Int32
        var length: Int32
        var id: Int32
    }

    private var arena: [UInt8] = []
    private var entries: [Entry] = []
    /// Open addressing: hash fingerprint << 32 | (entry index + 1); 0 is an empty slot.
    private var slots: [UInt64]
    private var mask: Int
    /// The longest key in bytes: longer candidates cannot match.
    private(set) var maximumKeyLength = 0

    var count: Int { entries.count }

    /// The running hash of no bytes; extend it with `hash(_:adding:)`.
    static let emptyHash: UInt64 = 0xCBF2_9CE4_8422_2325

    /// FNV-1a, one byte at a time.
    @inline(__always)
    static func hash(_ hash: UInt64, adding byte: UInt8) -> UInt64 {
        (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
    }

    @inline(__always)
    static func hash(_ hash: UInt64, adding bytes: UnsafeBufferPointer<UInt8>) -> UInt64 {
        var hash = hash
        for byte in bytes { hash = Self.hash(hash, adding: byte) }
        return hash
    }

    /// Builds the table; a later entry with the same bytes replaces an earlier one, as a map
    /// built from JSON does in the Rust library.
    init(entries newEntries: some Collection<(bytes: [UInt8], id: Int32)>) {
        var capacity = 16
        while capacity < newEntries.count * 2 { capacity *= 2 }
        slots = [UInt64](repeating: 0, count: capacity)
        mask = capacity - 1
        arena.reserveCapacity(newEntries.reduce(0) { $0 + $1.bytes.count })
        entries.reserveCapacity(newEntries.count)
        for entry in newEntries { insert(entry.bytes, id: entry.id) }
    }

    private mutating func insert(_ key: [UInt8], id: Int32) {
        let hash = key.withUnsafeBufferPointer { Self.hash(Self.emptyHash, adding: $0) }
        if let index = key.withUnsafeBufferPointer({ find(hash: hash, prefix: nil, key: $0) }) {
            entries[index].id = id
            return
        }
        var slot = Self.slot(hash) & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = Self.fingerprint(hash) | UInt64(entries.count + 1)
        entries.append(Entry(start: Int32(arena.count), length: Int32(key.count), id: id))
        arena.append(contentsOf: key)
        maximumKeyLength = max(maximumKeyLength, key.count)
    }

    @inline(__always)
    private static func slot(_ hash: UInt64) -> Int {
        Int(truncatingIfNeeded: hash ^ (hash >> 29))
    }

    @inline(__always)
    private static func fingerprint(_ hash: UInt64) -> UInt64 {
        hash & 0xFFFF_FFFF_0000_0000
    }

    func id(for key: [UInt8]) -> Int32? {
        key.withUnsafeBufferPointer { id(for: $0) }
    }

    func id(for key: UnsafeBufferPointer<UInt8>) -> Int32? {
        id(hash: Self.hash(Self.emptyHash, adding: key), prefix: nil, key: key)
    }

    /// The id of `prefix + key`, given the running hash of those bytes.
    @inline(__always)
    func id(hash: UInt64, prefix: UnsafeBufferPointer<UInt8>?, key: UnsafeBufferPointer<UInt8>) -> Int32? {
        guard let index = find(hash: hash, prefix: prefix, key: key) else { return nil }
        return entries.withUnsafeBufferPointer { $0[index].id }
    }

    @inline(__always)
    private func find(hash: UInt64, prefix: UnsafeBufferPointer<UInt8>?, key: UnsafeBufferPointer<UInt8>) -> Int? {
        let prefixCount = prefix?.count ?? 0
        let length = prefixCount + key.count
        if length > maximumKeyLength { return nil }
        let fingerprint = Self.fingerprint(hash)
        return slots.withUnsafeBufferPointer { slots in
            var slot = Self.slot(hash) & mask
            while true {
                let packed = slots[slot]
                if packed == 0 { return nil }
                if packed & 0xFFFF_FFFF_0000_0000 == fingerprint {
                    let index = Int(truncatingIfNeeded: packed & 0xFFFF_FFFF) - 1
                    if matches(index, length: length, prefix: prefix, key: key) { return index }
                }
                slot = (slot + 1) & mask
            }
        }
    }

    @inline(__always)
    private func matches(_ index: Int, length: Int, prefix: UnsafeBufferPointer<UInt8>?, key: UnsafeBufferPointer<UInt8>) -> Bool {
        let entry = entries.withUnsafeBufferPointer { $0[index] }
        guard Int(entry.length) == length else { return false }
        return arena.withUnsafeBufferPointer { arena in
            var position = Int(entry.start)
            if let prefix {
                for byte in prefix {
                    if arena[position] != byte { return false }
                    position += 1
                }
            }
            for byte in key {
                if arena[position] != byte { return false }
                position += 1
            }
            return true
        }
    }

    /// Every (bytes, id) entry, in insertion order.
    var allEntries: [(bytes: [UInt8], id: Int32)] {
        entries.map { entry in
            (Array(arena[Int(entry.start)..<Int(entry.start + entry.length)]), entry.id)
        }
    }
}
