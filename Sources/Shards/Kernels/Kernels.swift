import CShardKernels

/// Which version of a codec kernel runs. `.automatic` picks the fastest one the CPU supports;
/// the others exist so that tests can check every fast path against `.reference`.
public enum KernelImplementation: String, CaseIterable, Sendable, CustomStringConvertible {
    case automatic, reference, portable, sse42, avx2, avx512, avx512GFNI

    /// The kernels that have several implementations.
    public enum Kernel: Int32, CaseIterable, Sendable {
        case crc32c = 0, bitshuffle = 1, conversion = 2
    }

    var c: acs_impl {
        switch self {
        case .automatic: ACS_IMPL_AUTO
        case .reference: ACS_IMPL_REFERENCE
        case .portable: ACS_IMPL_PORTABLE
        case .sse42: ACS_IMPL_SSE42
        case .avx2: ACS_IMPL_AVX2
        case .avx512: ACS_IMPL_AVX512
        case .avx512GFNI: ACS_IMPL_AVX512_GFNI
        }
    }

    /// Whether this implementation exists for `kernel` and runs on this CPU.
    public func isAvailable(for kernel: Kernel) -> Bool { acs_impl_available(c, kernel.rawValue) != 0 }

    /// What `.automatic` (or an unavailable choice) resolves to on this CPU.
    public func resolved(for kernel: Kernel) -> KernelImplementation {
        switch acs_impl_resolve(c, kernel.rawValue) {
        case ACS_IMPL_REFERENCE: .reference
        case ACS_IMPL_SSE42: .sse42
        case ACS_IMPL_AVX2: .avx2
        case ACS_IMPL_AVX512: .avx512
        case ACS_IMPL_AVX512_GFNI: .avx512GFNI
        default: .portable
        }
    }

    public var description: String { rawValue }
}

/// CRC-32C (Castagnoli): the checksum of every shard block, header and index. AVX-512
/// carry-less multiplication (VPCLMULQDQ) folds long inputs at about 45 GB/s, the SSE4.2
/// `crc32` instruction over three streams reaches about 25 GB/s; other CPUs use a
/// slicing-by-8 table.
public enum CRC32C {
    /// The CRC of `bytes`, continuing from `crc` (the CRC of the bytes before; 0 to start).
    public static func checksum(
        _ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0, implementation: KernelImplementation = .automatic
    ) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        return acs_crc32c(crc, base, bytes.count, implementation.c)
    }

    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0, implementation: KernelImplementation = .automatic) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc, implementation: implementation) }
    }

    /// crc32c(A ‖ B) from crc32c(A), crc32c(B) and B's length.
    public static func combine(_ crcA: UInt32, _ crcB: UInt32, lengthOfB: Int) -> UInt32 {
        acs_crc32c_combine(crcA, crcB, lengthOfB)
    }

    /// The 8-digit lowercase hex spelling used in manifests and messages.
    public static func hex(_ crc: UInt32) -> String {
        let digits = String(crc, radix: 16)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}

/// The bit-plane transpose of Blosc's BITSHUFFLE filter: for `count` elements of
/// `elementSize` bytes, the first `count & ~7` elements become `8 × elementSize` planes of
/// `count / 8` bytes (plane `8j + k` holds bit `k` of byte `j` of every element, element `e`
/// in bit `e % 8` of byte `e / 8`), followed by the `count % 8` leftover elements unchanged.
public enum Bitshuffle {
    public static let supportedElementSizes: Set<Int> = [1, 2, 4, 8]

    public static func shuffle(
        _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, elementSize: Int,
        implementation: KernelImplementation = .automatic
    ) {
        check(input.count, output.count, elementSize)
        guard let source = input.baseAddress, let destination = output.baseAddress else { return }
        let status = acs_bitshuffle(source, destination, input.count / elementSize, elementSize, implementation.c)
        precondition(status == 0, "bitshuffle rejected element size \(elementSize)")
    }

    public static func unshuffle(
        _ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, elementSize: Int,
        implementation: KernelImplementation = .automatic
    ) {
        check(input.count, output.count, elementSize)
        guard let source = input.baseAddress, let destination = output.baseAddress else { return }
        let status = acs_bitunshuffle(source, destination, input.count / elementSize, elementSize, implementation.c)
        precondition(status == 0, "bitunshuffle rejected element size \(elementSize)")
    }

    /// Unshuffles `count` elements whose bit planes need not be contiguous: plane `p` is read
    /// from `planes[p]` (`count / 8` bytes; `8 × elementSize` planes) and the `count % 8`
    /// leftover elements from `tail`. A decoder points them straight into stored streams.
    public static func unshuffle(
        planes: UnsafeBufferPointer<UnsafePointer<UInt8>?>, tail: UnsafeRawPointer?, count: Int,
        into output: UnsafeMutableRawBufferPointer, elementSize: Int, implementation: KernelImplementation = .automatic
    ) {
        precondition(supportedElementSizes.contains(elementSize), "bitshuffle element size must be 1, 2, 4 or 8, not \(elementSize)")
        precondition(planes.count == 8 * elementSize && output.count == count * elementSize, "unshuffle: \(planes.count) planes or \(output.count) output bytes do not fit \(count) elements of \(elementSize) bytes")
        precondition(count % 8 == 0 || tail != nil, "unshuffle: leftover elements need a tail")
        guard let destination = output.baseAddress, let base = planes.baseAddress, count > 0 else { return }
        let status = acs_bitunshuffle_planes(base, tail, destination, count, elementSize, implementation.c)
        precondition(status == 0, "bitunshuffle rejected element size \(elementSize)")
    }

    /// For each of the consecutive planes of `planeBytes` bytes in `planes`, how many sampled
    /// bytes are 0x00 or 0xFF (runs of 8 equal bits): about 2/256 of them in noise. Returns
    /// the number of bytes sampled per plane (at most `sample`, or the whole plane).
    public static func planeRunBytes(
        _ planes: UnsafeRawBufferPointer, planeBytes: Int, sample: Int, into counts: UnsafeMutableBufferPointer<UInt32>
    ) -> Int {
        precondition(planeBytes > 0 && planes.count % planeBytes == 0 && counts.count >= planes.count / planeBytes, "planeRunBytes: buffer sizes do not match")
        guard let base = planes.baseAddress, let output = counts.baseAddress else { return 0 }
        return acs_plane_run_bytes(base.assumingMemoryBound(to: UInt8.self), planeBytes, planes.count / planeBytes, sample, output)
    }

    private static func check(_ input: Int, _ output: Int, _ elementSize: Int) {
        precondition(supportedElementSizes.contains(elementSize), "bitshuffle element size must be 1, 2, 4 or 8, not \(elementSize)")
        precondition(input % elementSize == 0, "bitshuffle input of \(input) bytes is not a whole number of \(elementSize)-byte elements")
        precondition(output == input, "bitshuffle output must be as long as its input (\(input) bytes), not \(output)")
    }
}

/// Conversions between float32 and the 16-bit storage types. float32 to bfloat16 rounds to
/// nearest even exactly as PyTorch's `c10::BFloat16` does, so every NaN becomes 0x7FC0;
/// float32 to binary16 rounds to nearest even, overflows to infinity and keeps a NaN's sign
/// and top payload bits (as `vcvtps2ph` and torch's vectorised kernels do). Both ways back
/// are exact.
public enum FloatConversion {
    public static func bfloat16(
        from input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<UInt16>,
        implementation: KernelImplementation = .automatic
    ) {
        precondition(output.count >= input.count, "bfloat16 output holds \(output.count) values, need \(input.count)")
        guard let source = input.baseAddress, let destination = output.baseAddress else { return }
        acs_f32_to_bf16(source, destination, input.count, implementation.c)
    }

    public static func float(
        fromBFloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>,
        implementation: KernelImplementation = .automatic
    ) {
        precondition(output.count >= input.count, "float output holds \(output.count) values, need \(input.count)")
        guard let source = input.baseAddress, let destination = output.baseAddress else { return }
        acs_bf16_to_f32(source, destination, input.count, implementation.c)
    }

    public static func float16(
        from input: UnsafeBufferPointer<Float>, into output: UnsafeMutableBufferPointer<UInt16>,
        implementation: KernelImplementation = .automatic
    ) {
        precondition(output.count >= input.count, "float16 output holds \(output.count) values, need \(input.count)")
        guard let source = input.baseAddress, let destination = output.baseAddress else { return }
        acs_f32_to_f16(source, destination, input.count, implementation.c)
    }

    public static func float(
        fromFloat16 input: UnsafeBufferPointer<UInt16>, into output: UnsafeMutableBufferPointer<Float>,
        implementation: KernelImplementation = .automatic
    ) {
        precondition(output.count >= input.count, "float output holds \(output.count) values, need \(input.count)")
        guard let source = input.baseAddress, let destination = output.baseAddress else { return }
        acs_f16_to_f32(source, destination, input.count, implementation.c)
    }

    /// Array conveniences.
    public static func bfloat16(_ values: [Float], implementation: KernelImplementation = .automatic) -> [UInt16] {
        convert(values) { bfloat16(from: $0, into: $1, implementation: implementation) }
    }

    public static func float16(_ values: [Float], implementation: KernelImplementation = .automatic) -> [UInt16] {
        convert(values) { float16(from: $0, into: $1, implementation: implementation) }
    }

    public static func floats(fromBFloat16 values: [UInt16], implementation: KernelImplementation = .automatic) -> [Float] {
        convert(values) { float(fromBFloat16: $0, into: $1, implementation: implementation) }
    }

    public static func floats(fromFloat16 values: [UInt16], implementation: KernelImplementation = .automatic) -> [Float] {
        convert(values) { float(fromFloat16: $0, into: $1, implementation: implementation) }
    }

    private static func convert<In, Out: FixedWidthInteger>(
        _ values: [In], _ body: (UnsafeBufferPointer<In>, UnsafeMutableBufferPointer<Out>) -> Void
    ) -> [Out] {
        [Out](unsafeUninitializedCapacity: values.count) { buffer, count in
            values.withUnsafeBufferPointer { body($0, buffer) }
            count = values.count
        }
    }

    private static func convert<In>(
        _ values: [In], _ body: (UnsafeBufferPointer<In>, UnsafeMutableBufferPointer<Float>) -> Void
    ) -> [Float] {
        [Float](unsafeUninitializedCapacity: values.count) { buffer, count in
            values.withUnsafeBufferPointer { body($0, buffer) }
            count = values.count
        }
    }
}

/// Fused transpose and conversion between row-major float32 `[rows, columns]` and
/// column-major `[columns, rows]` in a storage dtype (the activation layout of a block).
public enum ColumnLayout {
    static func code(_ dtype: ShardDType) -> acs_dtype {
        switch dtype {
        case .fp32: ACS_DTYPE_F32
        case .bf16: ACS_DTYPE_BF16
        case .fp16: ACS_DTYPE_F16
        }
    }

    /// `output[c × rows + r] = convert(input[r × columns + c])`.
    public static func pack(
        _ input: UnsafeBufferPointer<Float>, into output: UnsafeMutableRawBufferPointer, rows: Int, columns: Int, dtype: ShardDType,
        implementation: KernelImplementation = .automatic
    ) {
        precondition(input.count >= rows * columns && output.count >= rows * columns * dtype.elementSize, "pack: buffers smaller than \(rows) × \(columns)")
        guard let source = input.baseAddress, let destination = output.baseAddress else { return }
        _ = acs_rows_to_columns(source, destination, rows, columns, code(dtype), implementation.c)
    }

    /// `output[r × columns + c] = float(input[c × rows + r])`.
    public static func unpack(
        _ input: UnsafeRawBufferPointer, into output: UnsafeMutableBufferPointer<Float>, rows: Int, columns: Int, dtype: ShardDType,
        implementation: KernelImplementation = .automatic
    ) {
        precondition(output.count >= rows * columns && input.count >= rows * columns * dtype.elementSize, "unpack: buffers smaller than \(rows) × \(columns)")
        guard let source = input.baseAddress, let destination = output.baseAddress else { return }
        _ = acs_columns_to_rows(source, destination, rows, columns, code(dtype), implementation.c)
    }
}
