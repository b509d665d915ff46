import ClusterProtocol
import Platform
import ZeroMQ

typealias Instant = ContinuousClock.Instant

/// A connected worker as the coordinator sees it, keyed by its ROUTER routing id. Sessions
/// are soft state: a restarted coordinator starts with none and learns workers again from
/// their READY and HEARTBEAT messages.
final class WorkerSession {
    let routingID: RoutingID
    var name: String
    var threads = 1
    var lastSeen: Instant
    var lastSent: Instant
    /// The live lease this worker works on.
    var lease: LeaseID?
    /// Sent READY and waits for work.
    var idle = false
    /// Told SHUTDOWN; gets no more work.
    var shutdownSent = false
    /// Dropped from the coordinator's sessions (silent, or its connection gone).
    var dropped = false
    /// Its READY said it takes the ASSIGN that answers a report's `ready` before the report's
    /// ACK: that ASSIGN need not wait behind the ACK (and so for the report to be durable).
    var assignBeforeAck = false
    var unitsDone = 0
    /// Tokens per second of its last finished unit.
    var lastRate = 0.0

    init(routingID: RoutingID, name: String, now: Instant) {
        self.routingID = routingID
        self.name = name
        lastSeen = now
        lastSent = now
    }
}

/// A live lease's liveness: its deadline and who holds it.
struct LeaseTracker {
    var unit: UnitID
    /// The routing id of the worker that last spoke for the lease (nil for a lease restored
    /// from the journal that no worker has claimed yet).
    var holder: RoutingID?
    var deadline: Instant
    /// A worker has spoken for the lease since this coordinator started. A restored lease
    /// nobody claims is released, not counted as a failed attempt.
    var claimed: Bool
    var started: Instant
    /// Progress the worker reported in HEARTBEAT.
    var tokens = 0
}

/// Tokens per second over the last minute, from a sample per second of a running total.
struct ThroughputMeter {
    private var samples: [(time: Instant, total: Int)] = []
    let window: Duration

    init(window: Duration = .seconds(60)) { self.window = window }

    mutating func record(total: Int, at now: Instant) {
        if let last = samples.last, now - last.time < .seconds(1) { return }
        samples.append((now, total))
        while let first = samples.first, now - first.time > window + .seconds(1), samples.count > 2 { samples.removeFirst() }
    }

    func rate(total: Int, at now: Instant) -> Double {
        guard let first = samples.first(where: { now - $0.time <= window }) ?? samples.last else { return 0 }
        let elapsed = (now - first.time).seconds
        guard elapsed >= 1 else { return 0 }
        return max(0, Double(total - first.total) / elapsed)
    }
}
