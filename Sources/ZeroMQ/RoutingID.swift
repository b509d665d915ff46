/// A ROUTER peer's routing id. libzmq gives peers that set none a 5-byte id, so an id of up to
/// 8 bytes is kept in one word: receiving it allocates nothing, and a lookup by peer hashes one
/// integer instead of the bytes one by one.
public struct RoutingID: Hashable, Sendable, CustomStringConvertible {
    private enum Storage: Hashable, Sendable {
        case short(word: UInt64, count: UInt8)
        case long([UInt8])
    }

    private let storage: Storage

    public init(_ bytes: UnsafeRawBufferPointer) {
        if bytes.count <= 8 {
            var word: UInt64 = 0
            withUnsafeMutableBytes(of: &word) { $0.copyMemory(from: bytes) }
            storage = .short(word: word, count: UInt8(bytes.count))
        } else {
            storage = .long(Array(bytes))
        }
    }

    public init(_ bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { RoutingID($0) }
    }

    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }

    /// One word for a short id, not the enum's case, word and count one by one: the
    /// coordinator looks workers up by id several times per message. The count is left out:
    /// short ids of different lengths rarely share a word, and equality still compares it.
    public func hash(into hasher: inout Hasher) {
        switch storage {
        case .short(let word, _): hasher.combine(word)
        case .long(let bytes): hasher.combine(bytes)
        }
    }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .short(var word, let count): try Swift.withUnsafeBytes(of: &word) { try body(UnsafeRawBufferPointer(rebasing: $0.prefix(Int(count)))) }
        case .long(let bytes): try bytes.withUnsafeBytes(body)
        }
    }

    /// The id in hex, for logs.
    public var description: String {
        withUnsafeBytes { bytes in bytes.map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined() }
    }
}
