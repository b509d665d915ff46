import CLZ4

/// Settings of an LZ4 frame (the self-describing streaming format, `lz4` command compatible).
public struct LZ4FrameOptions: Sendable {
    /// Independent blocks of at most 64 KiB, 256 KiB, 1 MiB or 4 MiB.
    public enum BlockSize: Sendable { case max64KB, max256KB, max1MB, max4MB }

    public var blockSize: BlockSize = .max256KB
    /// xxHash32 of the whole content, checked when the frame ends.
    public var contentChecksum = true
    /// xxHash32 of every block, checked before the block is decoded.
    public var blockChecksum = true
    /// 0 is the fast default; 3 and above use the slower high-compression mode.
    public var compressionLevel: Int32 = 0

    public init() {}

    var preferences: LZ4F_preferences_t {
        var preferences = LZ4F_preferences_t()
        switch blockSize {
        case .max64KB: preferences.frameInfo.blockSizeID = LZ4F_max64KB
        case .max256KB: preferences.frameInfo.blockSizeID = LZ4F_max256KB
        case .max1MB: preferences.frameInfo.blockSizeID = LZ4F_max1MB
        case .max4MB: preferences.frameInfo.blockSizeID = LZ4F_max4MB
        }
        preferences.frameInfo.blockMode = LZ4F_blockIndependent
        preferences.frameInfo.contentChecksumFlag = contentChecksum ? LZ4F_contentChecksumEnabled : LZ4F_noContentChecksum
        preferences.frameInfo.blockChecksumFlag = blockChecksum ? LZ4F_blockChecksumEnabled : LZ4F_noBlockChecksum
        preferences.compressionLevel = compressionLevel
        return preferences
    }
}

private func check(_ code: Int, _ makeError: (String) -> LZ4Error) throws -> Int {
    if LZ4F_isError(code) != 0 { throw makeError(String(cString: LZ4F_getErrorName(code))) }
    return code
}

/// Appends `capacity` bytes to `output`, lets `body` fill a prefix, and keeps only that prefix.
private func appendingWrite(
    to output: inout [UInt8], capacity: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> Int
) throws {
    let start = output.count
    output.append(contentsOf: repeatElement(0, count: capacity))
    let written: Int
    do {
        written = try output.withUnsafeMutableBytes { all in
            try body(UnsafeMutableRawBufferPointer(rebasing: all[start...]))
        }
    } catch {
        output.removeLast(capacity)
        throw error
    }
    output.removeLast(capacity - written)
}

/// Compresses a stream into one LZ4 frame, chunk by chunk.
public final class LZ4FrameEncoder {
    private var context: OpaquePointer?
    private var preferences: LZ4F_preferences_t
    private var started = false
    private var finished = false

    public init(options: LZ4FrameOptions = LZ4FrameOptions()) throws {
        preferences = options.preferences
        let status = LZ4F_createCompressionContext(&context, actcluster_lz4f_version())
        _ = try check(status, LZ4Error.libraryFailure)
    }

    deinit { LZ4F_freeCompressionContext(context) }

    /// Compresses `chunk` and appends whatever the frame emits so far to `output`.
    public func compress(_ chunk: UnsafeRawBufferPointer, appendingTo output: inout [UInt8]) throws {
        precondition(!finished, "LZ4FrameEncoder used after finish")
        try beginIfNeeded(&output)
        guard chunk.count > 0 else { return }
        let bound = LZ4F_compressBound(chunk.count, &preferences)
        try appendingWrite(to: &output, capacity: bound) { dst in
            try check(
                LZ4F_compressUpdate(context, dst.baseAddress, dst.count, chunk.baseAddress, chunk.count, nil),
                LZ4Error.libraryFailure)
        }
    }

    public func compress(_ chunk: [UInt8], appendingTo output: inout [UInt8]) throws {
        try chunk.withUnsafeBytes { bytes in try compress(bytes, appendingTo: &output) }
    }

    /// Flushes the last block and the end mark (with the content checksum).
    public func finish(appendingTo output: inout [UInt8]) throws {
        precondition(!finished, "LZ4FrameEncoder finished twice")
        try beginIfNeeded(&output)
        let bound = LZ4F_compressBound(0, &preferences)
        try appendingWrite(to: &output, capacity: bound) { dst in
            try check(LZ4F_compressEnd(context, dst.baseAddress, dst.count, nil), LZ4Error.libraryFailure)
        }
        finished = true
    }

    private func beginIfNeeded(_ output: inout [UInt8]) throws {
        guard !started else { return }
        started = true
        try appendingWrite(to: &output, capacity: 32) { dst in
            try check(LZ4F_compressBegin(context, dst.baseAddress, dst.count, &preferences), LZ4Error.libraryFailure)
        }
    }
}

/// Decompresses a stream of LZ4 frames fed in chunks of any size, down to one byte.
public final class LZ4FrameDecoder {
    private var context: OpaquePointer?
    private let maxOutputBytes: Int
    private var totalProduced = 0
    /// Decoded bytes land here first, so feeding one byte at a time costs no more than bulk.
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    private var failure: LZ4Error?
    /// True when every frame fed so far has been read to its end mark.
    public private(set) var isAtFrameBoundary = true

    /// - Parameter maxOutputBytes: refuse input that expands beyond this (hostile input).
    public init(maxOutputBytes: Int = .max) throws {
        self.maxOutputBytes = maxOutputBytes
        _ = try check(LZ4F_createDecompressionContext(&context, actcluster_lz4f_version()), LZ4Error.libraryFailure)
    }

    deinit {
        LZ4F_freeDecompressionContext(context)
        scratch.deallocate()
    }

    /// Decodes `chunk` and appends the decompressed bytes to `output`.
    /// After an error the decoder refuses further input.
    public func decompress(_ chunk: UnsafeRawBufferPointer, appendingTo output: inout [UInt8]) throws {
        if let failure { throw failure }
        do {
            try decode(chunk, &output)
        } catch let error as LZ4Error {
            failure = error
            throw error
        }
    }

    public func decompress(_ chunk: [UInt8], appendingTo output: inout [UInt8]) throws {
        try chunk.withUnsafeBytes { bytes in try decompress(bytes, appendingTo: &output) }
    }

    /// Throws if the stream stopped in the middle of a frame.
    public func finish() throws {
        if let failure { throw failure }
        guard isAtFrameBoundary else { throw LZ4Error.truncatedFrame }
    }

    private func decode(_ chunk: UnsafeRawBufferPointer, _ output: inout [UInt8]) throws {
        var consumed = 0
        var scratchWasFilled = false
        repeat {
            var sourceSize = chunk.count - consumed
            var produced = scratch.count
            let hint = try check(
                LZ4F_decompress(
                    context, scratch.baseAddress, &produced, chunk.baseAddress.map { $0 + consumed }, &sourceSize, nil),
                LZ4Error.corruptFrame)
            consumed += sourceSize
            totalProduced += produced
            if totalProduced > maxOutputBytes { throw LZ4Error.outputLimitExceeded(limit: maxOutputBytes) }
            output.append(contentsOf: UnsafeRawBufferPointer(rebasing: scratch[..<produced]))
            if sourceSize > 0 || produced > 0 { isAtFrameBoundary = hint == 0 }
            scratchWasFilled = produced == scratch.count
        } while consumed < chunk.count || scratchWasFilled
    }
}

/// One-shot helpers over the streaming encoder and decoder.
public enum LZ4Frame {
    public static func compress(_ bytes: [UInt8], options: LZ4FrameOptions = LZ4FrameOptions()) throws -> [UInt8] {
        let encoder = try LZ4FrameEncoder(options: options)
        var output: [UInt8] = []
        try encoder.compress(bytes, appendingTo: &output)
        try encoder.finish(appendingTo: &output)
        return output
    }

    /// Decompresses one or more concatenated frames; empty or truncated input throws.
    public static func decompress(_ bytes: [UInt8], maxOutputBytes: Int = .max) throws -> [UInt8] {
        guard !bytes.isEmpty else { throw LZ4Error.truncatedFrame }
        let decoder = try LZ4FrameDecoder(maxOutputBytes: maxOutputBytes)
        var output: [UInt8] = []
        try decoder.decompress(bytes, appendingTo: &output)
        try decoder.finish()
        return output
    }
}
