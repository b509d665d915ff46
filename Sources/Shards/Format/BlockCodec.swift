import LZ4

/// Where a block's streams live in its uncompressed (and bitshuffled) payload.
///
/// The payload of a block of R rows is: activations in dimension-major order
/// (`[width, R]`, the stored dtype), then tokens (int32), documents (int64), windows (int64)
/// and positions (int32), all little-endian. The bitshuffled payload has the same regions,
/// each shuffled by its own element size; stream `j < e` is byte `j` of the activation
/// elements (the last one also takes the `n % 8` leftover elements), streams `e ..< e + 4`
/// are the four metadata columns.
struct BlockLayout: Equatable {
    let dtype: ShardDType
    let width: Int
    let rows: Int

    var elementSize: Int { dtype.elementSize }
    var activationCount: Int { rows * width }
    var activationBytes: Int { activationCount * elementSize }
    var uncompressedSize: Int { activationBytes + rows * ShardFormat.metadataBytesPerRow }
    var streamCount: Int { elementSize + 4 }
    var streamTableSize: Int { streamCount * ShardFormat.streamEntrySize }

    /// Byte ranges of the metadata columns in the payload, with their element sizes.
    var metadataColumns: [(range: Range<Int>, elementSize: Int)] {
        var start = activationBytes
        return [4, 8, 8, 4].map { size in
            defer { start += rows * size }
            return (start..<(start + rows * size), size)
        }
    }

    /// Byte ranges of the streams in the bitshuffled payload, in stream order.
    var streamRanges: [Range<Int>] {
        let planeBytes = (activationCount & ~7)  // bytes of one element byte's 8 planes
        var ranges = (0..<elementSize).map { j in
            (j * planeBytes)..<(j == elementSize - 1 ? activationBytes : (j + 1) * planeBytes)
        }
        ranges += metadataColumns.map(\.range)
        return ranges
    }

    static let streamNames = ["tokens", "documents", "windows", "positions"]

    func streamName(_ index: Int) -> String {
        index < elementSize ? "activation byte \(index)" : Self.streamNames[index - elementSize]
    }
}

/// Stream storage methods in a block's stream table.
enum StreamMethod: UInt8 {
    case stored = 0
    case lz4 = 1
}

/// Encodes blocks: convert to the stored dtype and transpose to dimension-major (one pass), bitshuffle,
/// LZ4 per stream, CRC-32C of the payload and of the stored bytes. Owns scratch buffers
/// sized for one block of `blockRows` rows and reuses them; not thread-safe.
public final class ShardBlockEncoder {
    public let dtype: ShardDType
    public let width: Int
    public let blockRows: Int
    private let payload: UnsafeMutableRawBufferPointer
    private let shuffled: UnsafeMutableRawBufferPointer
    private let output: UnsafeMutableRawBufferPointer
    /// Per stream: blocks left before LZ4 is tried again on a stream it could not shrink.
    private var skipLZ4: [Int]
    static let skipBlocks = 7

    /// One encoded block. `bytes` stays valid until the next `encode` call.
    public struct Encoded {
        public let bytes: UnsafeRawBufferPointer
        public let rows: Int
        public let uncompressedSize: Int
        public let storedCRC: UInt32
        public let dataCRC: UInt32
        /// Stored bytes of the activation streams alone (the rest is metadata and stream table).
        public let activationStoredSize: Int
    }

    public init(dtype: ShardDType, width: Int, blockRows: Int) {
        precondition(width > 0 && blockRows > 0, "a block needs a positive width and row count")
        self.dtype = dtype
        self.width = width
        self.blockRows = blockRows
        let layout = BlockLayout(dtype: dtype, width: width, rows: blockRows)
        payload = .allocate(byteCount: max(layout.uncompressedSize, 1), alignment: 64)
        shuffled = .allocate(byteCount: max(layout.uncompressedSize, 1), alignment: 64)
        output = .allocate(byteCount: layout.streamTableSize + layout.uncompressedSize, alignment: 64)
        skipLZ4 = [Int](repeating: 0, count: layout.streamCount)
    }

    deinit {
        payload.deallocate()
        shuffled.deallocate()
        output.deallocate()
    }

    /// Encodes `rows` rows (1 ... blockRows). `activations` holds `rows × width` floats in
    /// row-major order; each metadata buffer holds `rows` values.
    public func encode(
        rows: Int, activations: UnsafeBufferPointer<Float>, tokens: UnsafeBufferPointer<Int32>,
        documents: UnsafeBufferPointer<Int64>, windows: UnsafeBufferPointer<Int64>, positions: UnsafeBufferPointer<Int32>
    ) -> Encoded {
        precondition(rows > 0 && rows <= blockRows, "a block holds 1...\(blockRows) rows, not \(rows)")
        precondition(activations.count >= rows * width && tokens.count >= rows && documents.count >= rows
            && windows.count >= rows && positions.count >= rows, "fewer values than rows")
        let layout = BlockLayout(dtype: dtype, width: width, rows: rows)
        let count = layout.activationCount

        // 1. Payload: activations [width, rows] in the stored dtype, then the metadata columns.
        let activationRegion = UnsafeMutableRawBufferPointer(rebasing: payload[0..<layout.activationBytes])
        ColumnLayout.pack(
            UnsafeBufferPointer(rebasing: activations[0..<count]), into: activationRegion, rows: rows, columns: width, dtype: dtype)
        let columns = layout.metadataColumns
        let sources: [UnsafeRawBufferPointer] = [
            UnsafeRawBufferPointer(tokens), UnsafeRawBufferPointer(documents), UnsafeRawBufferPointer(windows),
            UnsafeRawBufferPointer(positions),
        ]
        for (column, source) in zip(columns, sources) {
            // Little-endian host (checked by the format's tests); copy as is.
            UnsafeMutableRawBufferPointer(rebasing: payload[column.range]).copyMemory(
                from: UnsafeRawBufferPointer(rebasing: source[0..<column.range.count]))
        }
        let payloadBytes = UnsafeRawBufferPointer(rebasing: payload[0..<layout.uncompressedSize])
        let dataCRC = CRC32C.checksum(payloadBytes)

        // 2. Bitshuffle each region by its element size.
        Bitshuffle.shuffle(
            UnsafeRawBufferPointer(activationRegion), into: UnsafeMutableRawBufferPointer(rebasing: shuffled[0..<layout.activationBytes]),
            elementSize: layout.elementSize)
        for column in columns {
            Bitshuffle.shuffle(
                UnsafeRawBufferPointer(rebasing: payload[column.range]),
                into: UnsafeMutableRawBufferPointer(rebasing: shuffled[column.range]), elementSize: column.elementSize)
        }

        // 3. Stream table, then each stream LZ4-compressed, or stored when LZ4 saves nothing.
        // A stream that LZ4 could not shrink by 1% (the mantissa bits of activations) is
        // stored without trying for the next `skipBlocks` blocks, then probed again.
        var cursor = layout.streamTableSize
        var activationStored = 0
        for (index, range) in layout.streamRanges.enumerated() {
            let source = UnsafeRawBufferPointer(rebasing: shuffled[range])
            var method = StreamMethod.stored
            var size = source.count
            if source.count > 1 && skipLZ4[index] == 0 {
                let room = UnsafeMutableRawBufferPointer(rebasing: output[cursor..<(cursor + source.count - 1)])
                if let compressed = try? LZ4Block.compress(source, into: room) {
                    method = .lz4
                    size = compressed
                }
                if size * 100 > source.count * 99 { skipLZ4[index] = Self.skipBlocks }
            } else if skipLZ4[index] > 0 {
                skipLZ4[index] -= 1
            }
            if method == .stored, size > 0 {
                UnsafeMutableRawBufferPointer(rebasing: output[cursor..<(cursor + size)]).copyMemory(from: source)
            }
            let entry = index * ShardFormat.streamEntrySize
            output.storeBytes(of: UInt32(size).littleEndian, toByteOffset: entry, as: UInt32.self)
            output.storeBytes(of: UInt32(method.rawValue).littleEndian, toByteOffset: entry + 4, as: UInt32.self)
            cursor += size
            if index < layout.elementSize { activationStored += size }
        }
        let bytes = UnsafeRawBufferPointer(rebasing: output[0..<cursor])
        return Encoded(
            bytes: bytes, rows: rows, uncompressedSize: layout.uncompressedSize, storedCRC: CRC32C.checksum(bytes),
            dataCRC: dataCRC, activationStoredSize: activationStored)
    }
}

/// Decodes blocks back to float32 activations and metadata, checking both CRCs. Owns
/// scratch buffers, grown to the largest block seen; not thread-safe.
public final class ShardBlockDecoder {
    public let header: ShardHeader
    private let path: String
    private var capacity = 0
    private var payload = UnsafeMutableRawBufferPointer(start: nil, count: 0)
    private var shuffled = UnsafeMutableRawBufferPointer(start: nil, count: 0)

    public init(header: ShardHeader, path: String) {
        self.header = header
        self.path = path
    }

    deinit { release() }

    private func release() {
        payload.deallocate()
        shuffled.deallocate()
    }

    private func reserve(_ bytes: Int) {
        guard bytes > capacity else { return }
        release()
        capacity = bytes
        payload = .allocate(byteCount: bytes, alignment: 64)
        shuffled = .allocate(byteCount: bytes, alignment: 64)
    }

    /// Decodes block `number` from its stored bytes. Outputs receive `info.rows × width`
    /// floats and `info.rows` values per metadata column. Throws ``ShardError`` for any
    /// mismatch, before writing to the outputs: they only ever receive checked data.
    public func decode(
        _ stored: UnsafeRawBufferPointer, block number: Int, info: ShardBlockInfo,
        activations: UnsafeMutableBufferPointer<Float>, tokens: UnsafeMutableBufferPointer<Int32>,
        documents: UnsafeMutableBufferPointer<Int64>, windows: UnsafeMutableBufferPointer<Int64>,
        positions: UnsafeMutableBufferPointer<Int32>
    ) throws {
        let layout = BlockLayout(dtype: header.dtype, width: header.width, rows: info.rows)
        precondition(activations.count >= layout.activationCount && tokens.count >= info.rows && documents.count >= info.rows
            && windows.count >= info.rows && positions.count >= info.rows, "output buffers too small for the block")
        func fail(_ check: String, expected: String, found: String, _ detail: String = "") -> ShardError {
            ShardError(
                path: path, part: .block(number), check: check, expected: expected, found: found,
                detail: "rows \(info.firstRow)..<\(info.firstRow + info.rows), bytes \(info.offset)..<\(info.offset + info.storedSize)"
                    + (detail.isEmpty ? "" : "; " + detail))
        }
        guard stored.count == info.storedSize else {
            throw fail("stored size", expected: "\(info.storedSize) bytes", found: "\(stored.count) bytes", "the file is truncated")
        }
        let storedCRC = CRC32C.checksum(stored)
        guard storedCRC == info.storedCRC else {
            throw fail("CRC-32C of the stored block bytes", expected: info.storedCRC.hex + " (from the index)", found: storedCRC.hex)
        }
        guard info.uncompressedSize == layout.uncompressedSize else {
            throw fail("uncompressed size", expected: "\(layout.uncompressedSize) bytes", found: "\(info.uncompressedSize) bytes")
        }

        // Stream table.
        guard stored.count >= layout.streamTableSize else {
            throw fail("stream table", expected: "\(layout.streamTableSize) bytes", found: "\(stored.count) bytes")
        }
        let ranges = layout.streamRanges
        var streams: [(method: StreamMethod, size: Int)] = []
        var total = layout.streamTableSize
        var reader = ByteReader(stored)
        for index in 0..<layout.streamCount {
            let size = Int(reader.read(UInt32.self)!)
            let word: UInt32 = reader.read()!
            guard word <= 1, let method = StreamMethod(rawValue: UInt8(word)) else {
                throw fail("storage method of stream \(index) (\(layout.streamName(index)))", expected: "0 (stored) or 1 (LZ4)", found: "\(word)")
            }
            let expected = ranges[index].count
            if method == .stored, size != expected {
                throw fail("size of stored stream \(index) (\(layout.streamName(index)))", expected: "\(expected) bytes", found: "\(size) bytes")
            }
            if method == .lz4, size == 0 || expected > size * ShardFormat.maxLZ4Expansion + 16 {
                throw fail("size of LZ4 stream \(index) (\(layout.streamName(index)))", expected: "1 or more bytes that can decode to \(expected)", found: "\(size) bytes")
            }
            streams.append((method, size))
            total += size
        }
        guard total == stored.count else {
            throw fail("sum of stream sizes", expected: "\(stored.count) bytes", found: "\(total) bytes")
        }

        // Streams into the shuffled payload.
        reserve(max(layout.uncompressedSize, 1))
        var cursor = layout.streamTableSize
        for (index, stream) in streams.enumerated() {
            let source = UnsafeRawBufferPointer(rebasing: stored[cursor..<(cursor + stream.size)])
            let destination = UnsafeMutableRawBufferPointer(rebasing: shuffled[ranges[index]])
            switch stream.method {
            case .stored:
                if stream.size > 0 { destination.copyMemory(from: source) }
            case .lz4:
                do {
                    try LZ4Block.decompress(source, into: destination)
                } catch {
                    throw fail("LZ4 stream \(index) (\(layout.streamName(index)))", expected: "\(destination.count) decoded bytes", found: "\(error)")
                }
            }
            cursor += stream.size
        }

        // Unshuffle into the payload and check its CRC.
        Bitshuffle.unshuffle(
            UnsafeRawBufferPointer(rebasing: shuffled[0..<layout.activationBytes]),
            into: UnsafeMutableRawBufferPointer(rebasing: payload[0..<layout.activationBytes]), elementSize: layout.elementSize)
        for column in layout.metadataColumns {
            Bitshuffle.unshuffle(
                UnsafeRawBufferPointer(rebasing: shuffled[column.range]),
                into: UnsafeMutableRawBufferPointer(rebasing: payload[column.range]), elementSize: column.elementSize)
        }
        let dataCRC = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: payload[0..<layout.uncompressedSize]))
        guard dataCRC == info.dataCRC else {
            throw fail("CRC-32C of the uncompressed block", expected: info.dataCRC.hex + " (from the index)", found: dataCRC.hex)
        }

        // Outputs: activations back to row-major float32, metadata as is.
        let count = layout.activationCount
        let activationRegion = UnsafeRawBufferPointer(rebasing: payload[0..<layout.activationBytes])
        ColumnLayout.unpack(
            activationRegion, into: UnsafeMutableBufferPointer(rebasing: activations[0..<count]), rows: info.rows,
            columns: header.width, dtype: header.dtype)
        let columns = layout.metadataColumns
        let outputs: [UnsafeMutableRawBufferPointer] = [
            UnsafeMutableRawBufferPointer(tokens), UnsafeMutableRawBufferPointer(documents),
            UnsafeMutableRawBufferPointer(windows), UnsafeMutableRawBufferPointer(positions),
        ]
        for (column, output) in zip(columns, outputs) {
            UnsafeMutableRawBufferPointer(rebasing: output[0..<column.range.count]).copyMemory(
                from: UnsafeRawBufferPointer(rebasing: payload[column.range]))
        }
    }
}
