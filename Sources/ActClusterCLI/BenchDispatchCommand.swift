import ArgumentParser
import ClusterProtocol
import Foundation
import Platform
import Shards
import Synchronization
import ZeroMQ

/// `actcluster bench dispatch`: how fast the coordinator leases units, with null workers.
struct BenchDispatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dispatch",
        abstract: "Measure the coordinator's units/s and lease latency with simulated null workers.",
        discussion: """
            Starts a real `actcluster coordinator` process on loopback over a synthetic corpus \
            of one line per unit, and plays --workers workers from this process (each its own \
            DEALER socket and connection, spread over --client-threads threads). A null worker \
            answers every ASSIGN with DONE at once and computes nothing, so the figures are the \
            coordinator's: units/s from the first READY to the last ACK, the latency from \
            READY to ASSIGN (p50, p99), and the coordinator process's peak RSS. The journal is \
            fsynced as in a real run; the coordinator does not check shard files, since null \
            workers write none. Goals: ≥ 20,000 units/s, p99 ≤ 5 ms, ≤ 200 MB.
            """
    )

    @Option(help: "Simulated workers (connections).")
    var workers = 1000

    @Option(help: "Units in the run.")
    var units = 100_000

    @Option(help: "Threads playing the workers.")
    var clientThreads = 1

    @Option(help: ArgumentHelp("Scratch folder for the corpus, journal and manifest (default: a new temporary folder).", valueName: "dir"))
    var scratch: String?

    @Flag(help: "End with one JSON line of the figures.")
    var json = false

    func validate() throws {
        guard workers >= 1, workers <= 20_000 else { throw ValidationError("--workers must be 1 … 20000") }
        guard units >= 1, units <= 10_000_000 else { throw ValidationError("--units must be 1 … 10000000") }
        guard clientThreads >= 1, clientThreads <= workers else { throw ValidationError("--client-threads must be 1 … --workers") }
    }

    func run() throws {
        let directory = scratch ?? FileManager.default.temporaryDirectory.appendingPathComponent("actcluster-dispatch-\(UUID().uuidString)").path
        try? FileManager.default.removeItem(atPath: directory + "/out")
        try FileManager.default.createDirectory(atPath: directory + "/out", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: directory + "/model", withIntermediateDirectories: true)
        // A tiny model config: the coordinator only hashes it and checks the hook name.
        let config = #"{"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 8, "vocab_size": 8, "max_position_embeddings": 16}"#
        try AtomicFile.write(Array(config.utf8), to: directory + "/model/config.json")
        // One line per unit: 40 bytes of text against units of 8 tokens × 4 bytes.
        var corpus = [UInt8]()
        corpus.reserveCapacity(units * 41)
        for index in 0..<units { corpus += Array(("document \(index) " + String(repeating: "x", count: 40)).prefix(40).utf8) + [0x0A] }
        try AtomicFile.write(corpus, to: directory + "/corpus.txt")

        // The coordinator, a separate process so its RSS is its own.
        let port = try freeLoopbackPort()
        let endpoint = "tcp://127.0.0.1:\(port)"
        let coordinator = Process()
        coordinator.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        coordinator.arguments = [
            "coordinator", "--corpus", directory + "/corpus.txt", "--format", "txt", "--model", directory + "/model", "--hook",
            "blocks.0.hook_resid_post", "--out", directory + "/out", "--bind", endpoint, "--unit-tokens", "8", "--context", "8",
            "--log-level", "warning", "--skip-file-checks", "--log-file", directory + "/coordinator.log",
        ]
        coordinator.standardError = FileHandle(forWritingAtPath: "/dev/null")
        coordinator.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try coordinator.run()
        defer { if coordinator.isRunning { coordinator.terminate() } }
        let sampler = PeakMemorySampler(pid: coordinator.processIdentifier)
        sampler.start()

        let results = Mutex<[DispatchClientResult]>([])
        let group = DispatchGroup()
        let perThread = (workers + clientThreads - 1) / clientThreads
        for thread in 0..<clientThreads {
            let names = (thread * perThread..<min(workers, (thread + 1) * perThread)).map { "null-\($0)" }
            group.enter()
            let client = Thread {
                let result = runNullWorkers(names: names, endpoint: endpoint)
                results.withLock { $0.append(result) }
                group.leave()
            }
            client.stackSize = 8 << 20
            client.start()
        }
        group.wait()
        coordinator.waitUntilExit()
        let peakRSS = sampler.stop()

        let all = results.withLock { $0 }
        if let failure = all.compactMap(\.error).first { throw CommandFailure("a null worker failed: \(failure)") }
        guard coordinator.terminationStatus == 0 else {
            throw CommandFailure("the coordinator exited with status \(coordinator.terminationStatus); see \(directory)/coordinator.log")
        }
        let done = all.reduce(0) { $0 + $1.units }
        guard let first = all.compactMap(\.firstReady).min(), let last = all.compactMap(\.lastAck).max() else {
            throw CommandFailure("no unit was dispatched")
        }
        let seconds = (last - first).seconds
        var latencies = all.flatMap(\.latencies)
        latencies.sort()
        func percentile(_ p: Double) -> Double { latencies.isEmpty ? 0 : latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] * 1000 }
        let manifest = try ShardManifest.read(directory + "/out")
        let rate = Double(done) / seconds
        print(
            "dispatch: \(done) units (manifest \(manifest.shards.count)) to \(workers) null workers in \(String(format: "%.2f", seconds)) s = \(Int(rate)) units/s (goal ≥ 20000)"
        )
        print(String(format: "lease latency READY→ASSIGN: p50 %.3f ms, p99 %.3f ms (goal p99 ≤ 5)", percentile(0.5), percentile(0.99)))
        print("coordinator peak RSS: \(peakRSS >> 20) MB (goal ≤ 200)")
        if json {
            let object: [String: Any] = [
                "units": done, "workers": workers, "seconds": seconds, "units_per_second": rate, "p50_ms": percentile(0.5), "p99_ms": percentile(0.99),
                "peak_rss_mb": Double(peakRSS) / 1_048_576,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        }
        if scratch == nil { try? FileManager.default.removeItem(atPath: directory) }
    }
}

struct DispatchClientResult: Sendable {
    var units = 0
    var latencies: [Double] = []
    var firstReady: ContinuousClock.Instant?
    var lastAck: ContinuousClock.Instant?
    var error: String?
}

/// Plays `names.count` null workers on one thread until the coordinator sends SHUTDOWN to all.
private func runNullWorkers(names: [String], endpoint: String) -> DispatchClientResult {
    var result = DispatchClientResult()
    do {
        let context = try ZeroMQContext()
        var sockets: [ZeroMQSocket] = []
        var poller = ZeroMQPoller()
        for _ in names {
            let socket = try context.socket(.dealer)
            try socket.configure(linger: .zero, maxMessageSize: ClusterWire.Limits.workerMaxMessageBytes)
            try socket.connect(endpoint)
            sockets.append(socket)
            poller.add(socket)
        }
        let clock = ContinuousClock()
        var readySent = [ContinuousClock.Instant](repeating: clock.now, count: names.count)
        var finished = [Bool](repeating: false, count: names.count)
        var open = names.count
        result.firstReady = clock.now
        for index in names.indices {
            try sockets[index].send(multipart: WorkerMessage.ready(Ready(worker: names[index])).encode())
            readySent[index] = clock.now
        }
        var lastMessage = clock.now
        while open > 0 {
            let ready = try poller.poll(timeout: .milliseconds(200))
            if ready.isEmpty {
                if clock.now - lastMessage > .seconds(30) { throw CommandFailure("no message from the coordinator for 30 s") }
                // Idle workers must still be heard from, or the coordinator drops them.
                for index in names.indices where !finished[index] {
                    try sockets[index].send(multipart: WorkerMessage.heartbeat(WorkerHeartbeat(worker: names[index])).encode(), dontWait: true)
                }
                continue
            }
            lastMessage = clock.now
            for index in ready {
                while let frames = try sockets[index].receiveMultipartIfReady() {
                    switch try CoordinatorMessage.decode(frames: frames.map(\.bytes)) {
                    case .assign(let assignment):
                        result.latencies.append((clock.now - readySent[index]).seconds)
                        let hook = assignment.settings.hooks[0]
                        let done = UnitDone(
                            unit: assignment.unit, lease: assignment.lease,
                            shards: [
                                ShardReport(
                                    hook: hook, file: ClusterWire.shardFileName(unit: assignment.unit.rawValue, lease: assignment.lease.rawValue, hook: hook),
                                    rows: 1, bytes: 1, crc32c: 0)
                            ],
                            statistics: [hook: HookStatistics(count: 1, mean: [0], variance: [0], meanNorm: 0)], documents: 1, windows: 1, rows: 1,
                            tokens: 1)
                        try sockets[index].send(multipart: WorkerMessage.done(done).encode())
                    case .ack:
                        result.units += 1
                        result.lastAck = clock.now
                        try sockets[index].send(multipart: WorkerMessage.ready(Ready(worker: names[index])).encode())
                        readySent[index] = clock.now
                    case .shutdown:
                        if !finished[index] {
                            finished[index] = true
                            open -= 1
                        }
                    case .disconnect:
                        try sockets[index].send(multipart: WorkerMessage.ready(Ready(worker: names[index])).encode())
                        readySent[index] = clock.now
                    case .heartbeat, .cancel: break
                    }
                }
            }
        }
        for socket in sockets { socket.close() }
    } catch {
        result.error = "\(error)"
    }
    return result
}

/// Samples a process's VmHWM every 50 ms until stopped (it is gone once the process exits).
final class PeakMemorySampler: Sendable {
    private let pid: Int32
    private let state = Mutex<(peak: Int, running: Bool)>((0, true))

    init(pid: Int32) { self.pid = pid }

    func start() {
        Thread { [self] in
            while state.withLock({ $0.running }) {
                let now = processPeakResidentBytes(pid)
                state.withLock { $0.peak = max($0.peak, now) }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }.start()
    }

    /// Stops sampling; the peak seen.
    func stop() -> Int {
        state.withLock {
            $0.running = false
            return $0.peak
        }
    }
}

/// A TCP port on 127.0.0.1 that is free right now.
func freeLoopbackPort() throws -> Int {
    let context = try ZeroMQContext()
    let socket = try context.socket(.router)
    defer { socket.close() }
    let endpoint = try socket.bind("tcp://127.0.0.1:0")
    guard let port = Int(endpoint.split(separator: ":").last ?? "") else { throw CommandFailure("cannot read a port from \(endpoint)") }
    return port
}

/// VmHWM of a process, in bytes (0 if it has exited).
func processPeakResidentBytes(_ pid: Int32) -> Int {
    guard let status = readWholeFile("/proc/\(pid)/status") else { return 0 }
    for line in status.split(separator: "\n") where line.hasPrefix("VmHWM:") {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        if fields.count >= 2, let kilobytes = Int(fields[1]) { return kilobytes * 1024 }
    }
    return 0
}
