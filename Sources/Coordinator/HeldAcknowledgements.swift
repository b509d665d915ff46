import ClusterProtocol
import ZeroMQ

/// Durable ACKs that wait to leave with the next message to the same worker, for at most
/// ``CoordinatorConfiguration/effectiveAckLinger``. They are ACKs a worker does not wait for:
/// their report carried `ready` and the ASSIGN that answered it went ahead. Sent together with
/// that worker's next ASSIGN, the two leave in one write and wake each end once, not twice;
/// libzmq's I/O thread and the workers pay per wake-up, not per byte. `bench dispatch --floor`
/// holds its ACKs with the same type.
public struct HeldAcknowledgements {
    private struct Held {
        var generation: Int
        var messages: [[[UInt8]]]
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

    /// Holds `frames` (an ACK) for `peer` from `now`; it leaves with the peer's earlier held ACKs.
    public mutating func hold(_ frames: [[UInt8]], for peer: RoutingID, now: ContinuousClock.Instant) {
        if byPeer[peer] != nil {
            byPeer[peer]!.messages.append(frames)
            return
        }
        generations += 1
        byPeer[peer] = Held(generation: generations, messages: [frames])
        order.append(Entry(peer: peer, generation: generations, since: now))
    }

    /// The ACKs held for `peer`, in order, to send right before another message to it.
    public mutating func take(for peer: RoutingID) -> [[[UInt8]]]? {
        guard !byPeer.isEmpty else { return nil }
        return byPeer.removeValue(forKey: peer)?.messages
    }

    /// Hands over, peer by peer, the ACKs held since `cutoff` or before.
    public mutating func takeExpired(heldSince cutoff: ContinuousClock.Instant, _ deliver: (RoutingID, [[[UInt8]]]) throws -> Void) rethrows {
        while let entry = order.first, entry.since <= cutoff {
            _ = order.popFirst()
            if let held = byPeer[entry.peer], held.generation == entry.generation {
                byPeer[entry.peer] = nil
                try deliver(entry.peer, held.messages)
            }
        }
    }

    /// Hands over every held ACK.
    public mutating func takeAll(_ deliver: (RoutingID, [[[UInt8]]]) throws -> Void) rethrows {
        let all = byPeer
        byPeer.removeAll()
        order.removeAll()
        for (peer, held) in all { try deliver(peer, held.messages) }
    }
}
