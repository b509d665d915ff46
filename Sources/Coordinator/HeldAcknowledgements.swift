import ClusterProtocol
import ZeroMQ

/// Durable ACKs that wait to leave with the next message to the same worker, for at most
/// ``CoordinatorConfiguration/effectiveAckLinger``. They are ACKs a worker does not wait for:
/// their report carried `ready` and the ASSIGN that answered it went ahead. Sent together with
/// that worker's next ASSIGN, the two leave in one write and wake each end once, not twice;
/// libzmq's I/O thread and the workers pay per wake-up, not per byte. `bench dispatch --floor`
/// holds its ACKs with the same type. `Message` is what is held: the coordinator holds
/// ``Acknowledgement``s and encodes them as they leave, the floor holds encoded frames.
public struct HeldAcknowledgements<Message> {
    /// A peer's held ACKs, in order: nearly always one, kept inline.
    public struct Held: Sequence {
        fileprivate var first: Message
        fileprivate var rest: [Message] = []

        public struct Iterator: IteratorProtocol {
            fileprivate let held: Held
            /// -1: `first` is next.
            fileprivate var index = -1

            public mutating func next() -> Message? {
                defer { index += 1 }
                if index < 0 { return held.first }
                return index < held.rest.count ? held.rest[index] : nil
            }
        }

        public func makeIterator() -> Iterator { Iterator(held: self) }
    }

    private struct Entry {
        var peer: RoutingID
        var generation: Int
        var since: ContinuousClock.Instant
    }

    private var byPeer: [RoutingID: (generation: Int, held: Held)] = [:]
    /// One entry per hold, oldest first; an entry whose peer's ACKs left since is stale.
    private var order = FIFOQueue<Entry>()
    private var generations = 0

    public init() {}

    public var isEmpty: Bool { byPeer.isEmpty }

    /// Holds `message` (an ACK) for `peer` from `now`; it leaves after the peer's earlier held ACKs.
    public mutating func hold(_ message: Message, for peer: RoutingID, now: ContinuousClock.Instant) {
        // One lookup: the entry is found or made in place; generation 0 marks one just made.
        let generation = generations + 1
        guard Self.add(message, generation: generation, to: &byPeer[peer, default: (0, Held(first: message))]) else { return }
        generations = generation
        order.append(Entry(peer: peer, generation: generation, since: now))
    }

    /// Whether `entry` was new: it then holds `message` alone and takes `generation`.
    private static func add(_ message: Message, generation: Int, to entry: inout (generation: Int, held: Held)) -> Bool {
        guard entry.generation == 0 else {
            entry.held.rest.append(message)
            return false
        }
        entry.generation = generation
        return true
    }

    /// The ACKs held for `peer`, to send right before another message to it. Values, not a
    /// callback: sending one may make the caller hold or take more.
    public mutating func take(for peer: RoutingID) -> Held? {
        guard !byPeer.isEmpty else { return nil }
        return byPeer.removeValue(forKey: peer)?.held
    }

    /// The ACKs of the peer held longest, if held since `cutoff` or before; call until nil.
    public mutating func takeExpired(heldSince cutoff: ContinuousClock.Instant) -> (peer: RoutingID, acks: Held)? {
        while let entry = order.first, entry.since <= cutoff {
            _ = order.popFirst()
            if let index = byPeer.index(forKey: entry.peer), byPeer.values[index].generation == entry.generation {
                return (entry.peer, byPeer.remove(at: index).value.held)
            }
        }
        return nil
    }

    /// Every held ACK, by peer.
    public mutating func takeAll() -> [(peer: RoutingID, acks: Held)] {
        defer {
            byPeer.removeAll()
            order.removeAll()
        }
        return byPeer.map { ($0.key, $0.value.held) }
    }
}
