/// ACK: the coordinator has recorded a DONE or FAILED (or decided to ignore it), durably.
public struct Acknowledgement: Equatable, Hashable, Sendable {
    public enum Outcome: UInt8, Sendable, CaseIterable, CustomStringConvertible {
        /// Recorded: the unit is done with these shards, or the failure is counted (the unit
        /// is requeued or poisoned), or the release is recorded.
        case accepted = 1
        /// Already recorded from this lease earlier (a resent DONE or FAILED); nothing changed.
        case alreadyAccepted = 2
        /// Stale: the unit was finished under another lease, or has failed for good, or the
        /// lease had already ended. For a DONE, the lease's shard files are deleted.
        case ignored = 3
        /// Not recognised: an unknown unit or lease, or a report that contradicts the run
        /// (other hooks, other widths). Nothing changed; the lease, if live, runs on.
        case rejected = 4

        public var description: String {
            switch self {
            case .accepted: "accepted"
            case .alreadyAccepted: "already_accepted"
            case .ignored: "ignored"
            case .rejected: "rejected"
            }
        }
    }

    public var unit: UnitID
    public var lease: LeaseID
    public var outcome: Outcome
    /// Why, for anything but `accepted`.
    public var reason: String?

    public init(unit: UnitID, lease: LeaseID, outcome: Outcome, reason: String? = nil) {
        self.unit = unit
        self.lease = lease
        self.outcome = outcome
        self.reason = reason
    }

    func write(to writer: inout FieldWriter) {
        writer.uint(.unit, unit.rawValue)
        writer.uint(.lease, lease.rawValue)
        writer.uint(.outcome, UInt64(outcome.rawValue))
        if let reason { writer.string(.reason, reason) }
    }

    init(_ fields: Fields) throws(ProtocolError) {
        unit = try fields.unit()
        lease = try fields.lease()
        outcome = Outcome(rawValue: UInt8(try fields.uint(.outcome, in: 1...4)))!
        reason = try fields.optionalString(.reason, maxBytes: ClusterWire.Limits.maxReasonBytes)
    }
}

/// CANCEL: stop working on a lease (its unit was finished under another lease, or it
/// expired and was handed to someone else), delete its partial output and send READY.
public struct Cancel: Equatable, Hashable, Sendable {
    public var unit: UnitID
    public var lease: LeaseID
    public var reason: String

    public init(unit: UnitID, lease: LeaseID, reason: String) {
        self.unit = unit
        self.lease = lease
        self.reason = reason
    }

    func write(to writer: inout FieldWriter) {
        writer.uint(.unit, unit.rawValue)
        writer.uint(.lease, lease.rawValue)
        writer.string(.reason, reason)
    }

    init(_ fields: Fields) throws(ProtocolError) {
        unit = try fields.unit()
        lease = try fields.lease()
        reason = try fields.string(.reason, maxBytes: ClusterWire.Limits.maxReasonBytes)
    }
}

/// HEARTBEAT from the coordinator: it is alive. The body may name the run.
public struct CoordinatorHeartbeat: Equatable, Hashable, Sendable {
    public var run: UInt64?

    public init(run: UInt64? = nil) { self.run = run }
}

/// What the coordinator sends a worker.
public enum CoordinatorMessage: Equatable, Hashable, Sendable {
    case assign(Assignment)
    case heartbeat(CoordinatorHeartbeat)
    case ack(Acknowledgement)
    case cancel(Cancel)
    /// Finish (or give back) the current unit, then exit. No more work will come.
    case shutdown(reason: String)
    /// The coordinator does not know this worker's session (it restarted, or the worker
    /// was declared dead): forget any READY state and send READY again.
    case disconnect(reason: String)

    public var command: ClusterWire.Command {
        switch self {
        case .assign: .assign
        case .heartbeat: .heartbeat
        case .ack: .ack
        case .cancel: .cancel
        case .shutdown: .shutdown
        case .disconnect: .disconnect
        }
    }

    /// The message's ZeroMQ frames: protocol, command, control body (and for ASSIGN the
    /// line table and the text).
    public func encode() -> [[UInt8]] {
        var writer = FieldWriter()
        switch self {
        case .assign(let assignment):
            return CoordinatorMessage.assign(assignment, encodedSettings: Assignment.encodedSettings(assignment.settings))
        case .heartbeat(let heartbeat):
            if let run = heartbeat.run { writer.uint(.run, run) }
        case .ack(let ack): ack.write(to: &writer)
        case .cancel(let cancel): cancel.write(to: &writer)
        case .shutdown(let reason), .disconnect(let reason): writer.string(.reason, reason)
        }
        return FrameCheck.frames(.worker, command, writer)
    }

    /// Writes an ACK's frames into `frames` (protocol, command, control body), reusing the
    /// arrays it holds: a coordinator sends one per unit, thousands a second.
    public static func encodeAck(_ ack: Acknowledgement, into frames: inout [[UInt8]]) {
        FrameCheck.write(.worker, .ack, into: &frames, count: 3) { ack.write(to: &$0) }
    }

    /// ASSIGN's frames, with `encodedSettings` (``Assignment/encodedSettings(_:)`` of the
    /// assignment's settings) in place of encoding them again.
    public static func assign(_ assignment: Assignment, encodedSettings: [UInt8]) -> [[UInt8]] {
        AssignmentTemplate(
            run: assignment.run, heartbeatInterval: assignment.heartbeatInterval, liveness: assignment.liveness, encodedSettings: encodedSettings,
            file: assignment.file, plan: assignment.plan, lines: assignment.lines
        ).frames(lease: assignment.lease, attempt: assignment.attempt)
    }

    /// Decodes and checks a message from the coordinator.
    public static func decode(frames: [[UInt8]]) throws(ProtocolError) -> CoordinatorMessage {
        let command = try FrameCheck.command(frames, channel: .worker)
        switch command {
        case .assign: return .assign(try Assignment(frames: frames))
        case .heartbeat:
            return .heartbeat(CoordinatorHeartbeat(run: try FrameCheck.body(frames, command, frameCount: 3).optionalUInt(.run)))
        case .ack: return .ack(try Acknowledgement(try FrameCheck.body(frames, command, frameCount: 3)))
        case .cancel: return .cancel(try Cancel(try FrameCheck.body(frames, command, frameCount: 3)))
        case .shutdown:
            return .shutdown(reason: try FrameCheck.body(frames, command, frameCount: 3).string(.reason, maxBytes: ClusterWire.Limits.maxReasonBytes))
        case .disconnect:
            return .disconnect(reason: try FrameCheck.body(frames, command, frameCount: 3).string(.reason, maxBytes: ClusterWire.Limits.maxReasonBytes))
        default: throw FrameCheck.wrongDirection(command, receiver: "worker")
        }
    }
}
