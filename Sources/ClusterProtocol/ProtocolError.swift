/// Why a message was refused, as a sentence: which message, where in it, what the protocol
/// expects and what arrived. Receivers log it (`event=message_rejected reason=<kind>`) and
/// drop the message; hostile or garbled input ends here, never in a crash.
public struct ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A stable category for logs and counters.
    public enum Kind: String, Sendable, CaseIterable {
        /// Frame 0 is not this channel's protocol and version.
        case wrongProtocol = "wrong_protocol"
        /// Frame 1 is not a command byte this protocol knows.
        case unknownCommand = "unknown_command"
        /// A known command that this receiver never gets (e.g. ASSIGN sent to a coordinator).
        case wrongDirection = "wrong_direction"
        /// Too few or too many frames.
        case frameCount = "frame_count"
        /// A frame or value longer than the protocol allows.
        case tooLarge = "too_large"
        /// A control body whose fields do not parse (lengths, types, duplicates).
        case malformed = "malformed"
        /// A required field is absent.
        case missingField = "missing_field"
        /// A field parses but its value is out of range or inconsistent.
        case invalidValue = "invalid_value"
        /// A binary frame (line table, text, batch payload) is inconsistent or corrupt.
        case payload = "payload"
    }

    public let kind: Kind
    /// The command, e.g. "DONE", or "message" before the command is known.
    public let message: String
    /// Where: "frame 0", "field lease", "shard[2].rows", "frame 4 (text)".
    public let location: String
    public let expected: String
    public let found: String

    public init(_ kind: Kind, message: String, location: String, expected: String, found: String) {
        self.kind = kind
        self.message = message
        self.location = location
        self.expected = expected
        self.found = found
    }

    public var description: String {
        "refused \(message): \(location): expected \(expected), found \(found)"
    }
}

/// Short printable renderings of untrusted bytes for error messages.
enum Printable {
    /// Up to 16 bytes as hex, with the total length.
    static func bytes(_ bytes: some Collection<UInt8>) -> String {
        let shown = bytes.prefix(16).map { byte in
            let digits = String(byte, radix: 16)
            return digits.count == 1 ? "0" + digits : digits
        }.joined(separator: " ")
        return bytes.count > 16 ? "\(bytes.count) bytes: \(shown) …" : "\(bytes.count) bytes: \(shown)"
    }

    /// A string cut to 64 characters, quoted, with control characters escaped.
    static func text(_ text: String) -> String {
        let cut = text.count > 64 ? String(text.prefix(64)) + "…" : text
        return "\"" + cut.unicodeScalars.map { $0.properties.generalCategory == .control ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined() + "\""
    }
}
