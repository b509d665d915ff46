import ClusterProtocol
import Foundation
import ZeroMQ

/// What a worker does with a BATCH the trainer cannot take yet (its PUSH queue is full).
public enum StreamPolicy: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Wait at the high-water mark: the trainer's pace slows collection (backpressure).
    case block
    /// Send without waiting; a batch that does not fit is dropped, counted and logged.
    case drop

    public var description: String { rawValue }
}

/// CURVE keys of a worker: the coordinator's (and trainer's) public key, and the worker's
/// own key pair, which a coordinator allow-list can name.
public struct WorkerCurveKeys: Sendable, Equatable {
    /// The server's public key, Z85 (as in the `.pub` file `actcluster keygen` writes).
    public var serverPublicKey: String
    public var keyPair: CurveKeyPair

    public init(serverPublicKey: String, keyPair: CurveKeyPair) {
        self.serverPublicKey = serverPublicKey
        self.keyPair = keyPair
    }
}

/// Everything a worker needs before its first ASSIGN; the rest (model, hooks, output
/// folder, heartbeat interval) comes with each unit.
public struct WorkerConfiguration: Sendable {
    /// The coordinator's worker endpoint, e.g. `tcp://coordinator:5555`.
    public var endpoint: String
    /// The worker's name in READY, HEARTBEAT, BATCH and the coordinator's logs.
    public var name: String
    public var host: String
    public var processID: Int
    /// Threads of the forward pass.
    public var threads: Int
    /// The actcluster version, sent in READY.
    public var software: String?
    /// CURVE keys; nil for plain TCP.
    public var curve: WorkerCurveKeys?
    public var streamPolicy: StreamPolicy = .block
    /// BATCH messages the PUSH socket queues before `streamPolicy` applies.
    public var streamHighWaterMark: Int32 = 16
    /// Heartbeat interval and liveness until the first ASSIGN says otherwise.
    public var heartbeatInterval: Duration = ClusterWire.Defaults.heartbeatInterval
    public var liveness: Int = ClusterWire.Defaults.liveness
    /// Paranoid Pirate reconnect delays: the first, doubled up to the maximum.
    public var reconnectInitial: Duration = ClusterWire.Defaults.reconnectInitial
    public var reconnectMaximum: Duration = ClusterWire.Defaults.reconnectMaximum

    /// - Parameter name: defaults to `host-pid`.
    public init(endpoint: String, name: String? = nil, threads: Int = 1, software: String? = nil) {
        self.endpoint = endpoint
        host = WorkerConfiguration.hostName()
        processID = Int(getpid())
        self.name = name ?? "\(host)-\(processID)"
        self.threads = threads
        self.software = software
    }

    /// This machine's host name (`gethostname`), or `localhost` if it has none.
    public static func hostName() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }
}
