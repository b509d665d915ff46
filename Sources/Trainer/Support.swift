import Dispatch
import Foundation
import Platform

/// A heap allocation at a stable address, for weights and workspaces that C kernels and BLAS
/// read and write (64-byte aligned; large ones on huge pages, see `LargeAllocation`).
/// Contents are zero after `init` and after growing.
public final class Storage<Element: BitwiseCopyable> {
    public private(set) var pointer: UnsafeMutablePointer<Element>
    public private(set) var count: Int
    private var capacity: Int

    public init(count: Int, repeating value: Element) {
        self.count = count
        capacity = max(1, count)
        pointer = Self.allocate(capacity)
        pointer.initialize(repeating: value, count: capacity)
    }

    public convenience init(_ values: [Element]) {
        precondition(!values.isEmpty, "Storage from an empty array")
        self.init(count: values.count, repeating: values[0])
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { pointer.deallocate() }

    private static func allocate(_ capacity: Int) -> UnsafeMutablePointer<Element> {
        LargeAllocation.allocate(byteCount: capacity * MemoryLayout<Element>.stride).bindMemory(to: Element.self, capacity: capacity)
    }

    /// Makes room for `count` elements; old contents are kept only when `keep` is set.
    public func resize(_ newCount: Int, keep: Bool = false, fill value: Element) {
        if newCount > capacity {
            let grown = Self.allocate(newCount)
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

/// Runs `body(range, worker)` over `0..<count` on up to `threads` workers. The range is cut
/// into `pieces` contiguous pieces (default: four per worker) that the workers take in turn,
/// so a worker whose core is busy with another process holds up the others for one piece, not
/// half the work. Pieces are whole multiples of `granule`. Every body here works row by row,
/// so results do not depend on which worker runs which piece.
func parallelFor(_ count: Int, threads: Int, granule: Int = 1, pieces: Int? = nil, _ body: (Range<Int>, Int) -> Void) {
    let units = (count + granule - 1) / granule
    let workers = max(1, min(threads, units))
    if workers == 1 {
        body(0..<count, 0)
        return
    }
    let total = max(workers, min(units, pieces ?? 4 * workers))
    let next = PieceCounter()
    withoutActuallyEscaping(body) { body in
        nonisolated(unsafe) let body = body
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            while true {
                let piece = next.take()
                guard piece < total else { return }
                let start = min(count, units * piece / total * granule), end = min(count, units * (piece + 1) / total * granule)
                if start < end { body(start..<end, worker) }
            }
        }
    }
}

/// The next piece of a parallelFor, handed out under a lock.
private final class PieceCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0

    func take() -> Int {
        lock.lock()
        defer { lock.unlock() }
        next += 1
        return next - 1
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
