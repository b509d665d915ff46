import CLZ4

/// The LZ4 block format: raw compressed bytes, no header and no checksum. The caller stores
/// the uncompressed size and guards integrity (the shard format adds CRC-32C per block).
public enum LZ4Block {
    /// The linked liblz4's version, e.g. "1.9.4".
    public static var libraryVersion: String { String(cString: LZ4_versionString()) }

    /// Largest input one block may hold.
    public static var maxInputSize: Int { Int(actcluster_lz4_max_input_size()) }

    /// Worst-case compressed size of `inputSize` bytes.
    public static func compressBound(_ inputSize: Int) -> Int {
        Int(actcluster_lz4_compress_bound(Int32(clamping: inputSize)))
    }

    /// Compresses `source` into `destination` and returns the compressed size.
    /// `acceleration` above 1 trades ratio for speed.
    public static func compress(
        _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer, acceleration: Int32 = 1
    ) throws -> Int {
        guard source.count <= maxInputSize else { throw LZ4Error.inputTooLarge(size: source.count, limit: maxInputSize) }
        let written = withNonNull(source, destination) { src, dst in
            LZ4_compress_fast(
                src.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
                Int32(source.count), Int32(clamping: destination.count), acceleration)
        }
        guard written > 0 else { throw LZ4Error.destinationTooSmall(available: destination.count) }
        return Int(written)
    }

    /// Decompresses `source` into `destination`, which must be exactly the uncompressed size.
    /// Truncated or malformed input throws; input that decodes to any other size throws.
    /// Without a checksum, a corrupted literal byte can still decode to the right size:
    /// callers that must detect that keep their own checksum.
    public static func decompress(
        _ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer
    ) throws {
        guard source.count <= compressBound(maxInputSize), destination.count <= maxInputSize else {
            throw LZ4Error.inputTooLarge(size: max(source.count, destination.count), limit: maxInputSize)
        }
        let produced = withNonNull(source, destination) { src, dst in
            LZ4_decompress_safe(
                src.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
                Int32(source.count), Int32(destination.count))
        }
        guard produced >= 0 else {
            throw LZ4Error.corruptBlock(expectedSize: destination.count, detail: "the decoder stopped at an invalid sequence")
        }
        guard Int(produced) == destination.count else {
            throw LZ4Error.corruptBlock(expectedSize: destination.count, detail: "got \(produced)")
        }
    }

    /// Compresses an array into a new array.
    public static func compress(_ source: [UInt8], acceleration: Int32 = 1) throws -> [UInt8] {
        var output = [UInt8](repeating: 0, count: compressBound(source.count))
        let count = try source.withUnsafeBytes { src in
            try output.withUnsafeMutableBytes { dst in
                try compress(src, into: dst, acceleration: acceleration)
            }
        }
        output.removeLast(output.count - count)
        return output
    }

    /// Decompresses an array whose uncompressed size is known.
    public static func decompress(_ source: [UInt8], uncompressedSize: Int) throws -> [UInt8] {
        guard uncompressedSize >= 0, uncompressedSize <= maxInputSize else {
            throw LZ4Error.inputTooLarge(size: uncompressedSize, limit: maxInputSize)
        }
        var output = [UInt8](repeating: 0, count: uncompressedSize)
        try source.withUnsafeBytes { src in
            try output.withUnsafeMutableBytes { dst in try decompress(src, into: dst) }
        }
        return output
    }

    /// liblz4 wants real pointers even for empty buffers.
    private static func withNonNull<R>(
        _ source: UnsafeRawBufferPointer, _ destination: UnsafeMutableRawBufferPointer,
        _ body: (UnsafeRawPointer, UnsafeMutableRawPointer) -> R
    ) -> R {
        var scratch: UInt64 = 0
        return withUnsafeMutableBytes(of: &scratch) { empty in
            body(source.baseAddress ?? UnsafeRawPointer(empty.baseAddress!), destination.baseAddress ?? empty.baseAddress!)
        }
    }
}
