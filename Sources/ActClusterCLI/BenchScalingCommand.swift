import ArgumentParser
import Foundation
import Platform

/// `actcluster bench scaling`: does the cluster scale with workers on one machine?
struct BenchScalingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Measure collection tokens/s with N workers against 1 worker, each --threads threads.",
        discussion: """
            Runs the same collection twice in this run, with real coordinator and worker \
            processes on loopback: once with one worker, once with --workers workers, every \
            worker with --threads forward threads. Tokens/s counts the tokens of finished \
            units from the first lease to the last DONE, so model loading counts as it would in \
            a real run. The two alternate over --rounds rounds, each ratio taken within its \
            round, so that a machine slowing down between them (steal on a shared host) moves \
            one round, not the result. The median ratio is the figure to read (goal ≥ 1.85 for \
            2 workers × 1 thread on a 2-core machine); the absolute rates drift.
            """
    )

    @Option(help: ArgumentHelp("Hugging Face model folder.", valueName: "dir"))
    var model: String

    @Option(parsing: .upToNextOption, help: ArgumentHelp(
        "English text files, one document per line (default: Debian's /usr/share/common-licenses).", valueName: "path"))
    var corpus: [String] = []

    @Option(help: "Hook to capture.")
    var hook = "blocks.5.hook_resid_post"

    @Option(help: "Workers in the scaled run.")
    var workers = 2

    @Option(help: "Forward threads per worker.")
    var threads = 1

    /// Small enough that a run has about 25 units: while the last one finishes the other
    /// workers idle, and with 13 units (4096) that tail alone held 2 workers to about 1.87×.
    @Option(help: "Approximate tokens per unit (small, so the last unit's tail is a small part of the run).")
    var unitTokens = 2048

    @Option(help: "Stop after about this many tokens of corpus.")
    var maxTokens = 60_000

    @Option(help: "Rounds of one run of each; the median of the rounds' ratios is reported.")
    var rounds = 3

    @Flag(help: "End with one JSON line of the figures.")
    var json = false

    func validate() throws {
        guard workers >= 2, threads >= 1, unitTokens >= 128, maxTokens >= unitTokens, rounds >= 1 else {
            throw ValidationError("--workers must be at least 2, --threads and --rounds at least 1, --unit-tokens at least 128 and at most --max-tokens")
        }
    }

    func run() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("actcluster-scaling-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let corpusPath = directory + "/corpus.txt"
        try writeCorpus(to: corpusPath)

        var ones: [Measurement] = [], manys: [Measurement] = [], ratios: [Double] = []
        for round in 1...rounds {
            // Alternate which goes first, so neither always runs on a warmer or a quieter machine.
            let manyFirst = round % 2 == 0
            let first = try collect(workers: manyFirst ? workers : 1, in: directory + "/\(round)-a", corpus: corpusPath)
            let second = try collect(workers: manyFirst ? 1 : workers, in: directory + "/\(round)-b", corpus: corpusPath)
            let (one, many) = manyFirst ? (second, first) : (first, second)
            ones.append(one)
            manys.append(many)
            ratios.append(many.tokensPerSecond / one.tokensPerSecond)
            print(
                "round \(round): 1 worker \(Int(one.tokensPerSecond)) tok/s (\(String(format: "%.1f", one.seconds)) s), \(workers) workers "
                    + "\(Int(many.tokensPerSecond)) tok/s (\(String(format: "%.1f", many.seconds)) s): \(String(format: "%.2f×", ratios.last!))")
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        let ratio = median(ratios)
        let oneRate = median(ones.map(\.tokensPerSecond)), manyRate = median(manys.map(\.tokensPerSecond))
        print("1 worker × \(threads) thread(s): \(Int(oneRate)) tok/s (median of \(rounds); \(ones[0].tokens) tokens a run)")
        print("\(workers) workers × \(threads) thread(s): \(Int(manyRate)) tok/s (median of \(rounds))")
        print(String(format: "scaling: %.2f× median of the rounds' ratios (goal ≥ 1.85 for 2 workers × 1 thread)", ratio))
        if json {
            let object: [String: Any] = [
                "workers": workers, "threads": threads, "tokens": manys[0].tokens, "one_worker_tok_s": oneRate,
                "many_workers_tok_s": manyRate, "scaling": ratio, "round_ratios": ratios,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        }
    }

    private func writeCorpus(to path: String) throws {
        let sources = corpus.isEmpty
            ? ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/share/common-licenses")) ?? []).sorted().map { "/usr/share/common-licenses/" + $0 }
            : corpus
        var lines: [String] = []
        var bytes = 0
        for source in sources where bytes < maxTokens * 4 {
            guard let text = readWholeFile(source) else { continue }
            for line in text.split(separator: "\n") where !line.allSatisfy(\.isWhitespace) && bytes < maxTokens * 4 {
                lines.append(String(line))
                bytes += line.utf8.count + 1
            }
        }
        guard bytes > unitTokens * 4 else { throw CommandFailure("the corpus holds only \(bytes) bytes; pass --corpus with more English text") }
        try AtomicFile.write(Array((lines.joined(separator: "\n") + "\n").utf8), to: path)
    }

    private struct Measurement {
        var tokens: Int
        var seconds: Double
        var tokensPerSecond: Double { Double(tokens) / seconds }
    }

    private func collect(workers count: Int, in directory: String, corpus: String) throws -> Measurement {
        let binary = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let log = directory + "/coordinator.log"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let coordinator = try Child(
            binary,
            [
                "coordinator", "--corpus", corpus, "--format", "txt", "--model", model, "--hook", hook, "--out", directory, "--bind",
                "tcp://127.0.0.1:0", "--unit-tokens", "\(unitTokens)", "--log-level", "debug",
            ], log: log)
        // The port the kernel chose, read back: one found free beforehand may be taken by then.
        let endpoint = try coordinator.waitForValue(event: "coordinator_listening", key: "endpoint")
        let workers = try (0..<count).map {
            try Child(binary, ["worker", "--connect", endpoint, "--threads", "\(threads)", "--name", "bench-\($0)"], log: directory + "/worker-\($0).log")
        }
        coordinator.wait()
        for worker in workers { worker.wait() }
        guard coordinator.status == 0 else { throw CommandFailure("the coordinator failed; see \(log)") }
        // From the first lease to the last DONE, by the coordinator's clock.
        let lines = (readWholeFile(log) ?? "").split(separator: "\n")
        func time(_ line: Substring) -> Double? {
            guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("ts=") }) else { return nil }
            return LogTimestamp.parse(String(field.dropFirst(3)))
        }
        let leased = lines.filter { $0.contains(" event=unit_leased ") }.compactMap(time)
        let done = lines.filter { $0.contains(" event=unit_done ") }
        let tokens = done.compactMap { line in line.split(separator: " ").first { $0.hasPrefix("tokens=") }.flatMap { Int($0.dropFirst(7)) } }.reduce(0, +)
        guard let start = leased.min(), let end = done.compactMap(time).max(), end > start else {
            throw CommandFailure("no unit finished; see \(log)")
        }
        return Measurement(tokens: tokens, seconds: end - start)
    }
}

/// Seconds since the epoch of a logfmt `ts` value (`2026-11-21T19:26:08.123Z`).
enum LogTimestamp {
    static func parse(_ text: String) -> Double? {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.date(from: text)?.timeIntervalSince1970
    }
}
