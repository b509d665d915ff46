import ArgumentParser
import ClusterProtocol
import Coordinator
import Foundation
import Platform
import Shards
import Synchronization
import Trainer
import ZeroMQ

/// `actcluster bench dispatch`: how fast the coordinator leases units, with null workers.
struct BenchDispatchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dispatch",
        abstract: "Measure the coordinator's units/s and lease latency with simulated null workers.",
        discussion: """
            Starts a real `actcluster coordinator` process on loopback over a synthetic corpus \
            of one line per unit, and plays --workers workers from this process (each its own \
            connection, spread over --client-threads threads). A null worker computes nothing \
            and asks for its next unit with its DONE, as real workers do. The journal is fsynced \
            as in a real run; the coordinator does not check shard files, since null workers \
            write none.

            The null workers speak ZMTP 3.1, the ZeroMQ wire protocol, to the coordinator's \
            unmodified libzmq ROUTER. By default (--null-workers zmtp) through actcluster's own \
            minimal client (plain sockets, one epoll, a couple of syscalls per unit), so that \
            they take little of the cores the coordinator runs on; --null-workers zmq gives each \
            a libzmq DEALER socket, as real workers have, which costs about as much CPU per unit \
            as the coordinator itself. The CPU per unit of both sides over each phase is printed, \
            and where the rest of the machine's time went over the paced phase (steal, \
            interrupts, other processes), so that a round on a busy host shows as such.

            The run has two phases. Saturated (the first half of the units): every null worker \
            answers each ASSIGN at once, so the coordinator works flat out; its units/s (leases \
            granted) is the capacity. Paced (the rest): each null worker holds its unit for a random time before \
            answering, so that the workers together offer --paced-rate units/s, as a fleet of \
            real workers would; the lease latency (from asking for a unit to its ASSIGN's \
            arrival, p50 and p99) is measured there, from the moment the saturated phase's backlog (a \
            request from every worker, made before the switch) has been answered: requests \
            made before that queue behind it, so they are counted apart. In the saturated \
            phase every worker is always \
            waiting, so its latency is just workers ÷ units/s (Little's law) and says nothing \
            about the coordinator; it is printed for reference. Also the coordinator process's \
            peak RSS. Goals: ≥ 20,000 units/s, p99 ≤ 5 ms at 20,000 units/s, ≤ 200 MB.

            Arrival is the kernel's receive time of the read that brought the ASSIGN \
            (SO_TIMESTAMPNS), with --null-workers zmtp over tcp. The null workers share the \
            cores with the coordinator, and the time they wait for a core to read an ASSIGN \
            is theirs, not the coordinator's (a worker on its own machine reads at once); the \
            paced p99 timed to the reads is printed beside it. Over ipc, or with \
            --null-workers zmq, the kernel gives no such time and the reads are timed: that \
            overstates the latency, never understates it.

            With --floor the same phases run once more, against a process that only answers \
            through libzmq from pre-encoded messages (the ACKs every 100 ms, as the coordinator's \
            commits, each held for the worker's next ASSIGN as the coordinator holds it): the \
            reference for what the coordinator adds on this machine.
            """
    )

    @Option(help: "Simulated workers (connections).")
    var workers = 1000

    @Option(help: "Units in the run.")
    var units = 100_000

    @Option(help: "Threads playing the workers.")
    var clientThreads = 1

    @Option(help: "Units/s the null workers offer together in the paced phase (0: no paced phase).")
    var pacedRate = 20_000

    @Option(help: "Socket between the null workers and the coordinator: tcp (loopback, as a fleet connects) or ipc (a Unix socket in the scratch folder: the same coordinator without the loopback TCP stack on both ends).")
    var transport = "tcp"

    @Option(help: "How the null workers talk ZMTP: zmtp (actcluster's minimal client over plain sockets, cheap) or zmq (a libzmq DEALER socket each, as real workers; costs about the coordinator's CPU).")
    var nullWorkers = NullWorkerKind.zmtp

    @Option(help: ArgumentHelp("Scratch folder for the corpus, journal and manifest (default: a new temporary folder).", valueName: "dir"))
    var scratch: String?

    @Flag(help: "Then run the same phases against the floor: a libzmq ROUTER with the coordinator's socket options that answers at once from pre-encoded messages, with no state, journal or decoding. Prints its figures and the coordinator's ratios to them: what libzmq and this machine cost before the coordinator does any work.")
    var floor = false

    @Option(help: "Rounds to run, each a new run with fresh null workers (and the floor's right after it, with --floor). With more than one, a summary follows: each figure's median over the rounds, the largest peak RSS, and in how many rounds the coordinator (and the floor) met the p99 goal. On a shared machine one round's p99 says little.")
    var rounds = 1

    @Flag(help: "End with one JSON line of the figures (the summary's, with --rounds).")
    var json = false

    @Option(help: ArgumentHelp(
        "Start the coordinator (and the floor) under this command, split at spaces and looked up on PATH, e.g. \"valgrind --tool=callgrind --callgrind-out-file=cg.%p\": its instruction counts, unlike times, do not move with the host's load. Timings under such a tool mean little. Valgrind cannot read Swift's debug info: run a copy of actcluster made with `strip --strip-debug`.",
        valueName: "command"))
    var coordinatorWrapper: String?

    @Option(help: ArgumentHelp(
        "Write every paced lease counted to this CSV file, rewritten after each round: the round, the side (coordinator or floor), when the lease was asked for (Unix seconds, to line up with logs and traces), and its latency to the ASSIGN's arrival and to its read (ms). Late leases come in bursts; this shows when.",
        valueName: "file"))
    var leaseTrace: String?

    @Option(help: ArgumentHelp(
        "Scheduler slice the coordinator's loop and I/O thread ask for, in microseconds (its --scheduler-slice); the floor's threads ask for the same. 0 keeps the kernel's, to see what the slice does.",
        valueName: "us"))
    var schedulerSlice = CoordinatorConfiguration.defaultSchedulerSliceMicroseconds

    /// `--coordinator-wrapper`, split into its words.
    private var wrapperWords: [String] { coordinatorWrapper?.split(separator: " ").map(String.init) ?? [] }

    func validate() throws {
        guard workers >= 1, workers <= 20_000 else { throw ValidationError("--workers must be 1 … 20000") }
        guard units >= 1, units <= 10_000_000 else { throw ValidationError("--units must be 1 … 10000000") }
        guard clientThreads >= 1, clientThreads <= workers else { throw ValidationError("--client-threads must be 1 … --workers") }
        guard pacedRate >= 0 else { throw ValidationError("--paced-rate must be 0 or more") }
        guard rounds >= 1, rounds <= 100 else { throw ValidationError("--rounds must be 1 … 100") }
        guard ["tcp", "ipc"].contains(transport) else { throw ValidationError("--transport must be tcp or ipc") }
        if coordinatorWrapper != nil && wrapperWords.isEmpty { throw ValidationError("--coordinator-wrapper needs a command") }
        if leaseTrace != nil && pacedRate == 0 { throw ValidationError("--lease-trace traces the paced phase: give a --paced-rate above 0") }
        if let problem = CoordinatorConfiguration.schedulerSliceProblem(microseconds: schedulerSlice) { throw ValidationError(problem) }
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

        // Printed with the figures: under `taskset -c 0` every thread of the run shares one core.
        let cpus = AllowedCPUs.current
        var coordinatorRounds: [DispatchFigures] = [], floorRounds: [DispatchFigures] = []
        var trace = "round,side,asked_unix_s,latency_ms,read_latency_ms\n"
        func addToTrace(_ figures: DispatchFigures, round: Int, side: String) {
            for lease in figures.pacedTrace.sorted(by: { $0.askedUnixSeconds < $1.askedUnixSeconds }) {
                trace += "\(round),\(side),\(String(format: "%.6f", lease.askedUnixSeconds)),\(String(format: "%.3f", lease.latency * 1000)),\(String(format: "%.3f", lease.readLatency * 1000))\n"
            }
        }
        for round in 1...rounds {
            if rounds > 1 { print("round \(round) of \(rounds):") }
            // Each round is a new run: a journal left by the last would say it is complete.
            try? FileManager.default.removeItem(atPath: directory + "/out")
            try FileManager.default.createDirectory(atPath: directory + "/out", withIntermediateDirectories: true)
            let figures = try measure(coordinatorArguments: { endpoint in
                [
                    "coordinator", "--corpus", directory + "/corpus.txt", "--format", "txt", "--model", directory + "/model", "--hook",
                    nullWorkerHook, "--out", directory + "/out", "--bind", endpoint, "--unit-tokens", "8", "--context", "8",
                    "--log-level", "warning", "--skip-file-checks", "--log-file", directory + "/coordinator.log",
                    "--scheduler-slice", "\(schedulerSlice)",
                ]
            }, directory: directory, what: "coordinator", log: directory + "/coordinator.log")
            let manifest = try ShardManifest.read(directory + "/out")
            print(
                "dispatch: \(figures.acknowledged) units (manifest \(manifest.shards.count)) to \(workers) null workers (\(nullWorkers.rawValue)) over \(transport)"
                    + (cpus.map { ", on \($0) CPU\($0 == 1 ? "" : "s") (this process's affinity)" } ?? "")
                    + (schedulerSlice > 0 ? ", scheduler slice \(schedulerSlice) µs" : ", the kernel's scheduler slice"))
            printCoordinator(figures)
            coordinatorRounds.append(figures)
            addToTrace(figures, round: round, side: "coordinator")
            if floor {
                let reference = try measure(coordinatorArguments: { ["bench", "dispatch-floor", "--bind", $0, "--units", "\(units)", "--scheduler-slice", "\(schedulerSlice)"] }, directory: directory, what: "floor", log: nil)
                printFloor(reference, against: figures)
                floorRounds.append(reference)
                addToTrace(reference, round: round, side: "floor")
            }
            if let leaseTrace { try AtomicFile.write(Array(trace.utf8), to: leaseTrace) }
        }
        let figures = DispatchFigures.median(of: coordinatorRounds)
        let reference = floorRounds.isEmpty ? nil : DispatchFigures.median(of: floorRounds)
        if rounds > 1 {
            print("summary of \(rounds) rounds (the median of each figure; RSS the largest):")
            printCoordinator(figures)
            print("p99 goal met in \(goalMet(coordinatorRounds)) of \(rounds) rounds")
            if let reference {
                printFloor(reference, against: figures)
                print("  the floor met the p99 goal in \(goalMet(floorRounds)) of \(rounds) rounds")
            }
        }
        let latency = figures.goalLatency(paced: pacedRate > 0)
        var object: [String: Any] = [
            "units": figures.acknowledged, "workers": workers, "units_per_second": figures.rate, "p50_ms": latency.p50,
            "p99_ms": latency.p99, "saturated_p50_ms": figures.saturatedLatency.p50, "saturated_p99_ms": figures.saturatedLatency.p99,
            "peak_rss_mb": Double(figures.peakRSS) / 1_048_576, "transport": transport, "null_workers": nullWorkers.rawValue,
            "worker_cpu_us_per_unit": figures.workerCPU, "coordinator_cpu_us_per_unit": figures.coordinatorCPU,
            "rounds": rounds, "p99_goal_met_rounds": goalMet(coordinatorRounds), "host_steal_percent": figures.host.stealPercent,
            "host_interrupts_percent": figures.host.interruptsPercent, "host_others_percent": figures.host.othersPercent,
        ]
        if let cpus { object["cpus"] = cpus }
        object["scheduler_slice_us"] = schedulerSlice
        if pacedRate > 0 {
            object["paced_offered_units_per_second"] = pacedRate
            object["paced_units_per_second"] = figures.pacedRate
            object["paced_over_5ms_percent"] = figures.pacedOverGoalPercent
            object["paced_read_p99_ms"] = figures.pacedReadP99
            object["paced_settling_requests"] = figures.settlingRequests
            object["paced_worker_cpu_us_per_unit"] = figures.pacedWorkerCPU
            object["paced_coordinator_cpu_us_per_unit"] = figures.pacedCoordinatorCPU
        }
        if let reference {
            let floorLatency = reference.goalLatency(paced: pacedRate > 0)
            object["floor_units_per_second"] = reference.rate
            object["floor_p50_ms"] = floorLatency.p50
            object["floor_p99_ms"] = floorLatency.p99
            object["floor_cpu_us_per_unit"] = reference.coordinatorCPU
            object["floor_p99_goal_met_rounds"] = goalMet(floorRounds)
            object["floor_host_steal_percent"] = reference.host.stealPercent
            object["floor_host_interrupts_percent"] = reference.host.interruptsPercent
            object["floor_host_others_percent"] = reference.host.othersPercent
            if pacedRate > 0 {
                object["floor_paced_units_per_second"] = reference.pacedRate
                object["floor_paced_over_5ms_percent"] = reference.pacedOverGoalPercent
                object["floor_paced_read_p99_ms"] = reference.pacedReadP99
                object["floor_paced_cpu_us_per_unit"] = reference.pacedCoordinatorCPU
            }
        }
        if json { print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)) }
        if scratch == nil { try? FileManager.default.removeItem(atPath: directory) }
    }

    private func printCoordinator(_ figures: DispatchFigures) {
        print("saturated: \(figures.saturatedUnits) units at \(Int(figures.rate)) units/s (goal ≥ 20000); latency p50 \(format(figures.saturatedLatency.p50)) ms, p99 \(format(figures.saturatedLatency.p99)) ms (workers ÷ units/s)")
        if pacedRate > 0 {
            print("paced: \(figures.pacedUnits) units at \(Int(figures.pacedRate)) units/s (offered \(pacedRate)); lease latency p50 \(format(figures.pacedLatency.p50)) ms, p99 \(format(figures.pacedLatency.p99)) ms (goal p99 ≤ 5; p99 \(format(figures.pacedReadP99)) ms timed to the null workers' reads); \(String(format: "%.2f", figures.pacedOverGoalPercent))% of leases over 5 ms (goal ≤ 1%); not counted: \(figures.settlingRequests) requests made while the saturated phase's backlog cleared")
        }
        print("CPU per unit, saturated phase: null workers \(String(format: "%.1f", figures.workerCPU)) µs, coordinator \(String(format: "%.1f", figures.coordinatorCPU)) µs\(pacedRate > 0 ? String(format: "; paced phase: null workers %.1f µs, coordinator %.1f µs", figures.pacedWorkerCPU, figures.pacedCoordinatorCPU) : "")")
        print("coordinator peak RSS: \(figures.peakRSS >> 20) MB (goal ≤ 200)")
        print("host over the \(pacedRate > 0 ? "paced" : "saturated") phase: \(describe(figures.host))")
    }

    private func describe(_ host: HostLoad) -> String {
        String(format: "steal %.1f%%, interrupts %.1f%%, other processes %.1f%% of the machine's CPU time (all cores, idle included)", host.stealPercent, host.interruptsPercent, host.othersPercent)
    }

    private func printFloor(_ reference: DispatchFigures, against figures: DispatchFigures) {
        let latency = figures.goalLatency(paced: pacedRate > 0), floorLatency = reference.goalLatency(paced: pacedRate > 0)
        print("floor (libzmq ROUTER answering from pre-encoded messages; no state, journal or decoding), same run and workers:")
        print("  saturated \(Int(reference.rate)) units/s; \(pacedRate > 0 ? "paced at \(Int(reference.pacedRate)) units/s, " : "")lease latency p50 \(format(floorLatency.p50)) ms, p99 \(format(floorLatency.p99)) ms\(pacedRate > 0 ? String(format: " (%.2f%% over 5 ms; p99 %@ ms timed to reads)", reference.pacedOverGoalPercent, format(reference.pacedReadP99)) : ""); CPU per unit \(String(format: "%.1f", reference.coordinatorCPU)) µs\(pacedRate > 0 ? String(format: " (paced phase %.1f µs)", reference.pacedCoordinatorCPU) : "")")
        print("  host over its \(pacedRate > 0 ? "paced" : "saturated") phase: \(describe(reference.host))")
        print("  coordinator ÷ floor: units/s \(String(format: "%.2f", figures.rate / reference.rate))×, CPU per unit \(String(format: "%.2f", figures.coordinatorCPU / reference.coordinatorCPU))×\(pacedRate > 0 ? String(format: " (paced phase %.2f×)", figures.pacedCoordinatorCPU / reference.pacedCoordinatorCPU) : ""), p99 \(String(format: "%.2f", latency.p99 / floorLatency.p99))×")
    }

    /// Rounds whose lease latency p99 is within the goal (5 ms).
    private func goalMet(_ rounds: [DispatchFigures]) -> Int {
        rounds.count { $0.goalLatency(paced: pacedRate > 0).p99 <= 5 }
    }

    /// Starts the process `coordinatorArguments(endpoint)` describes and returns once it
    /// listens. A free port can be taken by another process before the child binds it (tests
    /// run in parallel): then the child exits, and a fresh port is tried.
    private func startListening(_ coordinatorArguments: (String) -> [String], directory: String, what: String, log: String?) throws -> (Process, String) {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        let attempts = transport == "ipc" ? 1 : 3
        for attempt in 1...attempts {
            let endpoint = transport == "ipc" ? "ipc://\(directory)/\(what).sock" : "tcp://127.0.0.1:\(try freeLoopbackPort())"
            let process = Process()
            if wrapperWords.isEmpty {
                process.executableURL = executable
                process.arguments = coordinatorArguments(endpoint)
            } else {
                // env finds the wrapper on PATH and execs it in place, so the process (and its RSS) is the wrapped one.
                process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                process.arguments = wrapperWords + [executable.path] + coordinatorArguments(endpoint)
            }
            process.standardError = FileHandle(forWritingAtPath: "/dev/null")
            process.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
            try process.run()
            // Under valgrind a start takes seconds; a minute is room enough on any host.
            let deadline = ContinuousClock.now + .seconds(60)
            while process.isRunning && !isListening(endpoint) && ContinuousClock.now < deadline {
                Thread.sleep(forTimeInterval: 0.005)
            }
            if process.isRunning { return (process, endpoint) }
            process.waitUntilExit()
            if attempt == attempts {
                throw CommandFailure("the \(what) exited with status \(process.terminationStatus) before it listened on \(endpoint)\(log.map { "; see \($0)" } ?? "")")
            }
        }
        preconditionFailure("unreachable: the last attempt returns or throws")
    }

    /// The figures of one run of both phases against the process `coordinatorArguments(endpoint)`
    /// starts (this executable), with fresh null workers.
    private func measure(coordinatorArguments: (String) -> [String], directory: String, what: String, log: String?) throws -> DispatchFigures {
        // A separate process, so that its RSS and CPU are its own.
        let (coordinator, endpoint) = try startListening(coordinatorArguments, directory: directory, what: what, log: log)
        defer { if coordinator.isRunning { coordinator.terminate() } }
        let sampler = RunSampler(pid: coordinator.processIdentifier)
        sampler.start()
        // For the lease trace's wall-clock times.
        let wallAtStart = Date().timeIntervalSince1970, instantAtStart = ContinuousClock.now

        let kind = nullWorkers
        let coordinatorPID = coordinator.processIdentifier
        let results = Mutex<[DispatchClientResult]>([])
        let group = DispatchGroup()
        let perThread = (workers + clientThreads - 1) / clientThreads
        // Each worker holds a unit for `hold` on average: together they offer workers / hold units/s.
        let hold = pacedRate > 0 ? Duration.seconds(Double(workers) / Double(pacedRate)) : .zero
        for thread in 0..<clientThreads {
            let names = (thread * perThread..<min(workers, (thread + 1) * perThread)).map { "null-\($0)" }
            let share = pacedRate > 0 ? units / 2 * names.count / workers : Int.max
            group.enter()
            let client = Thread {
                nameCurrentThread("null-workers")
                let result = runNullWorkers(
                    names: names, endpoint: endpoint, kind: kind, coordinator: coordinatorPID, saturatedShare: share, hold: hold)
                results.withLock { $0.append(result) }
                group.leave()
            }
            client.stackSize = 8 << 20
            client.start()
        }
        group.wait()
        coordinator.waitUntilExit()
        let (peakRSS, samples) = sampler.stop()

        let all = results.withLock { $0 }
        if let failure = all.compactMap(\.error).first { throw CommandFailure("a null worker failed: \(failure)") }
        guard coordinator.terminationStatus == 0 else {
            throw CommandFailure("the \(what) exited with status \(coordinator.terminationStatus)\(log.map { "; see \($0)" } ?? "")")
        }
        let saturated = all.reduce(0) { $0 + $1.saturatedUnits }
        let paced = all.reduce(0) { $0 + $1.pacedUnits }
        let acknowledged = all.reduce(0) { $0 + $1.acknowledged }
        let settling = all.reduce(0) { $0 + $1.settlingRequests }
        guard let first = all.compactMap(\.firstReady).min(), let saturatedEnd = all.compactMap(\.saturatedEnd).max() else {
            throw CommandFailure("no unit was dispatched")
        }
        let rate = Double(saturated) / (saturatedEnd - first).seconds
        func percentiles(_ values: [Double]) -> (p50: Double, p99: Double) {
            let sorted = values.sorted()
            func at(_ p: Double) -> Double { sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))] * 1000 }
            return (at(0.5), at(0.99))
        }
        let saturatedLatency = percentiles(all.flatMap(\.saturatedLatencies))
        let pacedLatencies = all.flatMap(\.pacedLatencies)
        let pacedLatency = percentiles(pacedLatencies)
        // How far from the goal: p99 ≤ 5 ms is at most 1% of leases over 5 ms.
        let overGoal = pacedLatencies.isEmpty ? 0 : Double(pacedLatencies.count { $0 > 0.005 }) / Double(pacedLatencies.count) * 100
        // The rate at which paced requests were answered, between the first answer and the last.
        // Counted by ACKs instead, the span would take in the saturated phase's ACKs that the
        // switch leaves in flight, and the last ACKs, which wait for the manifest.
        var pacedRateSeen = 0.0
        if let start = all.compactMap(\.firstPacedAssign).min(), let end = all.compactMap(\.lastPacedAssign).max(), end > start {
            pacedRateSeen = Double(pacedLatencies.count - 1) / (end - start).seconds
        }
        // CPU from the first client thread's start to the last one's switch to paced (one
        // span with the default single client thread). This process is the null workers, with
        // libzmq's I/O thread for --null-workers zmq; the memory sampler's share is negligible.
        let starts = all.compactMap(\.startCPU), ends = all.compactMap(\.saturatedEndCPU)
        func perUnit(_ side: KeyPath<(workers: Double, coordinator: Double), Double>) -> Double {
            guard let start = starts.map({ $0[keyPath: side] }).min(), let end = ends.map({ $0[keyPath: side] }).max() else { return 0 }
            return (end - start) / Double(max(saturated, 1)) * 1e6
        }
        let workerCPU = perUnit(\.workers), coordinatorCPU = perUnit(\.coordinator)
        // Over the phase the goal is about.
        let phase = pacedRate > 0 ? (all.compactMap(\.firstPacedAssign).min(), all.compactMap(\.lastPacedAssign).max()) : (first, saturatedEnd)
        let span = phase.0.flatMap { start in phase.1.flatMap { RunSampler.span(samples, from: start, to: $0) } }
        let host = span.flatMap { HostLoad(from: $0.first, to: $0.last) } ?? HostLoad()
        // The paced phase's CPU per unit: the leases that arrived within the sampled span.
        var pacedCPU = (workers: 0.0, coordinator: 0.0)
        if pacedRate > 0, let span {
            let leased = all.reduce(0) { count, result in
                count + result.pacedAskedAt.indices.count { index in
                    let arrived = result.pacedAskedAt[index] + .seconds(result.pacedLatencies[index])
                    return arrived >= span.first.at && arrived <= span.last.at
                }
            }
            if leased > 0 {
                pacedCPU = ((span.last.own - span.first.own) / Double(leased) * 1e6, (span.last.process - span.first.process) / Double(leased) * 1e6)
            }
        }
        let trace = all.flatMap { result in
            result.pacedAskedAt.indices.map { index in
                PacedLease(
                    askedUnixSeconds: wallAtStart + (result.pacedAskedAt[index] - instantAtStart).seconds,
                    latency: result.pacedLatencies[index], readLatency: result.pacedReadLatencies[index])
            }
        }
        return DispatchFigures(
            saturatedUnits: saturated, pacedUnits: paced, acknowledged: acknowledged, rate: rate, saturatedLatency: saturatedLatency, pacedLatency: pacedLatency,
            pacedReadP99: percentiles(all.flatMap(\.pacedReadLatencies)).p99, pacedOverGoalPercent: overGoal,
            pacedRate: pacedRateSeen, settlingRequests: settling, workerCPU: workerCPU, coordinatorCPU: coordinatorCPU,
            pacedWorkerCPU: pacedCPU.workers, pacedCoordinatorCPU: pacedCPU.coordinator, peakRSS: peakRSS, host: host, pacedTrace: trace)
    }
}

/// What one run of ``BenchDispatchCommand`` measured.
private struct DispatchFigures {
    var saturatedUnits: Int
    var pacedUnits: Int
    var acknowledged: Int
    /// Units/s of the saturated phase, and of the paced one.
    var rate: Double
    var saturatedLatency: (p50: Double, p99: Double)
    var pacedLatency: (p50: Double, p99: Double)
    /// The paced p99 timed to when the null workers read each ASSIGN, not to its arrival.
    var pacedReadP99: Double
    /// Leases of the paced phase that took over 5 ms, in percent.
    var pacedOverGoalPercent: Double
    var pacedRate: Double
    /// Paced requests not counted: made while the saturated phase's backlog was answered.
    var settlingRequests: Int
    /// CPU µs per unit of the saturated phase.
    var workerCPU: Double
    var coordinatorCPU: Double
    /// The same over the paced phase, where fewer messages share each wake-up (0 without one).
    var pacedWorkerCPU: Double
    var pacedCoordinatorCPU: Double
    var peakRSS: Int
    /// The host over the paced phase (the saturated one without it).
    var host: HostLoad
    /// Every paced lease counted, in no particular order.
    var pacedTrace: [PacedLease]
}

/// One paced lease, for `--lease-trace`.
struct PacedLease {
    /// When the null worker asked for it (Unix time).
    var askedUnixSeconds: Double
    /// Seconds to its ASSIGN's arrival, and to its read.
    var latency: Double
    var readLatency: Double
}

extension DispatchFigures {
    /// The latency the goal is about: the paced phase's, or the saturated one's without it.
    func goalLatency(paced: Bool) -> (p50: Double, p99: Double) { paced ? pacedLatency : saturatedLatency }

    /// Each figure's median over the rounds (the upper one of an even count); the largest peak RSS.
    static func median(of rounds: [DispatchFigures]) -> DispatchFigures {
        func middle<T: Comparable>(_ value: (DispatchFigures) -> T) -> T { rounds.map(value).sorted()[rounds.count / 2] }
        return DispatchFigures(
            saturatedUnits: middle(\.saturatedUnits), pacedUnits: middle(\.pacedUnits), acknowledged: middle(\.acknowledged), rate: middle(\.rate),
            saturatedLatency: (middle(\.saturatedLatency.p50), middle(\.saturatedLatency.p99)), pacedLatency: (middle(\.pacedLatency.p50), middle(\.pacedLatency.p99)),
            pacedReadP99: middle(\.pacedReadP99),
            pacedOverGoalPercent: middle(\.pacedOverGoalPercent), pacedRate: middle(\.pacedRate), settlingRequests: middle(\.settlingRequests), workerCPU: middle(\.workerCPU),
            coordinatorCPU: middle(\.coordinatorCPU), pacedWorkerCPU: middle(\.pacedWorkerCPU), pacedCoordinatorCPU: middle(\.pacedCoordinatorCPU),
            peakRSS: rounds.map(\.peakRSS).max() ?? 0,
            host: HostLoad(stealPercent: middle(\.host.stealPercent), interruptsPercent: middle(\.host.interruptsPercent), othersPercent: middle(\.host.othersPercent)),
            pacedTrace: [])
    }
}

struct DispatchClientResult: Sendable {
    var firstReady: ContinuousClock.Instant?
    /// Units leased (ASSIGNs received) in the saturated phase, where every null worker answers
    /// at once. Counted by ASSIGN, not ACK: the coordinator holds ACKs to send them with the
    /// next ASSIGN, so they say when a unit was leased only within a quarter second.
    var saturatedUnits = 0
    var saturatedEnd: ContinuousClock.Instant?
    var saturatedLatencies: [Double] = []
    /// Units leased in the paced phase, where each null worker holds its unit for a while first.
    var pacedUnits = 0
    /// ACKs received: every unit's, by the end.
    var acknowledged = 0
    /// When the first and the last ASSIGN that answered a paced request arrived.
    var firstPacedAssign: ContinuousClock.Instant?
    var lastPacedAssign: ContinuousClock.Instant?
    var pacedLatencies: [Double] = []
    /// The same requests, timed to when this thread read the ASSIGN.
    var pacedReadLatencies: [Double] = []
    /// When each of them was asked for.
    var pacedAskedAt: [ContinuousClock.Instant] = []
    /// Requests of the paced phase made before the saturated phase's last one was answered:
    /// they queue behind its backlog, so their latency is not counted.
    var settlingRequests = 0
    /// CPU seconds so far of this process (the null workers) and of the coordinator, when this
    /// thread's workers started and when their saturated phase ended.
    var startCPU: (workers: Double, coordinator: Double)?
    var saturatedEndCPU: (workers: Double, coordinator: Double)?
    var error: String?
}

private func format(_ milliseconds: Double) -> String { String(format: "%.3f", milliseconds) }

/// The one hook of the bench's run.
let nullWorkerHook = "blocks.0.hook_resid_post"

/// Plays `names.count` null workers on one thread until the coordinator sends SHUTDOWN to
/// all. Each worker asks for its next unit with its DONE (`ready`), as real workers do. The
/// null workers share the cores with the coordinator, so they do no more than the protocol
/// needs: of an ASSIGN they read the unit and lease only. `coordinator` is sampled for its CPU
/// time over the saturated phase.
private func runNullWorkers(
    names: [String], endpoint: String, kind: NullWorkerKind, coordinator: Int32, saturatedShare: Int, hold: Duration
) -> DispatchClientResult {
    var result = DispatchClientResult()
    do {
        let transport = try kind.connect(workers: names.count, to: endpoint, maxMessageSize: ClusterWire.Limits.workerMaxMessageBytes)
        defer { transport.close() }
        let clock = ContinuousClock()
        // Seeded once: the system generator costs a getrandom call per draw, on the cores the
        // coordinator runs on.
        var generator = SplitMix64(seed: UInt64.random(in: .min ... .max))
        var askedAt = [ContinuousClock.Instant](repeating: clock.now, count: names.count)
        var lastSent = [ContinuousClock.Instant](repeating: clock.now, count: names.count)
        var finished = [Bool](repeating: false, count: names.count)
        /// DONEs waiting for their hold to pass, by due time.
        var holding = Heap<HeldReport>()
        var open = names.count
        var paced = false
        // This whole process (libzmq's I/O thread does most of a DEALER's work) and the coordinator.
        func endSaturated() { result.saturatedEndCPU = (workers: ownCPUSeconds(), coordinator: processCPUSeconds(coordinator)) }

        func send(_ index: Int, _ message: WorkerMessage) throws {
            try transport.send(index, message.encode())
            lastSent[index] = clock.now
        }
        /// When each worker asked for its unit, and in which phase (nil: it has no request
        /// out). An answer to a request of the saturated phase that arrives after the switch is
        /// not a paced latency, nor is one to a request made while the saturated phase's backlog
        /// (a request from every worker) was still being answered: those settle.
        enum Phase { case saturated, settling, paced }
        var asked = [Phase?](repeating: nil, count: names.count)
        var saturatedOutstanding = 0
        var settled = false
        func ask(_ index: Int) {
            askedAt[index] = clock.now
            let phase: Phase = !paced ? .saturated : settled ? .paced : .settling
            asked[index] = phase
            switch phase {
            case .saturated: saturatedOutstanding += 1
            case .settling: result.settlingRequests += 1
            case .paced: break
            }
        }
        let hook = nullWorkerHook
        let statistics = [hook: HookStatistics(count: 1, mean: [0], variance: [0], meanNorm: 0)]
        func answer(_ index: Int, _ unit: UnitID, _ lease: LeaseID) throws {
            let done = UnitDone(
                unit: unit, lease: lease,
                shards: [ShardReport(hook: hook, file: ClusterWire.shardFileName(unit: unit.rawValue, lease: lease.rawValue, hook: hook), rows: 1, bytes: 1, crc32c: 0)],
                statistics: statistics, documents: 1, windows: 1, rows: 1, tokens: 1, ready: true)
            try send(index, .done(done))
            ask(index)
        }
        /// One message from the coordinator to worker `index`.
        func handle(_ index: Int, _ frames: [[UInt8]]) throws {
            if let (unit, lease) = try Assignment.unitAndLease(frames: frames) {
                let now = clock.now
                if paced {
                    result.pacedUnits += 1
                } else {
                    result.saturatedUnits += 1
                    result.saturatedEnd = now
                }
                // Timed to the ASSIGN's arrival, not to when this thread got to read it: the null
                // workers wait for the same two cores as the coordinator, and a real worker on
                // its own machine reads at once.
                let stamped = transport.arrival(index, now: now)
                // Never before the request: the two clocks are read a few hundred ns apart.
                let arrived = stamped >= askedAt[index] ? stamped : now
                let latency = (arrived - askedAt[index]).seconds
                switch asked[index] {
                case .saturated:
                    result.saturatedLatencies.append(latency)
                    saturatedOutstanding -= 1
                    if paced && saturatedOutstanding == 0 { settled = true }
                case .paced:
                    result.pacedLatencies.append(latency)
                    result.pacedReadLatencies.append((now - askedAt[index]).seconds)
                    result.pacedAskedAt.append(askedAt[index])
                    if result.firstPacedAssign == nil { result.firstPacedAssign = now }
                    result.lastPacedAssign = now
                case .settling, nil:
                    break
                }
                asked[index] = nil
                if paced {
                    // Uniform over [0, 2·hold]: the mean offered load is workers / hold.
                    let due = arrived + hold * Double.random(in: 0..<2, using: &generator)
                    holding.insert(HeldReport(due: due, index: index, unit: unit, lease: lease))
                } else {
                    try answer(index, unit, lease)
                    if result.saturatedUnits >= saturatedShare && hold > .zero {
                        paced = true
                        settled = saturatedOutstanding == 0
                        endSaturated()
                    }
                }
                return
            }
            switch try CoordinatorMessage.decode(frames: frames) {
            case .assign: break
            case .ack: result.acknowledged += 1
            case .shutdown:
                if !finished[index] {
                    finished[index] = true
                    open -= 1
                    transport.finish(index)
                }
            case .disconnect:
                try send(index, .ready(Ready(worker: names[index], assignBeforeAck: true)))
                ask(index)
            case .heartbeat, .cancel: break
            }
        }

        result.firstReady = clock.now
        result.startCPU = (workers: ownCPUSeconds(), coordinator: processCPUSeconds(coordinator))
        for index in names.indices {
            try send(index, .ready(Ready(worker: names[index], assignBeforeAck: true)))
            ask(index)
            try transport.drain(index, handle)
        }
        var lastMessage = clock.now
        var lastSweep = clock.now
        while open > 0 {
            while let next = holding.min, next.due <= clock.now {
                let report = holding.removeMin()!
                try answer(report.index, report.unit, report.lease)
                try transport.drain(report.index, handle)
            }
            let untilDue = holding.min.map { $0.due - clock.now } ?? .milliseconds(50)
            if try transport.wait(timeout: min(.milliseconds(50), untilDue), handle) { lastMessage = clock.now }
            let now = clock.now
            guard now - lastSweep >= .milliseconds(200) else { continue }
            lastSweep = now
            if now - lastMessage > .seconds(30) { throw CommandFailure("no message from the coordinator for 30 s") }
            // A signal missed between a receive and a send must not strand a worker; idle
            // workers must still be heard from, or the coordinator drops them.
            for index in names.indices where !finished[index] {
                if now - lastSent[index] >= .milliseconds(500) { try send(index, .heartbeat(WorkerHeartbeat(worker: names[index]))) }
                try transport.drain(index, handle)
            }
        }
        if !paced { endSaturated() }
    } catch {
        result.error = "\(error)"
    }
    return result
}

private struct HeldReport: Comparable {
    var due: ContinuousClock.Instant
    var index: Int
    var unit: UnitID
    var lease: LeaseID
    static func < (a: HeldReport, b: HeldReport) -> Bool { a.due < b.due }
    static func == (a: HeldReport, b: HeldReport) -> Bool { a.due == b.due && a.index == b.index }
}

/// Samples every 50 ms, until stopped, a process's VmHWM (it is gone once the process exits)
/// and the CPU time so far of the machine, of that process and of this one.
final class RunSampler: Sendable {
    struct Sample: Sendable {
        var at: ContinuousClock.Instant
        var machine: MachineCPUTimes
        /// CPU seconds of the sampled process and of this one.
        var process: Double
        var own: Double
    }

    private let pid: Int32
    private let state = Mutex<(peak: Int, samples: [Sample], running: Bool)>((0, [], true))

    init(pid: Int32) { self.pid = pid }

    func start() {
        Thread { [self] in
            nameCurrentThread("bench-sampler")
            let clock = ContinuousClock()
            while state.withLock({ $0.running }) {
                let peak = processPeakResidentBytes(pid)
                let process = processCPUSeconds(pid)
                let sample = MachineCPUTimes.now().map { Sample(at: clock.now, machine: $0, process: process, own: ownCPUSeconds()) }
                state.withLock { state in
                    state.peak = max(state.peak, peak)
                    // Once the process has exited its CPU reads 0: such samples say nothing.
                    if let sample, sample.process >= (state.samples.last?.process ?? 0) { state.samples.append(sample) }
                }
                Thread.sleep(forTimeInterval: 0.05)
            }
        }.start()
    }

    /// The first and the last sample within `start...end`: the span of a phase that a
    /// sample's tail cannot take in the neighbouring one's work (the manifest, after the paced
    /// phase). Nil if fewer than two samples fall within.
    static func span(_ samples: [Sample], from start: ContinuousClock.Instant, to end: ContinuousClock.Instant) -> (first: Sample, last: Sample)? {
        guard let first = samples.first(where: { $0.at >= start }), let last = samples.last(where: { $0.at <= end }), first.at < last.at else { return nil }
        return (first, last)
    }

    /// Stops sampling; the peak RSS and the samples.
    func stop() -> (peakRSS: Int, samples: [Sample]) {
        state.withLock {
            $0.running = false
            return ($0.peak, $0.samples)
        }
    }
}

/// Where the machine's CPU time went over a span, in percent of all of it (every core, idle
/// included): what the host and other processes took while a benchmark ran.
struct HostLoad {
    /// Taken by the hypervisor for other machines.
    var stealPercent = 0.0
    /// Interrupts, mostly the kernel's deferred network work (loopback TCP).
    var interruptsPercent = 0.0
    /// Processes other than the sampled one and this one.
    var othersPercent = 0.0
}

extension HostLoad {
    /// The load between two samples; nil if no time passed between them.
    init?(from first: RunSampler.Sample, to last: RunSampler.Sample) {
        let total = last.machine.total - first.machine.total
        guard total > 0 else { return nil }
        self.init()
        let others = (last.machine.processes - first.machine.processes) - (last.process - first.process) - (last.own - first.own)
        stealPercent = (last.machine.steal - first.machine.steal) / total * 100
        interruptsPercent = (last.machine.interrupts - first.machine.interrupts) / total * 100
        // Process and machine times are counted in separate ticks: a little below zero is zero.
        othersPercent = max(0, others / total * 100)
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

/// Whether something listens on `endpoint`, without connecting to it: an ipc socket's file
/// exists, or /proc/net/tcp lists the TCP port on 127.0.0.1 in state LISTEN (0A).
func isListening(_ endpoint: String) -> Bool {
    if endpoint.hasPrefix("ipc://") { return FileManager.default.fileExists(atPath: String(endpoint.dropFirst(6))) }
    guard let port = Int(endpoint.split(separator: ":").last ?? ""), let table = readWholeFile("/proc/net/tcp") else { return false }
    let local = "0100007F:" + String(format: "%04X", port)
    return table.split(separator: "\n").contains { line in
        let fields = line.split(separator: " ")
        return fields.count > 3 && fields[1] == local && fields[3] == "0A"
    }
}

/// User and system CPU seconds of a process so far (0 if it has exited), from
/// /proc/PID/stat: fields 14 and 15, in clock ticks, counted after the command name.
func processCPUSeconds(_ pid: Int32) -> Double {
    guard let stat = readWholeFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    // fields[0] is the state (field 3), so utime (14) and stime (15) are fields[11] and [12].
    guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
    return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// User and system CPU seconds of this process so far, all threads.
func ownCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(Int32(RUSAGE_SELF.rawValue), &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
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

/// A binary min-heap, enough for the held reports.
private struct Heap<Element: Comparable> {
    private var storage: [Element] = []

    var min: Element? { storage.first }

    mutating func insert(_ element: Element) {
        storage.append(element)
        var child = storage.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard storage[child] < storage[parent] else { break }
            storage.swapAt(child, parent)
            child = parent
        }
    }

    mutating func removeMin() -> Element? {
        guard !storage.isEmpty else { return nil }
        storage.swapAt(0, storage.count - 1)
        let first = storage.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < storage.count && storage[left] < storage[smallest] { smallest = left }
            if right < storage.count && storage[right] < storage[smallest] { smallest = right }
            if smallest == parent { break }
            storage.swapAt(parent, smallest)
            parent = smallest
        }
        return first
    }
}
