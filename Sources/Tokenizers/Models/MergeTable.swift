/// BPE merges: (left id, right id) to (rank, merged id), in an open-addressing table because
/// the merge loop looks pairs up far more often than anything else.
struct MergeTable: Sendable {
    private static let empty = UInt64.max
    private var keys: [UInt64]
    private var values: [UInt64]
    private let shift: UInt64

    /// Later merges of the same pair replace earlier ones, as collecting into a HashMap does in
    /// the Rust library.
    init(merges: [(left: Int32, right: Int32, merged: Int32)]) {
        var bits: UInt64 = 4
        while (1 << bits) < merges.count * 2 { bits += 1 }
        keys = [UInt64](repeating: Self.empty, count: 1 << bits)
        values = [UInt64](repeating: 0, count: 1 << bits)
        shift = 64 - bits
        for (rank, merge) in merges.enumerated() {
            insert(Self.key(merge.left, merge.right), rank: Int32(rank), merged: merge.merged)
        }
    }

    @inline(__always)
    private static func key(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    @inline(__always)
    private func slot(for key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    private mutating func insert(_ key: UInt64, rank: Int32, merged: Int32) {
        let mask = keys.count - 1
        var index = slot(for: key)
        while keys[index] != Self.empty && keys[index] != key { index = (index + 1) & mask }
        keys[index] = key
        values[index] = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
    }

    @inline(__always)
    func lookup(_ left: Int32, _ right: Int32) -> (rank: Int32, merged: Int32)? {
        let key = Self.key(left, right)
        let mask = keys.count - 1
        var index = slot(for: key)
        while true {
            let found = keys[index]
            if found == key {
                let value = values[index]
                return (Int32(bitPattern: UInt32(truncatingIfNeeded: value >> 32)), Int32(bitPattern: UInt32(truncatingIfNeeded: value)))
            }
            if found == Self.empty { return nil }
            index = (index + 1) & mask
        }
    }
}
