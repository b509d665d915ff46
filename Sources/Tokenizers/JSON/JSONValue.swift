/// A parsed JSON document.
///
/// Why not JSONSerialization: its dictionaries key on `String`, and Swift compares strings by
/// canonical equivalence, so two vocabulary entries that differ only in Unicode normalization
/// ("é" and "e\u{301}") would collapse into one. Here objects keep every entry in file order and
/// keys are compared byte for byte, as serde does in the Rust library.
enum JSONValue: Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)

    var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    var string: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    var bool: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    var number: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    /// The value as an exact integer, nil for fractions or out-of-range numbers.
    var integer: Int? {
        guard case .number(let value) = self, value.rounded() == value, abs(value) < 9.0e15 else { return nil }
        return Int(value)
    }

    var array: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    var object: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// A short name of the value's kind, for error messages.
    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// A JSON object: entries in file order, looked up by exact UTF-8 bytes.
struct JSONObject: Sendable {
    var entries: [(key: String, value: JSONValue)]

    /// The value of the last entry named `key` (serde keeps the last of duplicate map keys).
    subscript(key: String) -> JSONValue? {
        for entry in entries.reversed() where entry.key.utf8.elementsEqual(key.utf8) {
            return entry.value
        }
        return nil
    }

    /// A present, non-null value (tokenizers writes absent options as `null`).
    func value(_ key: String) -> JSONValue? {
        guard let value = self[key], !value.isNull else { return nil }
        return value
    }
}
