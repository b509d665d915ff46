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
    /// A peer's held ACKs: nearly always one, kept inline.
    private struct Held {
        var generation: Int
        var first: Message
        var rest: [Message] = []
    }

    private struct Entry {
        var peer: RoutingID
        var generation: Int
        var since: ContinuousClock.Instant
    }

    private var byPeer: [RoutingID: Held] = [:]
    /// One entry per hold, oldest first; an entry whose peer's ACKs left since is stale.
    private var order = FIFOQueue<Entry>()
    private var generations = 0

    public init() {}

    public var isEmpty: Bool { byPeer.isEmpty }

    /// Holds `message` (an ACK) for `peer` from `now`; it leaves after the peer's earlier held ACKs.
    public mutating func hold(_ message: Message, for peer: RoutingID, now: ContinuousClock.Instant) {
        if byPeer[peer] != nil {
            byPeer[peer]!.rest.append(message)
            return
        }
        generations += 1
        byPeer[peer] = Held(generation: generations, first: message)
        order.append(Entry(peer: peer, generation: generations, since: now))
    }

    /// Hands over the ACKs held for `peer`, in order, to send right before another message to it.
    public mutating func take(for peer: RoutingID, _ deliver: (Message) throws -> Void) rethrows {
        guard !byPeer.isEmpty, let held = byPeer.removeValue(forKey: peer) else { return }
        try Self.deliver(held, to: deliver)
    }

    /// Hands over, peer by peer, the ACKs held since `cutoff` or before.
    public mutating func takeExpired(heldSince cutoff: ContinuousClock.Instant, _ deliver: (RoutingID, Message) throws -> Void) rethrows {
        while let entry = order.first, entry.since <= cutoff {
            _ = order.popFirst()
            if let held = byPeer[entry.peer], held.generation == entry.generation {
                byPeer[entry.peer] = nil
                try Self.deliver(held) { try deliver(entry.peer, $0) }
            }
        }
    }

    /// Hands over every held ACK.
    public mutating func takeAll(_ deliver: (RoutingID, Message) throws -> Void) rethrows {
        let all = byPeer
        byPeer.removeAll()
        order.removeAll()
        for (peer, held) in all { try Self.deliver(held) { try deliver(peer, $0) } }
    }

    private static func deliver(_ held: Held, to deliver: (Message) throws -> Void) rethrows {
        try deliver(held.first)
        for message in held.rest { try deliver(message) }
    }
}
