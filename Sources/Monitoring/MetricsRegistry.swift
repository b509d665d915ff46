import Synchronization

/// Gauges and counters a role publishes, rendered in the Prometheus text format (0.0.4).
/// Thread-safe: the role's loop sets values, the HTTP server's thread renders them.
public final class MetricsRegistry: Sendable {
    public enum Kind: String, Sendable {
        case gauge, counter
    }

    private struct Family {
        var help: String
        var kind: Kind
        /// Label text (`{hook="…"}` or empty) → value.
        var samples: [String: Double]
    }

    private let families = Mutex<[String: Family]>([:])
    private let refreshers = Mutex<[@Sendable (MetricsRegistry) -> Void]>([])
    /// Prefix of every metric name, e.g. `actcluster_`.
    public let prefix: String

    public init(prefix: String = "actcluster_") { self.prefix = prefix }

    /// One sample: `name` is without the prefix; `labels` are label name → value.
    public struct Sample: Sendable {
        public var name: String
        public var value: Double
        public var kind: Kind
        public var help: String
        public var labels: [String: String]

        public init(_ name: String, _ value: Double, kind: Kind = .gauge, help: String, labels: [String: String] = [:]) {
            self.name = name
            self.value = value
            self.kind = kind
            self.help = help
            self.labels = labels
        }
    }

    /// Sets a sample. `name` is without the prefix; `labels` are label name → value.
    public func set(_ name: String, _ value: Double, kind: Kind = .gauge, help: String, labels: [String: String] = [:]) {
        set([Sample(name, value, kind: kind, help: help, labels: labels)])
    }

    /// Sets samples together: a scrape sees all of them or none (e.g. one metrics window).
    public func set(_ samples: [Sample]) {
        families.withLock { families in
            for sample in samples {
                let labels = sample.labels
                let labelText = labels.isEmpty ? "" : "{" + labels.keys.sorted().map { "\($0)=\"\(Self.escape(labels[$0]!))\"" }.joined(separator: ",") + "}"
                families[sample.name, default: Family(help: sample.help, kind: sample.kind, samples: [:])].samples[labelText] = sample.value
            }
        }
    }

    /// Runs `refresh` before every ``exposition()``, on the scraping thread: for figures that
    /// are cheap to read but change outside any loop that could set them (e.g. a queue's level).
    public func refreshBeforeEachScrape(_ refresh: @escaping @Sendable (MetricsRegistry) -> Void) {
        refreshers.withLock { $0.append(refresh) }
    }

    /// Every family, sorted by name, with HELP and TYPE lines.
    public func exposition() -> String {
        // Outside the families' lock: a refresher calls `set`.
        for refresh in refreshers.withLock({ $0 }) { refresh(self) }
        return families.withLock { families in
            var text = ""
            for name in families.keys.sorted() {
                let family = families[name]!
                text += "# HELP \(prefix)\(name) \(family.help)\n# TYPE \(prefix)\(name) \(family.kind.rawValue)\n"
                for labels in family.samples.keys.sorted() {
                    text += "\(prefix)\(name)\(labels) \(Self.format(family.samples[labels]!))\n"
                }
            }
            return text
        }
    }

    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value.isInfinite { return value > 0 ? "+Inf" : "-Inf" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        return "\(value)"
    }

    static func escape(_ value: String) -> String {
        var escaped = ""
        for character in value {
            switch character {
            case "\\": escaped += "\\\\"
            case "\"": escaped += "\\\""
            case "\n": escaped += "\\n"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
