import Dispatch
import Foundation

/// A heap allocation at a stable address, for weights and workspaces that C kernels and BLAS
/// read and write. Contents are zero after `init` and after growing.
public final class Storage<Element: BitwiseCopyable> {
    public private(set) var pointer: UnsafeMutablePointer<Element>
    public private(set) var count: Int
    private var capacity: Int

    public init(count: Int, repeating value: Element) {
        self.count = count
        capacity = max(1, count)
        pointer = .allocate(capacity: capacity)
        pointer.initialize(repeating: value, count: capacity)
    }

    public convenience init(_ values: [Element]) {
        precondition(!values.isEmpty, "Storage from an empty array")
        self.init(count: values.count, repeating: values[0])
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { pointer.deallocate() }

    /// Makes room for `count` elements; old contents are kept only when `keep` is set.
    public func resize(_ newCount: Int, keep: Bool = false, fill value: Element) {
        if newCount > capacity {
            let grown = UnsafeMutablePointer<Element>.allocate(capacity: newCount)
            grown.initialize(repeating: value, count: newCount)
            if keep { grown.update(from: pointer, count: count) }
            pointer.deallocate()
            pointer = grown
            capacity = newCount
        }
        count = newCount
    }

    public var buffer: UnsafeMutableBufferPointer<Element> { UnsafeMutableBufferPointer(start: pointer, count: count) }
    public var readOnly: UnsafeBufferPointer<Element> { UnsafeBufferPointer(start: pointer, count: count) }
    public var array: [Element] { Array(readOnly) }

    public func copy(from values: [Element]) {
        precondition(values.count == count, "copy of \(values.count) elements into storage of \(count)")
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: count) }
    }

    public subscript(index: Int) -> Element {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }
}

/// Splits `0..<count` into `threads` contiguous pieces run concurrently; `body(range, worker)`.
func parallelFor(_ count: Int, threads: Int, _ body: (Range<Int>, Int) -> Void) {
    let workers = max(1, min(threads, count))
    if workers == 1 {
        body(0..<count, 0)
        return
    }
    withoutActuallyEscaping(body) { body in
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            let start = count * worker / workers, end = count * (worker + 1) / workers
            body(start..<end, worker)
        }
    }
}

/// SplitMix64: a small generator whose whole state is one UInt64, so checkpoints hold it and
/// a resumed run draws the same numbers.
public struct SplitMix64: RandomNumberGenerator, Sendable, Equatable {
    public var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

    /// Standard normal (Box–Muller).
    public mutating func nextNormal() -> Double {
        let u = max(nextUnit(), 1e-300), v = nextUnit()
        return (-2 * log(u)).squareRoot() * cos(2 * Double.pi * v)
    }
}
