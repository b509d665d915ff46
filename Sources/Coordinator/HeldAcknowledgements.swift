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
        if byPeer[peer] != nil {
            byPeer[peer]!.held.rest.append(message)
            return
        }
        generations += 1
        byPeer[peer] = (generations, Held(first: message))
        order.append(Entry(peer: peer, generation: generations, since: now))
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
            if let held = byPeer[entry.peer], held.generation == entry.generation {
                byPeer[entry.peer] = nil
                return (entry.peer, held.held)
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
