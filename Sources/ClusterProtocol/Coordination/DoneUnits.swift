/// The finished units of a run, kept compactly: a coordinator holds one record per unit until
/// it writes the manifest, so a record is a few dozen bytes. Shard file names and hooks are
/// not stored; they follow from the unit, the lease and the run's hooks.
public struct DoneUnits: Equatable, Sendable, Sequence {
    public struct Record: Equatable, Sendable {
        /// The lease whose shards were accepted.
        public var lease: LeaseID
        /// In the order of the run's hooks.
        public var shards: [ShardReport]
        public var rows: Int
        /// Leases of the unit other than the accepted one: their files, if any, are strays.
        public var otherLeases: [LeaseID]
    }

    private let hooks: [String]
    /// By unit id; 0 where the unit is not done (lease ids start at 1).
    private var leases: [UInt64] = []
    private var rows: [Int] = []
    /// By unit id × hooks + hook index.
    private var bytes: [Int] = []
    private var checksums: [UInt32] = []
    /// Only units that had more than one lease.
    private var others: [UnitID: [LeaseID]] = [:]
    public private(set) var count = 0

    init(hooks: [String]) { self.hooks = hooks }

    public subscript(unit: UnitID) -> Record? {
        let index = Int(unit.rawValue)
        guard index < leases.count, leases[index] != 0 else { return nil }
        let lease = LeaseID(leases[index])
        let shards = hooks.indices.map { hook in
            ShardReport(
                hook: hooks[hook], file: ClusterWire.shardFileName(unit: unit.rawValue, lease: lease.rawValue, hook: hooks[hook]),
                rows: rows[index], bytes: bytes[index * hooks.count + hook], crc32c: checksums[index * hooks.count + hook])
        }
        return Record(lease: lease, shards: shards, rows: rows[index], otherLeases: others[unit] ?? [])
    }

    /// Records a unit as done. `shards` hold one report per hook of the run, in any order.
    mutating func insert(unit: UnitID, lease: LeaseID, shards: [ShardReport], rows unitRows: Int, otherLeases: [LeaseID]) {
        let index = Int(unit.rawValue)
        if index >= leases.count {
            let added = index + 1 - leases.count
            leases += repeatElement(0, count: added)
            rows += repeatElement(0, count: added)
            bytes += repeatElement(0, count: added * hooks.count)
            checksums += repeatElement(0, count: added * hooks.count)
        }
        precondition(leases[index] == 0, "unit \(unit) is done already")
        leases[index] = lease.rawValue
        rows[index] = unitRows
        for shard in shards {
            let hook = hooks.firstIndex(of: shard.hook)!
            bytes[index * hooks.count + hook] = shard.bytes
            checksums[index * hooks.count + hook] = shard.crc32c
        }
        if !otherLeases.isEmpty { others[unit] = otherLeases }
        count += 1
    }

    /// Done units in unit order.
    public var keys: [UnitID] { leases.indices.filter { leases[$0] != 0 }.map { UnitID(UInt64($0)) } }

    public var values: [Record] { keys.map { self[$0]! } }

    public func makeIterator() -> AnyIterator<(key: UnitID, value: Record)> {
        var index = 0
        return AnyIterator {
            while index < leases.count {
                defer { index += 1 }
                if leases[index] != 0 {
                    let unit = UnitID(UInt64(index))
                    return (unit, self[unit]!)
                }
            }
            return nil
        }
    }
}
