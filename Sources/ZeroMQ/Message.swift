import CZeroMQ

/// One frame, owned as a libzmq message so that large payloads move without copies.
///
/// The `zmq_msg_t` lives at a stable heap address for the life of the object: libzmq
/// forbids copying it. A message sent with ``ZeroMQSocket/send(_:more:)`` is emptied.
public final class ZeroMQMessage {
    let pointer: UnsafeMutablePointer<zmq_msg_t>

    /// An empty message, ready to receive into.
    public init() {
        pointer = .allocate(capacity: 1)
        zmq_msg_init(pointer)
    }

    /// A message holding a copy of `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(uninitializedCount: bytes.count)
        if let source = bytes.baseAddress, bytes.count > 0 {
            zmq_msg_data(pointer).copyMemory(from: source, byteCount: bytes.count)
        }
    }

    /// A message holding a copy of `bytes`.
    public convenience init(_ bytes: [UInt8]) {
        self.init(uninitializedCount: bytes.count)
        bytes.withUnsafeBytes { source in
            if let base = source.baseAddress, source.count > 0 {
                zmq_msg_data(pointer).copyMemory(from: base, byteCount: source.count)
            }
        }
    }

    /// A message of `count` bytes for the caller to fill through ``withUnsafeMutableBytes(_:)``.
    public init(uninitializedCount count: Int) {
        pointer = .allocate(capacity: 1)
        if zmq_msg_init_size(pointer, count) != 0 {
            // Only fails on ENOMEM; there is nothing sensible left to do.
            fatalError("zmq_msg_init_size(\(count)) failed: out of memory")
        }
    }

    /// Wraps caller-owned memory without copying. libzmq calls `release` (on its I/O
    /// thread) once the bytes have been sent; until then the memory must stay valid.
    public init(noCopy buffer: UnsafeMutableRawBufferPointer, release: @escaping @Sendable () -> Void) {
        pointer = .allocate(capacity: 1)
        let box = Unmanaged.passRetained(ReleaseBox(release)).toOpaque()
        let status = zmq_msg_init_data(
            pointer, buffer.baseAddress, buffer.count,
            { _, hint in
                guard let hint else { return }
                Unmanaged<ReleaseBox>.fromOpaque(hint).takeRetainedValue().release()
            }, box)
        if status != 0 { fatalError("zmq_msg_init_data failed: out of memory") }
    }

    deinit {
        zmq_msg_close(pointer)
        pointer.deallocate()
    }

    /// Payload size in bytes.
    public var count: Int { zmq_msg_size(pointer) }

    /// Whether more frames of the same multipart message follow this one.
    public var hasMore: Bool { zmq_msg_more(pointer) != 0 }

    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeRawBufferPointer(start: zmq_msg_data(pointer), count: count))
    }

    public func withUnsafeMutableBytes<R>(_ body: (UnsafeMutableRawBufferPointer) throws -> R) rethrows -> R {
        try body(UnsafeMutableRawBufferPointer(start: zmq_msg_data(pointer), count: count))
    }

    /// A copy of the payload.
    public var bytes: [UInt8] { withUnsafeBytes { [UInt8]($0) } }
}

private final class ReleaseBox {
    let release: @Sendable () -> Void
    init(_ release: @escaping @Sendable () -> Void) { self.release = release }
}
