import ArgumentParser

/// `actcluster bench …`: benchmarks that print figures (they assert nothing; tests do that).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput against references run on the same machine.",
        discussion: "With --json, the last line of every bench is one JSON object of its figures.",
        subcommands: [BenchForwardCommand.self, BenchCodecCommand.self, BenchTrainCommand.self, BenchDispatchCommand.self, BenchScalingCommand.self, DispatchFloorCommand.self]
    )
}
