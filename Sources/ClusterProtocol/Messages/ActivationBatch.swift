import LZ4
import Shards

/// The control body of BATCH: whose rows these are and how to read the payload.
public struct ActivationBatchHeader: Equatable, Hashable, Sendable {
    public var run: UInt64
    public var worker: String
    public var unit: UnitID
    public var lease: LeaseID
    public var hook: String
    /// 0, 1, 2, … per (unit, hook). Batches are cut every `batchWindows` windows, so the
    /// same (run, unit, hook, sequence) holds the same rows on every attempt: a trainer that
    /// keeps the first copy of each key gets every row exactly once.
    public var sequence: Int
    /// The last batch of this (unit, hook).
    public var final: Bool
    public var dtype: ShardDType
    public var width: Int
    public var rows: Int
    /// Statistics of this batch's rows, from float32 before rounding to `dtype`.
    public var statistics: HookStatistics?

    public init(
        run: UInt64, worker: String, unit: UnitID, lease: LeaseID, hook: String, sequence: Int, final: Bool, dtype: ShardDType, width: Int,
        rows: Int, statistics: HookStatistics? = nil
    ) {
        self.run = run
        self.worker = worker
        self.unit = unit
        self.lease = lease
        self.hook = hook
        self.sequence = sequence
        self.final = final
        self.dtype = dtype
        self.width = width
        self.rows = rows
        self.statistics = statistics
    }

    /// Bytes per row of the uncompressed payload: activations plus 24 bytes of metadata.
    public var rowBytes: Int { width * dtype.elementSize + ShardFileFormat.metadataBytesPerRow }
    public var uncompressedBytes: Int { rows * rowBytes }

    func write(to writer: inout FieldWriter) {
        writer.uint(.run, run)
        writer.string(.worker, worker)
        writer.uint(.unit, unit.rawValue)
        writer.uint(.lease, lease.rawValue)
        writer.string(.hook, hook)
        writer.int(.sequence, sequence)
        writer.bool(.final, final)
        writer.string(.dtype, dtype.name)
        writer.int(.width, width)
        writer.int(.rows, rows)
        writer.int(.uncompressedBytes, uncompressedBytes)
        if let statistics { writer.fields(.statistics) { statistics.write(hook: nil, to: &$0) } }
    }

    init(_ fields: Fields) throws(ProtocolError) {
        let limits = ClusterWire.Limits.self
        run = try fields.uint(.run)
        worker = try fields.name(.worker)
        unit = try fields.unit()
        lease = try fields.lease()
        hook = try fields.name(.hook)
        sequence = try fields.int(.sequence, in: 0...Int(UInt32.max))
        final = try fields.bool(.final)
        dtype = try fields.dtype()
        width = try fields.int(.width, in: 1...limits.maxWidth)
        let rowBytes = width * dtype.elementSize + ShardFileFormat.metadataBytesPerRow
        rows = try fields.int(.rows, in: 0...(limits.maxBatchBytes / rowBytes))
        let claimed = try fields.int(.uncompressedBytes, in: 0...limits.maxBatchBytes)
        guard claimed == rows * rowBytes else {
            throw fields.invalid(.uncompressedBytes, expected: "\(rows * rowBytes) (\(rows) rows of \(rowBytes) bytes)", found: "\(claimed)")
        }
        statistics = try fields.optionalNested(.statistics).map { (nested: Fields) throws(ProtocolError) -> HookStatistics in
            let value = try HookStatistics(nested)
            guard value.width == width else { throw nested.invalid(.mean, expected: "\(width) values, the batch's width", found: "\(value.width)") }
            guard value.count == rows else { throw nested.invalid(.count, expected: "\(rows), the batch's rows", found: "\(value.count)") }
            return value
        }
    }
}

/// BATCH, worker → trainer: rows of one hook from one unit, as an LZ4 frame of
/// `activations [rows, width] in dtype · tokens int32 · documents int64 · windows int64 ·
/// positions int32`, all little-endian.
public struct ActivationBatch: Equatable, Sendable {
    public var header: ActivationBatchHeader
    /// The LZ4 frame (frame 3).
    public var payload: [UInt8]

    public init(header: ActivationBatchHeader, payload: [UInt8]) {
        self.header = header
        self.payload = payload
    }

    /// Compresses `rows` (float32 activations are rounded to the header's dtype).
    public init(header: ActivationBatchHeader, rows: ShardRows) throws {
        precondition(rows.isConsistent && rows.width == header.width && rows.count == header.rows, "batch rows do not match the header")
        var raw: [UInt8] = []
        raw.reserveCapacity(header.uncompressedBytes)
        switch header.dtype {
        case .fp32: rows.activations.withUnsafeBytes { raw.append(contentsOf: $0) }
        case .bf16: FloatConversion.bfloat16(rows.activations).withUnsafeBytes { raw.append(contentsOf: $0) }
        case .fp16: FloatConversion.float16(rows.activations).withUnsafeBytes { raw.append(contentsOf: $0) }
        }
        rows.tokens.withUnsafeBytes { raw.append(contentsOf: $0) }
        rows.documents.withUnsafeBytes { raw.append(contentsOf: $0) }
        rows.windows.withUnsafeBytes { raw.append(contentsOf: $0) }
        rows.positions.withUnsafeBytes { raw.append(contentsOf: $0) }
        var options = LZ4FrameOptions()
        options.blockChecksum = false
        self.init(header: header, payload: try LZ4Frame.compress(raw, options: options))
    }

    public func encode() -> [[UInt8]] {
        var writer = FieldWriter()
        header.write(to: &writer)
        return FrameCheck.frames(.batch, .batch, writer, [payload])
    }

    /// Decodes and checks the frames; the payload is checked for size here and decompressed
    /// by ``rows()``, so a trainer can drop a repeated batch without decompressing it.
    public static func decode(frames: [[UInt8]]) throws(ProtocolError) -> ActivationBatch {
        let command = try FrameCheck.command(frames, channel: .batch)
        let header = try ActivationBatchHeader(try FrameCheck.body(frames, command, frameCount: 4))
        guard frames[3].count <= ClusterWire.Limits.maxBatchFrameBytes else {
            throw ProtocolError(
                .tooLarge, message: command.name, location: "frame 3 (payload)", expected: "at most \(ClusterWire.Limits.maxBatchFrameBytes) bytes",
                found: "\(frames[3].count) bytes")
        }
        return ActivationBatch(header: header, payload: frames[3])
    }

    /// The decompressed rows, activations as float32.
    public func rows() throws(ProtocolError) -> ShardRows {
        let decoder = try ActivationBatchPayloadDecoder(header: header)
        try decoder.feed(payload)
        return try decoder.finish()
    }
}

/// Decompresses a BATCH payload fed in pieces of any size (one byte at a time included) and
/// checks it against its header. Memory is bounded by the header's uncompressed size, which
/// the header check bounds by ``ClusterWire/Limits/maxBatchBytes``.
public final class ActivationBatchPayloadDecoder {
    public let header: ActivationBatchHeader
    private let decoder: LZ4FrameDecoder
    private var raw: [UInt8] = []

    public init(header: ActivationBatchHeader) throws(ProtocolError) {
        self.header = header
        do {
            decoder = try LZ4FrameDecoder(maxOutputBytes: header.uncompressedBytes)
        } catch {
            throw ProtocolError(.payload, message: "BATCH", location: "frame 3 (payload)", expected: "an LZ4 decoder", found: "\(error)")
        }
        raw.reserveCapacity(header.uncompressedBytes)
    }

    private func fail(_ error: any Error) -> ProtocolError {
        ProtocolError(
            .payload, message: "BATCH", location: "frame 3 (payload)", expected: "an LZ4 frame of \(header.uncompressedBytes) bytes",
            found: "\(error)")
    }

    public func feed(_ chunk: UnsafeRawBufferPointer) throws(ProtocolError) {
        do {
            try decoder.decompress(chunk, appendingTo: &raw)
        } catch {
            throw fail(error)
        }
    }

    public func feed(_ chunk: [UInt8]) throws(ProtocolError) {
        let result: Result<Void, ProtocolError> = chunk.withUnsafeBytes { bytes in
            do throws(ProtocolError) {
                try feed(bytes)
                return .success(())
            } catch {
                return .failure(error)
            }
        }
        try result.get()
    }

    /// The rows, once the whole frame has been fed.
    public func finish() throws(ProtocolError) -> ShardRows {
        do {
            try decoder.finish()
        } catch {
            throw fail(error)
        }
        guard raw.count == header.uncompressedBytes else {
            throw ProtocolError(
                .payload, message: "BATCH", location: "frame 3 (payload)", expected: "\(header.uncompressedBytes) bytes decompressed",
                found: "\(raw.count) bytes")
        }
        let rows = header.rows, width = header.width
        var output = ShardRows(width: width)
        raw.withUnsafeBytes { bytes in
            var offset = 0
            // Copies the next `count` values out of the payload (no alignment assumed).
            func column<T>(_ type: T.Type, count: Int) -> [T] {
                let size = count * MemoryLayout<T>.size
                defer { offset += size }
                return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
                    UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + size)]))
                    initialized = count
                }
            }
            switch header.dtype {
            case .fp32: output.activations = column(Float.self, count: rows * width)
            case .bf16: output.activations = FloatConversion.floats(fromBFloat16: column(UInt16.self, count: rows * width))
            case .fp16: output.activations = FloatConversion.floats(fromFloat16: column(UInt16.self, count: rows * width))
            }
            output.tokens = column(Int32.self, count: rows)
            output.documents = column(Int64.self, count: rows)
            output.windows = column(Int64.self, count: rows)
            output.positions = column(Int32.self, count: rows)
        }
        return output
    }
}
