import Glibc

/// Writes a control body: a sequence of fields, each `tag (1) · type (1) · length (4, LE) ·
/// value`. Values are written by tag, so every tag keeps the one type the registry gives it.
struct FieldWriter {
    typealias Tag = ClusterWire.Tag
    private(set) var bytes: [UInt8] = []

    /// Room for a typical control body, so writing it does not regrow the array field by field.
    init(capacity: Int = 256) { bytes.reserveCapacity(capacity) }

    /// Writes on at the end of `bytes` (which it takes over; ``take()`` gives them back).
    init(continuing bytes: consuming [UInt8]) { self.bytes = bytes }

    mutating func reserveCapacity(_ count: Int) { bytes.reserveCapacity(count) }

    /// The bytes written, leaving the writer empty (no copy).
    mutating func take() -> [UInt8] {
        var taken: [UInt8] = []
        swap(&taken, &bytes)
        return taken
    }

    /// One byte outside any field (a journal record's kind).
    mutating func byte(_ value: UInt8) { bytes.append(value) }

    /// Whole fields encoded before (another writer's `bytes`).
    mutating func raw(_ fields: [UInt8]) { bytes += fields }

    /// One append for the six header bytes: they are written per field at dispatch rates.
    private mutating func header(_ tag: Tag, length: Int) {
        withUnsafeBytes(of: Self.headerWord(tag, type: tag.type, length: length).littleEndian) {
            bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0.prefix(ClusterWire.fieldHeaderSize)))
        }
    }

    /// A field header (tag, type, length) in the low six bytes, as it is laid out little-endian.
    private static func headerWord(_ tag: Tag, type: ClusterWire.FieldType, length: Int) -> UInt64 {
        precondition(length <= Int(UInt32.max), "field \(tag) of \(length) bytes is too long for the protocol")
        return UInt64(tag.rawValue) | UInt64(type.rawValue) << 8 | UInt64(length) << 16
    }

    private mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func uint(_ tag: Tag, _ value: UInt64) {
        let type = tag.type
        precondition(type == .uint, "field \(tag) is not a uint")
        // Header and value in one append: the header in the first word's top six bytes.
        let field: (UInt64, UInt64) = ((Self.headerWord(tag, type: type, length: 8) << 16).littleEndian, value.littleEndian)
        withUnsafeBytes(of: field) { bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: $0[2...])) }
    }

    mutating func int(_ tag: Tag, _ value: Int) {
        precondition(value >= 0, "field \(tag) must not be negative, not \(value)")
        uint(tag, UInt64(value))
    }

    mutating func int(_ tag: Tag, _ value: Int64) {
        precondition(value >= 0, "field \(tag) must not be negative, not \(value)")
        uint(tag, UInt64(value))
    }

    mutating func bool(_ tag: Tag, _ value: Bool) {
        precondition(tag.type == .bool, "field \(tag) is not a bool")
        header(tag, length: 1)
        bytes.append(value ? 1 : 0)
    }

    mutating func double(_ tag: Tag, _ value: Double) {
        precondition(tag.type == .double, "field \(tag) is not a double")
        header(tag, length: 8)
        appendLittleEndian(value.bitPattern)
    }

    mutating func string(_ tag: Tag, _ value: String) {
        precondition(tag.type == .string, "field \(tag) is not a string")
        let utf8 = Array(value.utf8)
        header(tag, length: utf8.count)
        bytes += utf8
    }

    mutating func bytes(_ tag: Tag, _ value: [UInt8]) {
        precondition(tag.type == .bytes, "field \(tag) is not bytes")
        header(tag, length: value.count)
        bytes += value
    }

    mutating func doubles(_ tag: Tag, _ values: [Double]) {
        precondition(tag.type == .doubles, "field \(tag) is not doubles")
        header(tag, length: values.count * 8)
        values.withUnsafeBytes { bytes.append(contentsOf: $0) }
    }

    mutating func fields(_ tag: Tag, _ body: (inout FieldWriter) -> Void) {
        precondition(tag.type == .fields, "field \(tag) is not nested fields")
        // Written in place, and the length filled in after: no second buffer per nesting.
        header(tag, length: 0)
        let start = bytes.count
        body(&self)
        let length = bytes.count - start
        precondition(length <= Int(UInt32.max), "field \(tag) of \(length) bytes is too long for the protocol")
        withUnsafeBytes(of: UInt32(length).littleEndian) { bytes.replaceSubrange((start - 4)..<start, with: $0) }
    }

    /// Nested fields encoded before (the `bytes` of another writer).
    mutating func fields(_ tag: Tag, encoded: [UInt8]) {
        precondition(tag.type == .fields, "field \(tag) is not nested fields")
        header(tag, length: encoded.count)
        bytes += encoded
    }
}

/// A parsed control body: field boundaries, types and fixed sizes are checked once at parse
/// time; values are checked when read, against the rules of the message that reads them.
/// Every failure is a ``ProtocolError`` that names the message and the field.
struct Fields {
    typealias Tag = ClusterWire.Tag

    private struct Entry {
        let tag: Tag
        private let lower: UInt32
        private let upper: UInt32
        var range: Range<Int> { Int(lower)..<Int(upper) }

        init(tag: Tag, range: Range<Int>) {
            self.tag = tag
            lower = UInt32(range.lowerBound)
            upper = UInt32(range.upperBound)
        }
    }

    private let base: [UInt8]
    private let entries: [Entry]
    /// The command being decoded, for errors.
    let message: String
    /// Where this body sits, built only when an error names it (decoding runs at dispatch
    /// rates, and most bodies are nested one level deep).
    private let parentPath: String
    private let pathTag: Tag?
    private let pathIndex: Int?

    /// Where this body sits, e.g. "" at the top or "shard[2]." inside DONE.
    var path: String {
        guard let pathTag else { return parentPath }
        return parentPath + pathTag.name + (pathIndex.map { "[\($0)]" } ?? "") + "."
    }

    /// Parses `base[range]`.
    init(_ base: [UInt8], range: Range<Int>, message: String, path: String = "") throws(ProtocolError) {
        try self.init(base, range: range, message: message, parentPath: path, tag: nil, index: nil)
    }

    private init(_ base: [UInt8], range: Range<Int>, message: String, parentPath: String, tag: Tag?, index: Int?) throws(ProtocolError) {
        self.base = base
        self.message = message
        self.parentPath = parentPath
        self.pathTag = tag
        self.pathIndex = index
        // Built only for an error message.
        func path() -> String { tag.map { parentPath + $0.name + (index.map { "[\($0)]" } ?? "") + "." } ?? parentPath }
        // Offsets are kept in 32 bits; a body that big is refused long before (64 MiB).
        guard range.upperBound <= Int(UInt32.max) else {
            throw ProtocolError(.tooLarge, message: message, location: path().isEmpty ? "body" : path(), expected: "under 4 GiB", found: "\(range.upperBound) bytes")
        }
        var entries: [Entry] = []
        // Room for the fields of any control body but the biggest, reserved once instead of
        // regrowing. Not more: a request of 1 KiB or more makes glibc's malloc consolidate its
        // free lists, which cost the coordinator more than the parse itself.
        entries.reserveCapacity(min(16, range.count / ClusterWire.fieldHeaderSize))
        var offset = range.lowerBound
        while offset < range.upperBound {
            let remaining = range.upperBound - offset
            guard remaining >= ClusterWire.fieldHeaderSize else {
                throw ProtocolError(
                    .malformed, message: message, location: "\(path().isEmpty ? "body" : path()) at byte \(offset - range.lowerBound)",
                    expected: "a field header of \(ClusterWire.fieldHeaderSize) bytes", found: "\(remaining) bytes")
            }
            let tagByte = base[offset], typeByte = base[offset + 1]
            let length = Int(base[offset + 2]) | Int(base[offset + 3]) << 8 | Int(base[offset + 4]) << 16 | Int(base[offset + 5]) << 24
            let valueStart = offset + ClusterWire.fieldHeaderSize
            guard length <= range.upperBound - valueStart else {
                throw ProtocolError(
                    .malformed, message: message, location: "field \(path())\(Tag(rawValue: tagByte)?.name ?? "tag \(tagByte)")",
                    expected: "at most the \(range.upperBound - valueStart) bytes left in the body", found: "a length of \(length)")
            }
            if let fieldTag = Tag(rawValue: tagByte) {
                let tag = fieldTag
                func location() -> String { "field \(path())\(tag.name)" }
                guard typeByte == tag.type.rawValue else {
                    let found = ClusterWire.FieldType(rawValue: typeByte).map { "\($0)" } ?? "type byte \(typeByte)"
                    throw ProtocolError(.malformed, message: message, location: location(), expected: "type \(tag.type)", found: found)
                }
                let sizeProblem: String? =
                    switch tag.type {
                    case .uint, .double: length == 8 ? nil : "8 bytes"
                    case .bool: length == 1 ? (base[valueStart] <= 1 ? nil : "0 or 1") : "1 byte"
                    case .doubles: length % 8 == 0 ? nil : "a multiple of 8 bytes"
                    case .string, .bytes, .fields: nil
                    }
                if let sizeProblem {
                    let found = tag.type == .bool && length == 1 ? "\(base[valueStart])" : "\(length) bytes"
                    throw ProtocolError(.malformed, message: message, location: location(), expected: sizeProblem, found: found)
                }
                entries.append(Entry(tag: tag, range: valueStart..<(valueStart + length)))
            }
            // Unknown tags are skipped: a newer peer of the same version may add fields.
            offset = valueStart + length
        }
        self.entries = entries
    }

    /// Parses a whole frame.
    init(frame: [UInt8], message: String) throws(ProtocolError) {
        try self.init(frame, range: 0..<frame.count, message: message)
    }

    // MARK: Errors

    func location(_ tag: Tag) -> String { "field \(path)\(tag.name)" }

    func invalid(_ tag: Tag, expected: String, found: String) -> ProtocolError {
        ProtocolError(.invalidValue, message: message, location: location(tag), expected: expected, found: found)
    }

    func missing(_ tag: Tag) -> ProtocolError {
        ProtocolError(.missingField, message: message, location: location(tag), expected: "the field", found: "none")
    }

    // MARK: Lookup

    private func single(_ tag: Tag) throws(ProtocolError) -> Range<Int>? {
        var found: Range<Int>?
        for entry in entries where entry.tag == tag {
            guard found == nil else {
                throw ProtocolError(.malformed, message: message, location: location(tag), expected: "the field once", found: "it repeated")
            }
            found = entry.range
        }
        return found
    }

    private func required(_ tag: Tag) throws(ProtocolError) -> Range<Int> {
        guard let range = try single(tag) else { throw missing(tag) }
        return range
    }

    func has(_ tag: Tag) -> Bool { entries.contains { $0.tag == tag } }

    /// The little-endian word at `offset`: one bounds check and one load, not eight of each.
    private func loadUInt64(_ offset: Int) -> UInt64 {
        precondition(offset >= 0 && offset <= base.count - 8, "a field's range was checked at parse time")
        return base.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
    }

    // MARK: Numbers

    func optionalUInt(_ tag: Tag, in bounds: ClosedRange<UInt64> = 0...UInt64.max) throws(ProtocolError) -> UInt64? {
        guard let range = try single(tag) else { return nil }
        let value = loadUInt64(range.lowerBound)
        guard bounds.contains(value) else { throw invalid(tag, expected: "\(bounds.lowerBound) … \(bounds.upperBound)", found: "\(value)") }
        return value
    }

    func uint(_ tag: Tag, in bounds: ClosedRange<UInt64> = 0...UInt64.max) throws(ProtocolError) -> UInt64 {
        guard let value = try optionalUInt(tag, in: bounds) else { throw missing(tag) }
        return value
    }

    func optionalInt(_ tag: Tag, in bounds: ClosedRange<Int> = 0...Int.max) throws(ProtocolError) -> Int? {
        try optionalUInt(tag, in: UInt64(bounds.lowerBound)...UInt64(bounds.upperBound)).map { Int($0) }
    }

    func int(_ tag: Tag, in bounds: ClosedRange<Int> = 0...Int.max) throws(ProtocolError) -> Int {
        guard let value = try optionalInt(tag, in: bounds) else { throw missing(tag) }
        return value
    }

    func int64(_ tag: Tag) throws(ProtocolError) -> Int64 {
        Int64(try int(tag))
    }

    func bool(_ tag: Tag, default fallback: Bool = false) throws(ProtocolError) -> Bool {
        guard let range = try single(tag) else { return fallback }
        return base[range.lowerBound] == 1
    }

    /// A finite double, at least `minimum`.
    func optionalDouble(_ tag: Tag, minimum: Double = 0) throws(ProtocolError) -> Double? {
        guard let range = try single(tag) else { return nil }
        let value = Double(bitPattern: loadUInt64(range.lowerBound))
        guard value.isFinite, value >= minimum else { throw invalid(tag, expected: "a finite number ≥ \(minimum)", found: "\(value)") }
        return value
    }

    func double(_ tag: Tag, minimum: Double = 0) throws(ProtocolError) -> Double {
        guard let value = try optionalDouble(tag, minimum: minimum) else { throw missing(tag) }
        return value
    }

    /// Finite doubles, `count` of them when given.
    func doubles(_ tag: Tag, maxCount: Int) throws(ProtocolError) -> [Double] {
        let range = try required(tag)
        let count = range.count / 8
        guard count <= maxCount else { throw invalid(tag, expected: "at most \(maxCount) values", found: "\(count)") }
        var values = [Double](repeating: 0, count: count)
        for index in 0..<count {
            let value = Double(bitPattern: loadUInt64(range.lowerBound + 8 * index))
            guard value.isFinite else { throw invalid(tag, expected: "finite values", found: "\(value) at index \(index)") }
            values[index] = value
        }
        return values
    }

    // MARK: Text and bytes

    private func text(_ tag: Tag, _ range: Range<Int>, maxBytes: Int, allowEmpty: Bool) throws(ProtocolError) -> String {
        guard range.count <= maxBytes else {
            throw ProtocolError(.tooLarge, message: message, location: location(tag), expected: "at most \(maxBytes) bytes", found: "\(range.count) bytes")
        }
        guard allowEmpty || !range.isEmpty else { throw invalid(tag, expected: "a non-empty string", found: "an empty one") }
        guard let value = String(validating: base[range], as: UTF8.self) else {
            throw invalid(tag, expected: "UTF-8 text", found: "invalid UTF-8 (\(Printable.bytes(base[range])))")
        }
        return value
    }

    func optionalString(_ tag: Tag, maxBytes: Int, allowEmpty: Bool = false) throws(ProtocolError) -> String? {
        guard let range = try single(tag) else { return nil }
        return try text(tag, range, maxBytes: maxBytes, allowEmpty: allowEmpty)
    }

    func string(_ tag: Tag, maxBytes: Int, allowEmpty: Bool = false) throws(ProtocolError) -> String {
        try text(tag, try required(tag), maxBytes: maxBytes, allowEmpty: allowEmpty)
    }

    /// Whether a string field is present and holds exactly `text` (no string is made).
    func equals(_ tag: Tag, _ text: String) throws(ProtocolError) -> Bool {
        guard let range = try single(tag) else { throw missing(tag) }
        return holds(range, text)
    }

    /// Whether `base[range]` is `text`'s UTF-8, compared with memcmp (Sequence's
    /// elementsEqual goes byte by byte through an iterator).
    private func holds(_ range: Range<Int>, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { utf8 in
            guard utf8.count == range.count, !range.isEmpty else { return utf8.count == range.count }
            return base.withUnsafeBufferPointer { memcmp($0.baseAddress! + range.lowerBound, utf8.baseAddress!, range.count) == 0 }
        }
    }

    /// A name: printable, non-empty, no control characters.
    func name(_ tag: Tag, maxBytes: Int = ClusterWire.Limits.maxNameBytes) throws(ProtocolError) -> String {
        let value = try string(tag, maxBytes: maxBytes)
        try checkName(tag, value)
        return value
    }

    /// ``name(_:maxBytes:)``, but a name among `known` (checked names) is that string itself:
    /// no new string, no second check.
    func name(_ tag: Tag, among known: [String]) throws(ProtocolError) -> String {
        let range = try required(tag)
        for candidate in known where holds(range, candidate) { return candidate }
        return try name(tag)
    }

    func optionalName(_ tag: Tag, maxBytes: Int = ClusterWire.Limits.maxNameBytes) throws(ProtocolError) -> String? {
        guard let value = try optionalString(tag, maxBytes: maxBytes) else { return nil }
        try checkName(tag, value)
        return value
    }

    private func checkName(_ tag: Tag, _ value: String) throws(ProtocolError) {
        // Printable ASCII needs no Unicode tables.
        if value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return }
        if value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw invalid(tag, expected: "text without control characters", found: Printable.text(value))
        }
    }

    /// Every occurrence of a repeated string field, in order.
    func names(_ tag: Tag, maxCount: Int, maxBytes: Int = ClusterWire.Limits.maxNameBytes) throws(ProtocolError) -> [String] {
        var values: [String] = []
        for entry in entries where entry.tag == tag {
            guard values.count < maxCount else { throw invalid(tag, expected: "at most \(maxCount) of them", found: "more") }
            let value = try text(tag, entry.range, maxBytes: maxBytes, allowEmpty: false)
            try checkName(tag, value)
            values.append(value)
        }
        return values
    }

    func optionalBytes(_ tag: Tag, count: Int) throws(ProtocolError) -> [UInt8]? {
        guard let range = try single(tag) else { return nil }
        guard range.count == count else { throw invalid(tag, expected: "\(count) bytes", found: "\(range.count) bytes") }
        return Array(base[range])
    }

    func bytes(_ tag: Tag, count: Int) throws(ProtocolError) -> [UInt8] {
        guard let value = try optionalBytes(tag, count: count) else { throw missing(tag) }
        return value
    }

    // MARK: Nested

    func optionalNested(_ tag: Tag) throws(ProtocolError) -> Fields? {
        guard let range = try single(tag) else { return nil }
        return try Fields(base, range: range, message: message, parentPath: path, tag: tag, index: nil)
    }

    func nested(_ tag: Tag) throws(ProtocolError) -> Fields {
        guard let value = try optionalNested(tag) else { throw missing(tag) }
        return value
    }

    /// Every occurrence of a repeated nested field, in order.
    func allNested(_ tag: Tag, maxCount: Int) throws(ProtocolError) -> [Fields] {
        var values: [Fields] = []
        try forEachNested(tag, maxCount: maxCount) { (nested: Fields) throws(ProtocolError) in values.append(nested) }
        return values
    }

    /// Calls `body` with every occurrence of a repeated nested field, in order; unlike
    /// ``allNested(_:maxCount:)`` it collects nothing.
    func forEachNested(_ tag: Tag, maxCount: Int, _ body: (Fields) throws(ProtocolError) -> Void) throws(ProtocolError) {
        var index = 0
        for entry in entries where entry.tag == tag {
            guard index < maxCount else { throw invalid(tag, expected: "at most \(maxCount) of them", found: "more") }
            try body(try Fields(base, range: entry.range, message: message, parentPath: path, tag: tag, index: index))
            index += 1
        }
    }
}
