import ArgumentParser

/// `actcluster bench`: benchmarks that print figures (they assert nothing; tests do that).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the speed of actcluster's components on this host.",
        subcommands: [BenchCodecCommand.self]
    )
}
