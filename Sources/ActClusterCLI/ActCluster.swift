import ArgumentParser

/// The `actcluster` root command. Every role is a subcommand of the same binary.
public struct ActCluster: ParsableCommand {
    public static let version = "0.1.0"

    public static let configuration = CommandConfiguration(
        commandName: "actcluster",
        abstract: "Collect transformer activations across a fleet and fit sparse dictionaries on them.",
        discussion: """
            Start with `actcluster version` to check the libraries and CPU features this host \
            offers, and `actcluster keygen --out PREFIX` to make CURVE keys for a cluster.
            """,
        version: ActCluster.version,
        subcommands: [
            VersionCommand.self, KeygenCommand.self, ForwardCommand.self, CollectCommand.self, InspectCommand.self,
            VerifyCommand.self, ExportCommand.self, RunCommand.self, CoordinatorCommand.self, WorkerCommand.self, StatusCommand.self, TrainCommand.self,
            TrainerCommand.self, ExportSAECommand.self, EvalCommand.self, BenchCommand.self,
        ]
    )

    public init() {}
}

/// A command that could not do its work: printed as `Error: <sentence>`, exit status 1,
/// without the usage text that argument mistakes get.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
