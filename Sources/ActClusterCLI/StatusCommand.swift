import ArgumentParser
import ClusterProtocol
import Foundation
import ZeroMQ

/// `actcluster status`: one look at a running coordinator.
struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show a coordinator's progress: units, tokens, rate, workers and ETA.",
        discussion: """
            Connects to the coordinator's --status-bind endpoint, asks once and prints the \
            answer. With --json the answer is one JSON object on one line (for scripts and \
            monitoring). Exit status 1 when the coordinator does not answer within --timeout \
            seconds.
            """
    )

    @Option(help: ArgumentHelp("The coordinator's status endpoint, e.g. tcp://coordinator:5556.", valueName: "endpoint"))
    var connect: String

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Flag(help: "Leave out the per-worker lines.")
    var noWorkers = false

    @Option(help: "Seconds to wait for the answer.")
    var timeout = 3.0

    @Option(help: ArgumentHelp("The coordinator's CURVE public key file, if it runs with CURVE.", valueName: "file"))
    var curveServerKey: String?

    @Option(help: ArgumentHelp("Our own key pair PREFIX (PREFIX.key, PREFIX.pub) when the coordinator admits listed keys only.", valueName: "prefix"))
    var curveKey: String?

    func validate() throws {
        try checkEndpoint(connect, option: "--connect", example: "tcp://coordinator:5556")
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        if curveKey != nil, curveServerKey == nil { throw ValidationError("--curve-key needs --curve-server-key") }
    }

    func run() throws {
        let report = try ask()
        if json {
            print(String(decoding: try JSONSerialization.data(withJSONObject: Self.jsonObject(report), options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(Self.text(report), terminator: "")
        }
    }

    private func ask() throws -> StatusReport {
        try Self.query(connect, timeout: timeout, includeWorkers: !noWorkers, curveServerKey: curveServerKey, curveKey: curveKey)
    }

    /// One STATUS round trip to a coordinator's status endpoint.
    static func query(_ connect: String, timeout: Double, includeWorkers: Bool = true, curveServerKey: String? = nil, curveKey: String? = nil) throws
        -> StatusReport
    {
        do {
            let context = try ZeroMQContext()
            let socket = try context.socket(.dealer)
            defer { socket.close() }
            try socket.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.statusReplyMaxMessageBytes)
            if let curveServerKey {
                let server = try CurveKeyPair.parseKeyText(try readKeyFile(curveServerKey), role: "public")
                let pair: CurveKeyPair
                if let curveKey {
                    pair = try readKeyPair(secretFile: curveKey + ".key", publicFile: curveKey + ".pub")
                } else {
                    pair = try CurveKeyPair.generate()
                }
                try socket.makeCurveClient(serverPublicKey: server, keyPair: pair)
            }
            try socket.connect(connect)
            try socket.send(multipart: StatusMessage.request(StatusRequest(includeWorkers: includeWorkers)).encode())
            let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
            while ContinuousClock.now < deadline {
                guard let frames = try socket.receiveMultipart(timeout: deadline - ContinuousClock.now) else { continue }
                if case .reply(let report) = try StatusMessage.decode(frames: frames.map(\.bytes)) { return report }
            }
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw CommandFailure("status from \(connect): \(error)")
        }
        throw CommandFailure(
            "no answer from \(connect) within \(timeout) s; is the coordinator running with --status-bind there (and, with CURVE, is this its public key)?")
    }

    static func jsonObject(_ report: StatusReport) -> [String: Any] {
        var object: [String: Any] = [
            "run": String(report.run, radix: 16), "phase": "\(report.phase)", "uptime_s": report.uptimeSeconds,
            "planning_complete": report.planningComplete, "units_planned": report.unitsPlanned, "units_done": report.unitsDone,
            "units_leased": report.unitsLeased, "units_pending": report.unitsPending, "units_failed": report.unitsFailed,
            "rows": report.rows, "tokens": report.tokens, "tok_s": report.tokensPerSecond,
            "workers": report.workers.map { worker -> [String: Any] in
                var entry: [String: Any] = [
                    "name": worker.name, "tok_s": worker.tokensPerSecond, "last_seen_s": worker.lastSeenSeconds, "units_done": worker.unitsDone,
                ]
                if let unit = worker.unit { entry["unit"] = Int(unit.rawValue) }
                if let lease = worker.lease { entry["lease"] = Int(lease.rawValue) }
                return entry
            },
            "failures": report.failures.map { ["unit": Int($0.unit.rawValue), "reason": $0.reason] as [String: Any] },
        ]
        if let total = report.unitsTotal { object["units_total"] = total }
        if let eta = report.etaSeconds { object["eta_s"] = eta }
        return object
    }

    static func text(_ report: StatusReport) -> String {
        let total = report.unitsTotal.map(String.init) ?? "≥\(report.unitsPlanned)"
        var lines = [
            "run \(String(report.run, radix: 16)): \(report.phase), up \(duration(report.uptimeSeconds))",
            "units: \(report.unitsDone) done, \(report.unitsLeased) leased, \(report.unitsPending) pending, \(report.unitsFailed) failed of \(total)",
            "tokens: \(report.tokens) (\(report.rows) rows per hook), \(Int(report.tokensPerSecond)) tok/s over the last minute, ETA \(report.etaSeconds.map(duration) ?? "unknown")",
            "workers: \(report.workers.count)",
        ]
        for worker in report.workers {
            let work = worker.unit.map { "unit \($0) (lease \(worker.lease.map { "\($0)" } ?? "?"))" } ?? "idle"
            lines.append(
                "  \(worker.name): \(work), \(Int(worker.tokensPerSecond)) tok/s, \(worker.unitsDone) units done, seen \(String(format: "%.1f", worker.lastSeenSeconds)) s ago")
        }
        for failure in report.failures { lines.append("failed unit \(failure.unit): \(failure.reason)") }
        return lines.joined(separator: "\n") + "\n"
    }

    static func duration(_ seconds: Double) -> String {
        let whole = Int(seconds.rounded())
        if whole >= 3600 { return "\(whole / 3600)h\(String(format: "%02d", whole % 3600 / 60))m" }
        if whole >= 60 { return "\(whole / 60)m\(String(format: "%02d", whole % 60))s" }
        return "\(whole)s"
    }
}
