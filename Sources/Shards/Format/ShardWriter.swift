import Platform

/// What a finished shard file holds, for the manifest.
public struct ShardFileSummary: Equatable, Sendable {
    public var path: String
    public var header: ShardHeader
    public var rows: Int
    public var bytes: Int
    /// CRC-32C of the whole file.
    public var checksum: UInt32
}

/// Streams rows into a shard file with memory bounded by one block: rows are staged until a
/// block is full, then encoded and written. The file appears under its name only after
/// ``finish()`` (temporary name, fsync, rename); a writer dropped or failed before that leaves
/// nothing behind.
public final class ShardWriter {
    public let path: String
    public private(set) var header: ShardHeader
    private let file: DurableFileWriter
    private let encoder: ShardBlockEncoder
    private var blocks: [ShardBlockInfo] = []
    private var staged: ShardRows
    private var rowsWritten = 0
    /// CRC-32C of everything after the header, as written.
    private var bodyCRC: UInt32 = 0
    private var finished = false

    /// - Parameters:
    ///   - path: where the finished file appears.
    ///   - header: dtype, width, block rows, hook, model and unit; its row count is ignored
    ///     and filled in by ``finish()``.
    ///   - replacing: when false, an existing file at `path` is an error.
    public init(path: String, header: ShardHeader, replacing: Bool = true) throws {
        var header = header
        header.rowCount = 0
        if let problem = header.problem() {
            throw ShardError(path: path, part: .header, check: problem.field, expected: problem.expected, found: problem.found)
        }
        self.path = path
        self.header = header
        encoder = ShardBlockEncoder(dtype: header.dtype, width: header.width, blockRows: header.blockRows)
        staged = ShardRows(width: header.width)
        staged.activations.reserveCapacity(header.blockRows * header.width)
        file = try DurableFileWriter(path: path, replacing: replacing)
        try file.write(header.encoded())  // rewritten with the row count by finish()
    }

    /// Rows so far, written or staged.
    public var rowCount: Int { rowsWritten + staged.count }

    /// Appends rows. `activations` holds `count × width` floats, row-major.
    public func append(
        activations: UnsafeBufferPointer<Float>, tokens: UnsafeBufferPointer<Int32>, documents: UnsafeBufferPointer<Int64>,
        windows: UnsafeBufferPointer<Int64>, positions: UnsafeBufferPointer<Int32>
    ) throws {
        precondition(!finished, "ShardWriter used after finish()")
        let count = tokens.count
        precondition(activations.count == count * header.width && documents.count == count && windows.count == count
            && positions.count == count, "append: columns disagree on the row count (\(count) tokens, \(activations.count) floats for width \(header.width))")
        var next = 0
        while next < count {
            let take = min(count - next, header.blockRows - staged.count)
            if staged.count == 0 && take == header.blockRows {
                // A whole block straight from the caller's buffers.
                try writeBlock(
                    rows: take, activations: UnsafeBufferPointer(rebasing: activations[(next * header.width)...]),
                    tokens: UnsafeBufferPointer(rebasing: tokens[next...]), documents: UnsafeBufferPointer(rebasing: documents[next...]),
                    windows: UnsafeBufferPointer(rebasing: windows[next...]), positions: UnsafeBufferPointer(rebasing: positions[next...]))
            } else {
                staged.activations.append(contentsOf: activations[(next * header.width)..<((next + take) * header.width)])
                staged.tokens.append(contentsOf: tokens[next..<(next + take)])
                staged.documents.append(contentsOf: documents[next..<(next + take)])
                staged.windows.append(contentsOf: windows[next..<(next + take)])
                staged.positions.append(contentsOf: positions[next..<(next + take)])
                if staged.count == header.blockRows { try flushStaged() }
            }
            next += take
        }
    }

    public func append(_ rows: ShardRows) throws {
        precondition(rows.isConsistent && rows.width == header.width, "append: rows of width \(rows.width) are inconsistent or do not match width \(header.width)")
        try rows.activations.withUnsafeBufferPointer { activations in
            try rows.tokens.withUnsafeBufferPointer { tokens in
                try rows.documents.withUnsafeBufferPointer { documents in
                    try rows.windows.withUnsafeBufferPointer { windows in
                        try rows.positions.withUnsafeBufferPointer { positions in
                            try append(activations: activations, tokens: tokens, documents: documents, windows: windows, positions: positions)
                        }
                    }
                }
            }
        }
    }

    /// Writes the last block, the index and the trailer, fills in the header's row count,
    /// then fsyncs and renames the file into place.
    @discardableResult
    public func finish() throws -> ShardFileSummary {
        precondition(!finished, "ShardWriter.finish() called twice")
        finished = true
        do {
            if staged.count > 0 { try flushStaged() }
            header.rowCount = rowsWritten
            let headerBytes = header.encoded()
            var index: [UInt8] = []
            for block in blocks { index += block.encoded() }
            let trailerStart = ShardTrailer(indexOffset: file.bytesWritten, blockCount: blocks.count, metadataCRC: 0)
            var metadataCRC = CRC32C.checksum(headerBytes)
            metadataCRC = CRC32C.checksum(index, continuing: metadataCRC)
            metadataCRC = CRC32C.checksum(trailerStart.encodedPrefix(), continuing: metadataCRC)
            let trailer = ShardTrailer(indexOffset: trailerStart.indexOffset, blockCount: blocks.count, metadataCRC: metadataCRC)
            let tail = index + trailer.encoded()
            try file.write(tail)
            bodyCRC = CRC32C.checksum(tail, continuing: bodyCRC)
            try file.overwrite(headerBytes, at: 0)
            let bodyLength = file.bytesWritten - headerBytes.count
            let checksum = CRC32C.combine(CRC32C.checksum(headerBytes), bodyCRC, lengthOfB: bodyLength)
            let bytes = file.bytesWritten
            try file.commit()
            return ShardFileSummary(path: path, header: header, rows: rowsWritten, bytes: bytes, checksum: checksum)
        } catch {
            file.abandon()
            throw error
        }
    }

    /// Drops everything written so far; no file appears.
    public func abandon() {
        finished = true
        file.abandon()
    }

    private func flushStaged() throws {
        let rows = staged.count
        try staged.activations.withUnsafeBufferPointer { activations in
            try staged.tokens.withUnsafeBufferPointer { tokens in
                try staged.documents.withUnsafeBufferPointer { documents in
                    try staged.windows.withUnsafeBufferPointer { windows in
                        try staged.positions.withUnsafeBufferPointer { positions in
                            try writeBlock(rows: rows, activations: activations, tokens: tokens, documents: documents, windows: windows, positions: positions)
                        }
                    }
                }
            }
        }
        staged.activations.removeAll(keepingCapacity: true)
        staged.tokens.removeAll(keepingCapacity: true)
        staged.documents.removeAll(keepingCapacity: true)
        staged.windows.removeAll(keepingCapacity: true)
        staged.positions.removeAll(keepingCapacity: true)
    }

    private func writeBlock(
        rows: Int, activations: UnsafeBufferPointer<Float>, tokens: UnsafeBufferPointer<Int32>, documents: UnsafeBufferPointer<Int64>,
        windows: UnsafeBufferPointer<Int64>, positions: UnsafeBufferPointer<Int32>
    ) throws {
        let encoded = encoder.encode(
            rows: rows, activations: activations, tokens: tokens, documents: documents, windows: windows, positions: positions)
        let offset = file.bytesWritten
        do {
            try file.write(encoded.bytes)
        } catch {
            file.abandon()
            throw error
        }
        bodyCRC = CRC32C.checksum(encoded.bytes, continuing: bodyCRC)
        blocks.append(
            ShardBlockInfo(
                offset: offset, firstRow: rowsWritten, rows: rows, storedSize: encoded.bytes.count,
                uncompressedSize: encoded.uncompressedSize, storedCRC: encoded.storedCRC, dataCRC: encoded.dataCRC))
        rowsWritten += rows
    }
}
