import ArgumentParser
import ClusterProtocol
import Dispatch
import Foundation
import Logging
import Platform
import Worker
import ZeroMQ

/// `actcluster worker`: lease units from a coordinator and collect them.
struct WorkerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worker",
        abstract: "Lease units from a coordinator, collect their activations and report the shards.",
        discussion: """
            The worker connects to the coordinator, says READY and waits. Each ASSIGN brings a \
            unit's text and the run's settings (model folder, hooks, context, dtype, output \
            folder), so a worker needs nothing else: it loads the model named by the run (and \
            keeps it loaded for later units), checks that its config.json has the run's SHA-256, \
            writes one shard per hook into the shared output folder and reports DONE with the \
            files' checksums. It heartbeats while it computes and reconnects on its own when the \
            coordinator goes silent (1 s, doubling up to 32 s).

            When the run has a trainer, each forward batch is also pushed to it; \
            --stream-policy says what happens when the trainer falls behind.

            SIGINT or SIGTERM finishes the current unit, reports it and exits 0; a second signal \
            gives the unit back to the coordinator and exits. A worker whose model differs from \
            the run's gives the unit back and exits with an error naming both digests.

            Example:
              actcluster worker --connect tcp://coordinator:5555 --threads 8
              actcluster worker --connect tcp://coordinator:5555 --curve-server-key keys/cluster.pub
            """
    )

    @Option(help: ArgumentHelp("The coordinator's worker endpoint, e.g. tcp://coordinator:5555.", valueName: "endpoint"))
    var connect: String

    @Option(help: "Threads for the forward pass.")
    var threads = 2

    @Option(help: ArgumentHelp("This worker's name in the coordinator's logs and status (default: host-pid).", valueName: "name"))
    var name: String?

    @Option(
        help: ArgumentHelp(
            "The coordinator's public key (PREFIX.pub from `actcluster keygen`): encrypts all traffic, to the trainer too (it holds the same secret key).",
            valueName: "file"))
    var curveServerKey: String?

    @Option(
        help: ArgumentHelp(
            "This worker's own key pair (PREFIX.key and PREFIX.pub from `actcluster keygen`), so a coordinator allow-list can name it; default: a fresh pair per start.",
            valueName: "prefix"))
    var curveKey: String?

    @Option(help: "When the trainer falls behind: block (wait for it; collection slows) or drop (skip batches, logged as batch_dropped).")
    var streamPolicy: StreamPolicy = .block

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        try checkEndpoint(connect, option: "--connect", example: "tcp://coordinator:5555")
        let maxThreads = ClusterWire.Limits.maxThreads, maxName = ClusterWire.Limits.maxNameBytes
        guard (1...maxThreads).contains(threads) else { throw ValidationError("--threads must be 1 … \(maxThreads), not \(threads)") }
        if let name {
            guard !name.isEmpty, name.utf8.count <= maxName, !name.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
                throw ValidationError("--name must be 1 … \(maxName) bytes of text without control characters")
            }
        }
        if curveKey != nil, curveServerKey == nil {
            throw ValidationError("--curve-key needs --curve-server-key: a worker's own keys only matter on an encrypted connection")
        }
    }

    func run() throws {
        let log = try logging.bootstrap(role: "worker")
        var configuration = WorkerConfiguration(endpoint: connect, name: name, threads: threads, software: ActCluster.version)
        configuration.streamPolicy = streamPolicy
        if let curveServerKey { configuration.curve = try loadCurveKeys(serverKeyFile: curveServerKey, ownPrefix: curveKey) }
        let worker: Worker
        do {
            worker = try Worker(configuration: configuration, logger: log)
        } catch {
            throw CommandFailure("\(error)")
        }
        // The first signal finishes the unit, the second gives it back (Worker.requestStop).
        var sources: [DispatchSourceSignal] = []
        for number in [SIGINT, SIGTERM] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { worker.requestStop() }
            source.resume()
            sources.append(source)
        }
        defer { sources.forEach { $0.cancel() } }
        do {
            try worker.run()
        } catch {
            throw CommandFailure("\(error)")
        }
    }

    private func loadCurveKeys(serverKeyFile: String, ownPrefix: String?) throws -> WorkerCurveKeys {
        do {
            let serverKey = try CurveKeyPair.parseKeyText(try readKeyFile(serverKeyFile), role: "server public (\(serverKeyFile))")
            let pair: CurveKeyPair
            if let ownPrefix {
                pair = try readKeyPair(secretFile: ownPrefix + ".key", publicFile: ownPrefix + ".pub")
            } else {
                pair = try CurveKeyPair.generate()
            }
            return WorkerCurveKeys(serverPublicKey: serverKey, keyPair: pair)
        } catch let error as CurveKeyError {
            throw CommandFailure(error.description)
        }
    }
}

extension StreamPolicy: ExpressibleByArgument {}
