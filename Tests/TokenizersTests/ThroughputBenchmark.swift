import Foundation
import Testing
import Tokenizers

/// Encoding throughput on the MiniLM fixture lines repeated to about 1 MB, one line per call as
/// the collection workers encode. A benchmark, not a timed test: it prints figures and asserts
/// nothing about them. Run it in release:
///
///     TOKENIZERS_BENCHMARK=1 swift test -c release --filter ThroughputBenchmark
///
/// Tests/Reference/bench_tokenizers.py measures the Rust library on the same corpus.
@Suite("Throughput", .serialized)
struct ThroughputBenchmark {
    static let enabled = ProcessInfo.processInfo.environment["TOKENIZERS_BENCHMARK"] != nil

    static func corpus() throws -> (lines: [String], bytes: Int) {
        let url = ReferenceFixture.packageRoot.appendingPathComponent("Tests/Reference/fixtures/minilm/lines.txt")
        let lines = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").map(String.init)
        var corpus: [String] = []
        var bytes = 0
        while bytes < 1_000_000 {
            for line in lines {
                corpus.append(line)
                bytes += line.utf8.count
            }
        }
        return (corpus, bytes)
    }

    /// CPU time of this thread: other work on a shared machine does not count against us.
    static func cpuSeconds() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) * 1e-9
    }

    @Test("encode throughput", .enabled(if: enabled), arguments: ReferenceFixture.names)
    func throughput(fixture: String) throws {
        let (lines, bytes) = try Self.corpus()
        let start = Self.cpuSeconds()
        let tokenizer = try Tokenizer(contentsOfFile: try ReferenceFixture.load(fixture).tokenizerPath)
        _ = tokenizer.encode("warm the Unicode tables: héllo wörld")
        let loadSeconds = Self.cpuSeconds() - start

        func pass() -> (seconds: Double, tokens: Int) {
            let start = Self.cpuSeconds()
            var tokens = 0
            for line in lines { tokens += tokenizer.encode(line).count }
            return (Self.cpuSeconds() - start, tokens)
        }
        // The first pass fills the BPE word cache; later passes show the steady state.
        let first = pass()
        var best = first
        for _ in 0..<3 {
            let next = pass()
            if next.seconds < best.seconds { best = next }
        }
        let megabytes = Double(bytes) / 1e6
        print(
            String(
                format: "%@: %.2f MB (%d lines), load %.0f ms; first pass %.2f MB/s; best %.2f MB/s, %.2f M tokens/s (CPU time, 1 thread)",
                fixture, megabytes, lines.count, loadSeconds * 1000, megabytes / first.seconds, megabytes / best.seconds,
                Double(best.tokens) / best.seconds / 1e6))
    }
}
