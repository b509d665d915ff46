import ClusterProtocol
import Foundation
import Platform
import SafeTensors
import Shards
import Testing
import ZeroMQ

/// The cluster as users run it: a real coordinator process and real worker processes of the
/// `actcluster` binary on loopback, with the real MiniLM model.
final class ClusterRole {
    let process = Process()
    let logPath: String
    let name: String

    init(_ name: String, _ arguments: [String], logPath: String, executable: String? = nil, logFlag: Bool = true) throws {
        self.name = name
        self.logPath = logPath
        process.executableURL = URL(fileURLWithPath: try executable ?? actclusterBinary())
        process.arguments = arguments + (logFlag ? ["--log-file", logPath] : [])
        process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        process.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try process.run()
    }

    deinit { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }

    var log: String { readWholeFileOrEmpty(logPath) }

    func events(_ name: String) -> [String] {
        log.split(separator: "\n").map(String.init).filter { $0.contains(" event=\(name) ") || $0.hasSuffix(" event=\(name)") }
    }

    /// The value of `key` in a logfmt line.
    static func value(_ key: String, in line: String) -> String? {
        guard let range = line.range(of: " \(key)=") else { return nil }
        return String(line[range.upperBound...].prefix { $0 != " " })
    }

    /// The value of `key` in the first `event` line of the log; waits for it, and fails if the
    /// process exits first.
    func waitForValue(event: String, key: String, timeout: Duration = .seconds(30)) throws -> String {
        var value: String?
        try waitUntil("\(name) logs \(event)", timeout: timeout) {
            value = events(event).first.flatMap { Self.value(key, in: $0) }
            return value != nil || !process.isRunning
        }
        return try #require(value, "\(name) exited: \(log)")
    }

    func killHard() {
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// Waits for the process to exit; its status, or nil after `timeout`.
    func exitStatus(within timeout: Duration) -> Int32? {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        return process.isRunning ? nil : process.terminationStatus
    }
}

func readWholeFileOrEmpty(_ path: String) -> String {
    (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
}

/// Polls `condition` until it holds; records an issue and throws after `timeout`.
func waitUntil(_ what: String, timeout: Duration = .seconds(60), _ condition: () -> Bool) throws {
    let deadline = ContinuousClock.now + timeout
    while !condition() {
        guard ContinuousClock.now < deadline else {
            Issue.record("timed out after \(timeout) waiting until \(what)")
            throw CancellationError()
        }
        Thread.sleep(forTimeInterval: 0.05)
    }
}

struct ClusterFixture {
    let directory: String
    let model: String
    let corpus: String
    let hook = "blocks.2.hook_resid_post"
    let unitTokens: Int

    init(documents: Int = 48, unitTokens: Int = 512) throws {
        model = try #require(ProcessInfo.processInfo.environment["ACTCLUSTER_TEST_MODEL"], "deploy/test.sh sets ACTCLUSTER_TEST_MODEL")
        directory = try scratchDirectory()
        self.unitTokens = unitTokens
        var lines: [String] = []
        for index in 0..<documents {
            let text = "Document \(index) tells how sparse features appear in the residual stream. "
                + String(repeating: "Each layer writes a little more of the story, word by word. ", count: 1 + index % 5)
            lines.append(String(decoding: try JSONSerialization.data(withJSONObject: ["text": text]), as: UTF8.self))
            if index == 7 { lines.append("{not json") }
        }
        corpus = directory + "/corpus.jsonl"
        try (lines.joined(separator: "\n") + "\n").write(toFile: corpus, atomically: true, encoding: .utf8)
    }

    var collectionArguments: [String] {
        ["--model", model, "--hook", hook, "--corpus", corpus, "--format", "jsonl", "--context", "64", "--unit-tokens", "\(unitTokens)"]
    }

    func coordinator(out: String, bind: String = "tcp://127.0.0.1:0", extra: [String] = [], log: String) throws -> ClusterRole {
        try ClusterRole(
            "coordinator",
            ["coordinator"] + collectionArguments + ["--out", out, "--bind", bind, "--heartbeat-ms", "200", "--log-level", "debug"] + extra,
            logPath: log)
    }

    func worker(_ name: String, endpoint: String, extra: [String] = []) throws -> ClusterRole {
        try ClusterRole(name, ["worker", "--connect", endpoint, "--threads", "1", "--name", name] + extra, logPath: directory + "/\(name).log")
    }

    /// The endpoint a coordinator bound, from its log.
    func endpoint(of coordinator: ClusterRole) throws -> String {
        try coordinator.waitForValue(event: "coordinator_listening", key: "endpoint")
    }

    /// Single-process `collect` of the same corpus: the reference rows.
    func collectReference() throws -> String {
        let out = directory + "/reference"
        let result = try runActcluster(["collect"] + collectionArguments + ["--threads", "1", "--out", out])
        #expect(result.status == 0, "\(result.stderr)")
        return out
    }

    /// Every column of an export, by name.
    func exported(_ folder: String) throws -> [String: [UInt8]] {
        let file = folder + ".safetensors"
        let result = try runActcluster(["export", folder, "--format", "safetensors", "--out", file])
        #expect(result.status == 0, "\(result.stderr)")
        let tensors = try SafeTensorsFile(path: file)
        var columns: [String: [UInt8]] = [:]
        for name in ["activations", "tokens", "doc", "window", "pos"] { columns[name] = Array(try tensors.rawBytes(name)) }
        return columns
    }

    /// The cluster's rows equal collect's, column by column and byte for byte; the shards
    /// verify; every document's tokens are there once.
    func expectSameRows(cluster: String, reference: String) throws {
        let verify = try runActcluster(["verify", cluster, "--quiet"])
        #expect(verify.status == 0, "verify: \(verify.stdout) \(verify.stderr)")
        let ours = try exported(cluster), theirs = try exported(reference)
        for name in ["tokens", "doc", "window", "pos", "activations"] {
            #expect(ours[name]?.count == theirs[name]?.count && ours[name] == theirs[name], "column \(name) differs from single-process collect")
        }
        let manifest = try ShardManifest.read(cluster)
        #expect(manifest.failedUnits == [])
        #expect(manifest.skipped == ["invalid_json": 1])
        let hidden = try FileManager.default.contentsOfDirectory(atPath: cluster).filter { $0.hasPrefix(".") }
        #expect(hidden.isEmpty, "temporary files left behind: \(hidden)")
    }
}

@Suite(.serialized) struct ClusterEndToEnd {
    /// Two workers give exactly the rows single-process collect gives.
    @Test func twoWorkersMatchSingleProcessCollect() throws {
        let fixture = try ClusterFixture()
        let reference = try fixture.collectReference()
        let out = fixture.directory + "/cluster"
        let coordinator = try fixture.coordinator(out: out, log: fixture.directory + "/coordinator.log")
        let endpoint = try fixture.endpoint(of: coordinator)
        let workers = try (0..<2).map { try fixture.worker("w\($0)", endpoint: endpoint) }
        #expect(coordinator.exitStatus(within: .seconds(120)) == 0, "coordinator: \(coordinator.log)")
        for worker in workers { #expect(worker.exitStatus(within: .seconds(20)) == 0, "\(worker.name) did not exit on SHUTDOWN: \(worker.log)") }
        #expect(Set(coordinator.events("unit_done").compactMap { ClusterRole.value("worker", in: $0) }).count == 2, "both workers should do units")
        try fixture.expectSameRows(cluster: out, reference: reference)
    }

    /// `kill -9` of a worker in the middle of a unit: the lease expires, the unit goes to the
    /// other worker, and the result is exact.
    @Test func workerKilledMidUnitLosesNothing() throws {
        let fixture = try ClusterFixture(documents: 64, unitTokens: 1024)
        let reference = try fixture.collectReference()
        let out = fixture.directory + "/cluster"
        let coordinator = try fixture.coordinator(out: out, log: fixture.directory + "/coordinator.log")
        let endpoint = try fixture.endpoint(of: coordinator)
        let victim = try fixture.worker("victim", endpoint: endpoint)
        try waitUntil("the victim works on a unit") { !coordinator.events("unit_leased").filter { $0.contains("worker=victim") }.isEmpty }
        Thread.sleep(forTimeInterval: 0.2)
        victim.killHard()
        let survivor = try fixture.worker("survivor", endpoint: endpoint)
        #expect(coordinator.exitStatus(within: .seconds(120)) == 0, "coordinator: \(coordinator.log)")
        #expect(survivor.exitStatus(within: .seconds(20)) == 0)
        #expect(!coordinator.events("lease_expired").isEmpty, "the killed worker's lease should expire")
        try fixture.expectSameRows(cluster: out, reference: reference)
    }

    /// `kill -9` of the coordinator mid-run, then a restart with the same arguments: workers
    /// reconnect, nothing is lost or duplicated, and no unit finished before the crash is
    /// leased again.
    @Test func coordinatorKilledAndRestartedResumes() throws {
        let fixture = try ClusterFixture(documents: 64, unitTokens: 512)
        let reference = try fixture.collectReference()
        let out = fixture.directory + "/cluster"
        // The restart binds the same port: one from below the ephemeral range, which no
        // other test's connection can take in between (as a fleet's fixed port).
        let first = try fixture.coordinator(out: out, bind: "tcp://127.0.0.1:\(try portBelowTheEphemeralRange())", log: fixture.directory + "/coordinator-1.log")
        let endpoint = try fixture.endpoint(of: first)
        let workers = try (0..<2).map { try fixture.worker("w\($0)", endpoint: endpoint) }
        try waitUntil("three units are done") { first.events("unit_done").count >= 3 }
        first.killHard()

        // What the journal holds is what the crashed coordinator acted on.
        let journal = out + "/" + JournalFormat.defaultFileName
        var finished = Set<UnitID>()
        let (_, replay) = try Journal.open(path: journal) { event in if case .done(let done) = event { finished.insert(done.unit) } }
        #expect(replay.records > 0 && !finished.isEmpty)

        Thread.sleep(forTimeInterval: 0.5)
        let second = try fixture.coordinator(out: out, bind: endpoint, log: fixture.directory + "/coordinator-2.log")
        #expect(second.exitStatus(within: .seconds(120)) == 0, "coordinator: \(second.log)")
        for worker in workers { #expect(worker.exitStatus(within: .seconds(20)) == 0, "\(worker.name): \(worker.log)") }
        let releasedAgain = second.events("unit_leased").compactMap { ClusterRole.value("unit", in: $0) }.compactMap { UInt64($0) }.map { UnitID(rawValue: $0) }
        #expect(finished.isDisjoint(with: releasedAgain), "units finished before the crash were leased again")
        #expect(!second.events("run_resumed").isEmpty)
        try fixture.expectSameRows(cluster: out, reference: reference)
    }

    /// 10,000 malformed messages from a hostile client while a worker works: dropped and
    /// logged, and the run completes exactly. Among them, FAILED and HEARTBEAT for the lease
    /// the worker holds at that moment, which must not end it, and a frame over the size limit.
    @Test func hostileClientCannotDisturbTheRun() throws {
        let fixture = try ClusterFixture(documents: 32)
        let reference = try fixture.collectReference()
        let out = fixture.directory + "/cluster"
        let coordinator = try fixture.coordinator(out: out, log: fixture.directory + "/coordinator.log")
        let endpoint = try fixture.endpoint(of: coordinator)
        let worker = try fixture.worker("honest", endpoint: endpoint)
        let context = try ZeroMQContext()
        let hostile = try context.socket(.dealer)
        try hostile.configure(linger: .zero, sendHighWaterMark: 100_000)
        try hostile.connect(endpoint)
        var generator = SystemRandomNumberGenerator()
        let ready = WorkerMessage.ready(Ready(worker: "honest")).encode()
        /// The lease the worker was given last, from the coordinator's log.
        func liveLease() -> (unit: UnitID, lease: LeaseID)? {
            guard let line = coordinator.events("unit_leased").last(where: { $0.contains("worker=honest") }),
                let unit = ClusterRole.value("unit", in: line).flatMap({ UInt64($0) }), let lease = ClusterRole.value("lease", in: line).flatMap({ UInt64($0) })
            else { return nil }
            return (UnitID(unit), LeaseID(lease))
        }
        try waitUntil("the worker holds a lease") { liveLease() != nil }
        var target = liveLease()!
        for index in 0..<10_000 {
            if index % 100 == 0 {
                target = liveLease() ?? target
                Thread.sleep(forTimeInterval: 0.01)
            }
            if index == 5_000 {
                let oversized = try context.socket(.dealer)
                try oversized.configure(linger: .zero)
                try oversized.connect(endpoint)
                try oversized.send(multipart: [ready[0], ready[1], [UInt8](repeating: 0, count: Int(ClusterWire.Limits.coordinatorMaxMessageBytes) + 1)])
                oversized.close()
            }
            var frames: [[UInt8]]
            switch index % 10 {
            case 0: frames = [(0..<Int.random(in: 0...64, using: &generator)).map { _ in UInt8.random(in: 0...255, using: &generator) }]
            case 1: frames = [Array("ACTW02".utf8), [0x01], []]
            case 2: frames = [ready[0], ready[1], ready[2].map { $0 ^ 0x5A }]
            case 3: frames = [ready[0], [0x7F], ready[2]]
            case 4: frames = [ready[0], [0x02], ready[2]]  // ASSIGN the wrong way
            case 5: frames = WorkerMessage.failed(UnitFailed(unit: UnitID(UInt64(index)), lease: LeaseID(UInt64(index + 1)), reason: "forged")).encode()
            case 6: frames = [ready[0], ready[1]] + [ready[2]] + [[1, 2, 3]]
            case 7: frames = WorkerMessage.failed(UnitFailed(unit: target.unit, lease: target.lease, reason: "forged for a live lease")).encode()
            case 8: frames = WorkerMessage.heartbeat(WorkerHeartbeat(worker: "honest", lease: target.lease, unit: target.unit)).encode()
            default: frames = [Array("ACTS01".utf8), [0x21], []]
            }
            try hostile.send(multipart: frames, dontWait: false)
        }
        #expect(coordinator.exitStatus(within: .seconds(120)) == 0, "coordinator: \(coordinator.log)")
        #expect(worker.exitStatus(within: .seconds(20)) == 0)
        #expect(coordinator.events("message_rejected").count >= 100, "rejections are logged")
        let ended = coordinator.events("unit_failed") + coordinator.events("lease_expired")
        #expect(ended.isEmpty, "forged messages ended the worker's lease: \(ended)")
        hostile.close()
        try fixture.expectSameRows(cluster: out, reference: reference)
    }

    /// `actcluster status` on a live run, as JSON and as text: counts that add up, tokens per
    /// second, the worker with its unit and rate, an ETA. Then SIGTERM drains the coordinator:
    /// the worker finishes its unit and exits 0, the coordinator exits 143, and the journal
    /// holds every unit it logged as done.
    @Test func statusShowsALiveRunAndSIGTERMDrainsIt() throws {
        let fixture = try ClusterFixture(documents: 600, unitTokens: 512)
        let out = fixture.directory + "/cluster"
        let coordinator = try fixture.coordinator(out: out, extra: ["--status-bind", "tcp://127.0.0.1:0"], log: fixture.directory + "/coordinator.log")
        let status = try coordinator.waitForValue(event: "coordinator_listening", key: "status_endpoint")
        func report() throws -> [String: Any] {
            let result = try runActcluster(["status", "--connect", status, "--json"])
            #expect(result.status == 0, "status: \(result.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], "\(result.stdout)")
        }
        func number(_ value: Any?) -> Double { (value as? NSNumber)?.doubleValue ?? -1 }
        let before = try report()
        #expect(number(before["units_done"]) == 0 && (before["workers"] as? [Any])?.isEmpty == true)
        // More units than the 64 planned ahead: the total is not known yet, and status does not guess it.
        #expect(before["planning_complete"] as? Bool == false && before["units_total"] == nil, "\(before)")

        let worker = try fixture.worker("w0", endpoint: try fixture.endpoint(of: coordinator))
        var live: [String: Any] = [:]
        // Planning completes once the worker has taken the first 8 or so units.
        try waitUntil("status shows the worker on a unit, rates, an ETA and the total", timeout: .seconds(60)) {
            guard let json = try? report() else { return false }
            live = json
            let entry = (json["workers"] as? [[String: Any]])?.first
            return number(json["units_done"]) >= 1 && entry?["unit"] != nil && number(entry?["tok_s"]) > 0 && number(json["tok_s"]) > 0
                && json["eta_s"] != nil && json["planning_complete"] as? Bool == true
        }
        let counts = ["units_done", "units_leased", "units_pending", "units_failed"].map { number(live[$0]) }
        #expect(counts.reduce(0, +) == number(live["units_planned"]), "\(live)")
        #expect(number(live["units_total"]) == number(live["units_planned"]) && number(live["units_total"]) > 64, "\(live)")
        #expect(number(live["tokens"]) > 0 && number(live["rows"]) > 0 && number(live["eta_s"]) > 0)
        #expect((live["workers"] as? [[String: Any]])?.map { $0["name"] as? String } == ["w0"])
        let text = try runActcluster(["status", "--connect", status])
        #expect(text.status == 0)
        for part in ["units: ", " done, ", "tok/s over the last minute, ETA ", "workers: 1", "  w0: unit "] {
            #expect(text.stdout.contains(part), "status text lacks \"\(part)\": \(text.stdout)")
        }

        kill(coordinator.process.processIdentifier, SIGTERM)
        #expect(coordinator.exitStatus(within: .seconds(60)) == 143, "coordinator: \(coordinator.log)")
        #expect(worker.exitStatus(within: .seconds(20)) == 0, "w0: \(worker.log)")
        #expect(coordinator.events("drain_started").count == 1 && coordinator.events("drained").count == 1)
        #expect(!FileManager.default.fileExists(atPath: out + "/" + ShardManifest.fileName), "the run was drained before its end")
        var journaled = Set<UnitID>()
        let (journal, _) = try Journal.open(path: out + "/" + JournalFormat.defaultFileName) { event in
            if case .done(let done) = event { journaled.insert(done.unit) }
        }
        journal.close()
        let logged = coordinator.events("unit_done").compactMap { ClusterRole.value("unit", in: $0).flatMap { UInt64($0) } }.map { UnitID($0) }
        #expect(!logged.isEmpty && Set(logged) == journaled)
    }

    /// With CURVE and an allow-list, a worker with a key the coordinator does not accept gets
    /// no work, and the run completes with a good worker.
    @Test func curveRefusesAWrongKeyAndServesTheRightOne() throws {
        let fixture = try ClusterFixture(documents: 16)
        let keys = fixture.directory + "/keys"
        for name in ["cluster", "good", "stranger"] {
            #expect(try runActcluster(["keygen", "--out", keys + "-" + name]).status == 0)
        }
        try readWholeFileOrEmpty(keys + "-good.pub").write(toFile: keys + "-allowed", atomically: true, encoding: .utf8)
        let out = fixture.directory + "/cluster"
        let coordinator = try fixture.coordinator(
            out: out, extra: ["--curve-secret-key", keys + "-cluster.key", "--curve-public-key", keys + "-cluster.pub", "--curve-allow", keys + "-allowed"],
            log: fixture.directory + "/coordinator.log")
        let endpoint = try fixture.endpoint(of: coordinator)
        let stranger = try fixture.worker(
            "stranger", endpoint: endpoint, extra: ["--curve-server-key", keys + "-cluster.pub", "--curve-key", keys + "-stranger"])
        let wrongServer = try fixture.worker("wrong-server", endpoint: endpoint, extra: ["--curve-server-key", keys + "-good.pub"])
        try waitUntil("the stranger is refused") { !coordinator.events("peer_refused").isEmpty }
        let good = try fixture.worker("good", endpoint: endpoint, extra: ["--curve-server-key", keys + "-cluster.pub", "--curve-key", keys + "-good"])
        #expect(coordinator.exitStatus(within: .seconds(120)) == 0, "coordinator: \(coordinator.log)")
        #expect(good.exitStatus(within: .seconds(20)) == 0)
        let served = Set(coordinator.events("unit_done").compactMap { ClusterRole.value("worker", in: $0) })
        #expect(served == ["good"], "only the listed key may work: \(served)")
        let joined = coordinator.events("worker_joined").compactMap { ClusterRole.value("worker", in: $0) }
        #expect(!joined.isEmpty && Set(joined) == ["good"], "only the listed key may join: \(joined)")
        stranger.killHard()
        wrongServer.killHard()
    }
}

/// A TCP port on 127.0.0.1, free now, below the kernel's ephemeral range: port 0 and outgoing
/// connections take theirs from that range, so no other test takes this one.
func portBelowTheEphemeralRange() throws -> Int {
    let range = (readWholeFile("/proc/sys/net/ipv4/ip_local_port_range") ?? "").split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
    let ceiling = min(range.first ?? 32768, 32768)
    let lowest = ceiling > 21000 ? 20000 : 1024
    guard ceiling > lowest + 100 else { throw HarnessFailure("the ephemeral range starts at \(ceiling): no room below it") }
    for _ in 0..<100 {
        let port = Int.random(in: lowest..<ceiling)
        // A plain socket: closed at once, unlike a libzmq listener, which its I/O thread closes later.
        let descriptor = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard descriptor >= 0 else { throw HarnessFailure("socket: errno \(errno)") }
        defer { close(descriptor) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if bound == 0 { return port }
    }
    throw HarnessFailure("no free port between \(lowest) and \(ceiling)")
}

/// Root with `ip netns`: a worker can be put behind a link the test cuts.
/// Root, `ip`, and a kernel that lets this process make a network namespace (a container
/// without CAP_SYS_ADMIN does not): tried, not assumed.
let canPartition: Bool = {
    guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip")
    else { return false }
    let probe = "actcprobe\(getpid())"
    guard (try? IsolatedNetwork.ip(["netns", "add", probe])) != nil else { return false }
    _ = try? IsolatedNetwork.ip(["netns", "del", probe])
    return true
}()

/// A network namespace joined to this one by a veth pair: `inside` is the namespace's
/// address, `outside` the host's.
final class IsolatedNetwork {
    let name: String
    let hostLink: String
    let outside: String
    let inside: String

    init() throws {
        let id = Int.random(in: 10...250)
        name = "actc\(id)"
        hostLink = "actc\(id)h"
        outside = "10.231.\(id).1"
        inside = "10.231.\(id).2"
        try Self.ip(["netns", "add", name])
        try Self.ip(["link", "add", hostLink, "type", "veth", "peer", "name", name + "n"])
        try Self.ip(["link", "set", name + "n", "netns", name])
        try Self.ip(["addr", "add", outside + "/24", "dev", hostLink])
        try Self.ip(["link", "set", hostLink, "up"])
        try Self.ip(["netns", "exec", name, "ip", "addr", "add", inside + "/24", "dev", name + "n"])
        try Self.ip(["netns", "exec", name, "ip", "link", "set", name + "n", "up"])
        try Self.ip(["netns", "exec", name, "ip", "link", "set", "lo", "up"])
    }

    deinit {
        _ = try? Self.ip(["netns", "del", name])
        _ = try? Self.ip(["link", "del", hostLink])
    }

    func cut() throws { try Self.ip(["link", "set", hostLink, "down"]) }
    func restore() throws { try Self.ip(["link", "set", hostLink, "up"]) }

    @discardableResult
    static func ip(_ arguments: [String]) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip")
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw HarnessFailure("ip \(arguments.joined(separator: " ")) failed with \(process.terminationStatus)") }
        return process.terminationStatus
    }
}

struct HarnessFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The coordinator's loop and libzmq's I/O thread ask for a short scheduler slice; its other
/// threads keep the kernel's. Read from the running process's sched files.
@Suite(.serialized) struct CoordinatorSchedulerSlice {
    /// Each thread's slice by name; the main thread (which runs the loop) as "main". Threads
    /// the runtime starts inherit the process's name, so only the main thread is told by id.
    private func slices(of process: Process) -> [String: Duration] {
        let pid = process.processIdentifier
        var slices: [String: Duration] = [:]
        for (tid, name) in processThreads(of: pid) {
            slices[tid == pid ? "main" : name] = SchedulerSlice.current(thread: tid, process: pid)
        }
        return slices
    }

    @Test func theLoopAndTheIOThreadTakeTheSliceAsked() throws {
        let fixture = try ClusterFixture(documents: 4)
        let coordinator = try fixture.coordinator(out: fixture.directory + "/out", extra: ["--scheduler-slice", "700"], log: fixture.directory + "/c.log")
        defer { coordinator.killHard() }
        #expect(try coordinator.waitForValue(event: "scheduler_slice", key: "microseconds") == "700")
        #expect(coordinator.events("scheduler_slice").first.flatMap { ClusterRole.value("threads", in: $0) } == "2")
        let taken = slices(of: coordinator.process)
        #expect(taken["main"] == .microseconds(700), "\(taken)")
        #expect(taken["ZMQbg/IO/0"] == .microseconds(700), "\(taken)")
        let journal = try #require(taken["journal-sync"], "\(taken)")
        #expect(journal != .microseconds(700))

        let kernels = try ClusterFixture(documents: 4)
        let plain = try kernels.coordinator(out: kernels.directory + "/out", extra: ["--scheduler-slice", "0"], log: kernels.directory + "/c.log")
        defer { plain.killHard() }
        _ = try kernels.endpoint(of: plain)
        #expect(plain.events("scheduler_slice").isEmpty)
        #expect(slices(of: plain.process)["ZMQbg/IO/0"] == journal, "the kernel's slice, as the journal thread's")

        let refused = try runActcluster(["coordinator"] + fixture.collectionArguments + ["--out", fixture.directory + "/o2", "--bind", "tcp://127.0.0.1:0", "--scheduler-slice", "50"])
        #expect(refused.status != 0 && refused.stderr.contains("--scheduler-slice must be 0"), "\(refused.stderr)")
    }
}

@Suite(.serialized) struct ClusterPartition {
    /// A worker in its own network namespace loses its link in the middle of a unit: its lease
    /// expires and the unit moves to another worker. When the link comes back, its late report
    /// changes nothing that should not change, and the result is exact.
    @Test(.enabled(if: canPartition, "needs root and ip netns"))
    func cutLinkMovesTheWorkAndTheResultIsExact() throws {
        let fixture = try ClusterFixture(documents: 64, unitTokens: 1024)
        let reference = try fixture.collectReference()
        let network = try IsolatedNetwork()
        let out = fixture.directory + "/cluster"
        let coordinator = try fixture.coordinator(out: out, bind: "tcp://\(network.outside):0", log: fixture.directory + "/coordinator.log")
        let endpoint = try fixture.endpoint(of: coordinator)
        let isolated = try ClusterRole(
            "isolated",
            ["netns", "exec", network.name, try actclusterBinary(), "worker", "--connect", endpoint, "--threads", "1", "--name", "isolated"],
            logPath: fixture.directory + "/isolated.log", executable: FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") ? "/usr/sbin/ip" : "/sbin/ip")
        try waitUntil("the isolated worker holds a lease") { !coordinator.events("unit_leased").filter { $0.contains("worker=isolated") }.isEmpty }
        Thread.sleep(forTimeInterval: 0.2)
        try network.cut()
        let local = try fixture.worker("local", endpoint: endpoint)
        try waitUntil("the cut-off lease expires") { !coordinator.events("lease_expired").isEmpty }
        Thread.sleep(forTimeInterval: 1)
        try network.restore()
        #expect(coordinator.exitStatus(within: .seconds(180)) == 0, "coordinator: \(coordinator.log)")
        #expect(local.exitStatus(within: .seconds(20)) == 0)
        isolated.killHard()
        // The namespace goes only now: released at its last use, it took the restored link.
        withExtendedLifetime(network) {}
        try fixture.expectSameRows(cluster: out, reference: reference)
    }
}

@Suite(.serialized) struct LiveTrainingEndToEnd {
    /// A real worker streams the activations it collects to a live trainer, which trains on
    /// them and checkpoints; the shards are complete as well.
    @Test func workerFeedsTheLiveTrainer() throws {
        let fixture = try ClusterFixture(documents: 48, unitTokens: 512)
        let run = fixture.directory + "/sae"
        let trainer = try ClusterRole(
            "trainer",
            [
                "trainer", "--bind", "tcp://127.0.0.1:0", "--hook", fixture.hook, "--out", run, "--latents", "256", "--k", "8", "--batch-tokens", "256",
                "--tokens", "100000", "--idle-timeout", "3", "--checkpoint-every", "0", "--log-every", "5", "--threads", "1",
            ],
            logPath: fixture.directory + "/trainer.log")
        let endpointForWorkers = try trainer.waitForValue(event: "trainer_listening", key: "endpoint")
        let out = fixture.directory + "/cluster"
        let coordinator = try fixture.coordinator(out: out, extra: ["--trainer", endpointForWorkers], log: fixture.directory + "/coordinator.log")
        let worker = try fixture.worker("streamer", endpoint: try fixture.endpoint(of: coordinator))
        #expect(coordinator.exitStatus(within: .seconds(120)) == 0, "coordinator: \(coordinator.log)")
        #expect(worker.exitStatus(within: .seconds(20)) == 0)
        #expect(trainer.exitStatus(within: .seconds(60)) == 0, "trainer: \(trainer.log)")

        let manifest = try ShardManifest.read(out)
        let received = trainer.events("batch_received").count
        #expect(received > 0, "the trainer saw no batch: \(trainer.log)")
        #expect(trainer.events("batch_rejected").isEmpty)
        let steps = trainer.events("train_step")
        #expect(!steps.isEmpty, "no training step was logged")
        // Every streamed row was trained on: the rows the trainer took equal the shards' rows.
        let rowsSeen = trainer.log.split(separator: "\n").compactMap { line in
            line.contains(" event=batch_received ") ? ClusterRole.value("rows", in: String(line)).flatMap(Int.init) : nil
        }.reduce(0, +)
        #expect(rowsSeen == manifest.rows, "streamed \(rowsSeen) rows, the shards hold \(manifest.rows)")
        let checkpoints = (try? FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")) ?? []
        #expect(checkpoints.contains { $0.hasPrefix("step-") }, "no checkpoint in \(run): \(checkpoints)")
    }
}

@Suite(.serialized) struct RunEndToEnd {
    func runArguments(_ fixture: ClusterFixture, out: String) -> [String] {
        [
            "run", "--corpus", fixture.corpus, "--format", "jsonl", "--model", fixture.model, "--hook", fixture.hook, "--workers", "2", "--out", out,
            "--context", "64", "--unit-tokens", "\(fixture.unitTokens)", "--latents", "256", "--k", "8", "--batch-tokens", "256", "--tokens", "8192",
        ]
    }

    /// One command from corpus to dictionary: exact shards, a checkpoint, a SAELens export.
    @Test func runCollectsTrainsAndExports() throws {
        let fixture = try ClusterFixture(documents: 40, unitTokens: 512)
        let reference = try fixture.collectReference()
        let out = fixture.directory + "/run"
        let result = try runActcluster(runArguments(fixture, out: out))
        #expect(result.status == 0, "run: \(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("collection: ") && result.stdout.contains("training: step "), "\(result.stdout)")
        try fixture.expectSameRows(cluster: out + "/shards", reference: reference)
        #expect(FileManager.default.fileExists(atPath: out + "/sae/checkpoints/latest"))
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/saelens/cfg.json"))) as? [String: Any]
        #expect(config?["d_in"] as? Int == 384 && config?["d_sae"] as? Int == 256 && config?["architecture"] as? String == "topk")
        let weights = try SafeTensorsFile(path: out + "/saelens/sae_weights.safetensors")
        #expect(try weights.info("W_enc").shape == [384, 256] && weights.info("W_dec").shape == [256, 384])
        #expect(try weights.info("b_enc").shape == [256] && weights.info("b_dec").shape == [384])
        for log in ["coordinator", "worker-0", "worker-1", "trainer"] { #expect(FileManager.default.fileExists(atPath: out + "/logs/\(log).log")) }
    }

    /// Ctrl-C in the middle stops everything with the journal and checkpoint usable; the same
    /// command again resumes and the result is exact.
    @Test func interruptedRunResumes() throws {
        let fixture = try ClusterFixture(documents: 96, unitTokens: 128)
        let reference = try fixture.collectReference()
        let out = fixture.directory + "/run"
        let first = try ClusterRole("run", runArguments(fixture, out: out), logPath: out + "/logs/coordinator.log", logFlag: false)
        try waitUntil("a unit is done") { readWholeFileOrEmpty(out + "/logs/coordinator.log").contains(" event=unit_done ") }
        kill(first.process.processIdentifier, SIGINT)
        let status = first.exitStatus(within: .seconds(90))
        #expect(status == 130, "the interrupted run should exit 130, not \(String(describing: status))")
        #expect(!FileManager.default.fileExists(atPath: out + "/shards/manifest.json"), "the run was not interrupted before the end")

        let again = try runActcluster(runArguments(fixture, out: out))
        #expect(again.status == 0, "rerun: \(again.stdout) \(again.stderr)")
        #expect(readWholeFileOrEmpty(out + "/logs/coordinator.log").contains(" event=run_resumed "))
        try fixture.expectSameRows(cluster: out + "/shards", reference: reference)
        #expect(FileManager.default.fileExists(atPath: out + "/saelens/cfg.json"))
    }
}

/// `bench dispatch` is not a test of speed, but its runs must stay whole: every unit leased,
/// reported and in the manifest, for the coordinator and for the floor it is compared with.
@Suite struct DispatchBenchRuns {
    /// Two rounds: the second is a new run in the same scratch folder, not the first one's
    /// finished journal.
    /// Over tcp the kernel times each ASSIGN's arrival, which comes before its read (by the
    /// `recvmsg` at least); over ipc there is no such time, and both latencies are the reads'.
    /// The lease trace holds the leases each round's p99 was taken from.
    @Test(arguments: ["ipc", "tcp"])
    func smallRunsAgainstTheCoordinatorAndTheFloorDispatchEveryUnit(transport: String) throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let run = try runActcluster([
            "bench", "dispatch", "--workers", "20", "--units", "400", "--paced-rate", "2000", "--transport", transport, "--floor", "--rounds", "2", "--json",
            "--lease-trace", directory + "/leases.csv",
        ])
        try #require(run.status == 0, "\(run.stdout) \(run.stderr)")
        let rounds = run.stdout.split(separator: "\n").filter { $0.hasPrefix("dispatch: 400 units (manifest 400) to 20 null workers") }
        #expect(rounds.count == 2, "\(run.stdout)")
        #expect(run.stdout.contains("summary of 2 rounds"), "\(run.stdout)")
        let last = try #require(run.stdout.split(separator: "\n").last)
        let figures = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        #expect(figures["units"] as? Int == 400)
        // Figures only, no speeds: this host may be loaded by the other tests. (CPU time comes in
        // 10 ms ticks, too coarse for a run this short.)
        let measured = ["units_per_second", "paced_units_per_second", "p50_ms", "p99_ms", "peak_rss_mb", "floor_units_per_second", "floor_p99_ms"]
        for key in measured { #expect((figures[key] as? Double ?? 0) > 0, "\(key) in \(last)") }
        for key in ["paced_over_5ms_percent", "floor_paced_over_5ms_percent"] {
            #expect((0...100).contains(figures[key] as? Double ?? -1), "\(key) in \(last)")
        }
        #expect(figures["rounds"] as? Int == 2)
        // The bench runs with this test's affinity, and says so.
        let cpus = try #require(AllowedCPUs.current)
        #expect(figures["cpus"] as? Int == cpus, "\(last)")
        #expect(run.stdout.contains("over \(transport), on \(cpus) CPU"), "\(run.stdout)")
        for key in ["p99_goal_met_rounds", "floor_p99_goal_met_rounds"] { #expect((0...2).contains(figures[key] as? Int ?? -1), "\(key) in \(last)") }
        var earlier = 0
        for (stamped, read) in [("p99_ms", "paced_read_p99_ms"), ("floor_p99_ms", "floor_paced_read_p99_ms")] {
            let arrival = try #require(figures[stamped] as? Double), reading = try #require(figures[read] as? Double, "\(read) in \(last)")
            if transport == "tcp" { #expect(arrival <= reading, "\(stamped) \(arrival), \(read) \(reading)") } else { #expect(arrival == reading) }
            if arrival < reading { earlier += 1 }
        }
        // A read the kernel gives no time for is timed itself, so one p99 (of the few slowest
        // leases of a short, loaded run) can tie; both tying would mean the times go unused.
        if transport == "tcp" { #expect(earlier >= 1, "\(last)") }
        for side in ["", "floor_"] {
            for key in ["host_steal_percent", "host_interrupts_percent", "host_others_percent"] {
                #expect((0...100).contains(figures[side + key] as? Double ?? -1), "\(side + key) in \(last)")
            }
        }
        try expectTraceMatches(run.stdout, trace: readWholeFileOrEmpty(directory + "/leases.csv"))
        let unpaced = try runActcluster(["bench", "dispatch", "--paced-rate", "0", "--lease-trace", directory + "/none.csv"])
        #expect(unpaced.status != 0 && unpaced.stderr.contains("--lease-trace traces the paced phase"), "\(unpaced.stderr)")
    }

    /// Each round's p99 (the coordinator's on its `paced:` line, the floor's on the line
    /// after), taken again from the trace's leases of that round and side.
    private func expectTraceMatches(_ output: String, trace: String) throws {
        let rows = trace.split(separator: "\n")
        #expect(rows.first == "round,side,asked_unix_s,latency_ms,read_latency_ms")
        var latencies: [String: [Double]] = [:]
        for row in rows.dropFirst() {
            let fields = row.split(separator: ",")
            try #require(fields.count == 5, "\(row)")
            let latency = try #require(Double(fields[3])), read = try #require(Double(fields[4]))
            #expect(latency >= 0 && latency <= read, "\(row)")
            latencies["\(fields[0]) \(fields[1])", default: []].append(latency)
        }
        let lines = output.split(separator: "\n")
        var round = 0
        for line in lines {
            if line.hasPrefix("summary") { break }
            if line.hasPrefix("round ") { round += 1 }
            let side = line.hasPrefix("paced:") ? "coordinator" : line.hasPrefix("  saturated ") && line.contains(", lease latency") ? "floor" : nil
            guard let side, round > 0 else { continue }
            let leases = try #require(latencies["\(round) \(side)"], "no leases of round \(round)'s \(side) in the trace")
            let p99 = leases.sorted()[min(leases.count - 1, Int(Double(leases.count) * 0.99))]
            #expect(line.contains("p99 \(String(format: "%.3f", p99)) ms"), "round \(round) \(side): p99 \(p99) from the trace, \(line)")
        }
        #expect(round == 2 && latencies.count == 4, "\(latencies.keys)")
    }

    /// The coordinator and the floor start under the wrapper: a script that leaves a file
    /// named for its process and then runs what it was given.
    @Test func aWrapperStartsTheCoordinatorAndTheFloor() throws {
        let directory = try scratchDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let script = directory + "/wrap.sh"
        let text = "#!/bin/sh\ntouch \"\(directory)/wrapped-$$-$2\"\nexec \"$@\"\n"
        try #require(FileManager.default.createFile(atPath: script, contents: Data(text.utf8), attributes: [.posixPermissions: 0o755]))
        let run = try runActcluster([
            "bench", "dispatch", "--workers", "4", "--units", "40", "--paced-rate", "0", "--floor", "--coordinator-wrapper", script,
        ])
        try #require(run.status == 0, "\(run.stdout) \(run.stderr)")
        #expect(run.stdout.contains("dispatch: 40 units (manifest 40) to 4 null workers"), "\(run.stdout)")
        let marks = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("wrapped-") }
        #expect(marks.count == 2, "\(marks)")
        #expect(marks.contains { $0.hasSuffix("-coordinator") } && marks.contains { $0.hasSuffix("-bench") }, "\(marks)")
        let empty = try runActcluster(["bench", "dispatch", "--coordinator-wrapper", "  "])
        #expect(empty.status != 0 && empty.stderr.contains("--coordinator-wrapper needs a command"), "\(empty.stderr)")
    }
}
