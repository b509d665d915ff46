import ArgumentParser
import Logging
import Monitoring

/// `--metrics-bind`, shared by the long-running commands that publish Prometheus metrics
/// (coordinator, trainer, train).
struct MetricsOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Serve Prometheus metrics over HTTP at HOST:PORT/metrics, e.g. 0.0.0.0:9464.", valueName: "host:port"))
    var metricsBind: String?

    /// The registry and its HTTP endpoint, listening; nil without `--metrics-bind`. A bad
    /// address or a port in use is a `CommandFailure` that says so.
    func serve(log: Logger) throws -> MetricsEndpoint? {
        guard let metricsBind else { return nil }
        let registry = MetricsRegistry()
        let server: MetricsServer
        do {
            server = try MetricsServer(bind: metricsBind, registry: registry)
        } catch {
            throw CommandFailure("\(error)")
        }
        log.info("metrics_listening", metadata: ["address": "\(server.address)"])
        return MetricsEndpoint(registry: registry, server: server)
    }
}

/// A registry served over HTTP until `stop()`.
struct MetricsEndpoint {
    let registry: MetricsRegistry
    let server: MetricsServer

    func stop() { server.stop() }
}
