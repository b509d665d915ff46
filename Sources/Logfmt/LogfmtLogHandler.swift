import Logging

/// A swift-log handler that writes one logfmt line per event:
/// `ts=2026-11-21T19:26:08.123Z level=info role=worker event=unit_done unit.id=17 tok_s=9123`.
///
/// The message is the event name; metadata follows, sorted by key. Only the command line
/// bootstraps it; libraries take a `Logger` and never bootstrap.
public struct LogfmtLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    public var metadataProvider: Logger.MetadataProvider?

    private let role: String
    private let output: any LogLineWriter
    private let now: @Sendable () -> Timestamp

    public init(
        role: String, output: any LogLineWriter, level: Logger.Level = .info,
        metadataProvider: Logger.MetadataProvider? = nil,
        now: @escaping @Sendable () -> Timestamp = Timestamp.now
    ) {
        self.role = role
        self.output = output
        self.logLevel = level
        self.metadataProvider = metadataProvider
        self.now = now
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let explicit = event.metadata { merged.merge(explicit) { _, new in new } }
        if let error = event.error { merged["error"] = .string(String(describing: error)) }

        var text = "ts=\(now().rfc3339) level=\(event.level.rawValue) role=\(Logfmt.value(role)) event=\(Logfmt.value(event.message.description))"
        for key in merged.keys.sorted() {
            text += " \(Logfmt.key(key))=\(Logfmt.value(Logfmt.render(merged[key]!)))"
        }
        output.write(line: text)
    }
}

/// logfmt quoting rules, shared by the handler and anything else that prints key=value.
public enum Logfmt {
    /// A value as it appears after `=`: bare when safe, else quoted with `\"`, `\\`, `\n`,
    /// `\r`, `\t` and `\u{…}` escapes. Other Unicode is kept as it is.
    public static func value(_ text: String) -> String {
        guard text.isEmpty || text.unicodeScalars.contains(where: needsQuoting) else { return text }
        var quoted = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\r": quoted += "\\r"
            case "\t": quoted += "\\t"
            default:
                if isInvisibleBreaker(scalar) {
                    quoted += "\\u{\(String(scalar.value, radix: 16))}"
                } else {
                    quoted.unicodeScalars.append(scalar)
                }
            }
        }
        return quoted + "\""
    }

    /// A key: anything outside letters, digits and `._-/` becomes `_`, so keys never need quotes.
    public static func key(_ text: String) -> String {
        guard !text.isEmpty else { return "_" }
        return String(String.UnicodeScalarView(text.unicodeScalars.map { scalar in
            scalar.isASCII && (scalar.properties.isAlphabetic || ("0"..."9").contains(scalar) || "._-/".unicodeScalars.contains(scalar))
                ? scalar : "_"
        }))
    }

    /// Flattens structured metadata into one string.
    public static func render(_ value: Logger.Metadata.Value) -> String {
        switch value {
        case .string(let text): text
        case .stringConvertible(let convertible): convertible.description
        case .array(let items): "[" + items.map(render).joined(separator: ",") + "]"
        case .dictionary(let entries):
            "{" + entries.keys.sorted().map { "\($0):\(render(entries[$0]!))" }.joined(separator: ",") + "}"
        }
    }

    private static func needsQuoting(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "\"" || scalar == "=" || scalar == "\\" || scalar.properties.isWhitespace || isInvisibleBreaker(scalar)
    }

    /// Control characters and line/paragraph separators: printed raw they would break a line
    /// or hide in a terminal.
    private static func isInvisibleBreaker(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value) || scalar.value == 0x2028 || scalar.value == 0x2029
    }
}
