import Platform

/// A 64-byte aligned float array at a stable address, for weights and workspaces.
/// Reference semantics: passing it around never copies the floats. Large ones (the forward
/// pass's workspaces) get 2 MB pages: the GEMMs store each tile's rows a page or more apart.
public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public init(count: Int) {
        self.count = count
        let raw = LargeAllocation.allocate(byteCount: max(1, count) * 4)
        pointer = raw.initializeMemory(as: Float.self, repeating: 0, count: max(1, count))
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    public var readOnly: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: pointer, count: count) }
    public var array: [Float] { Array(readOnly) }
}
