import LZ4

/// Where a block's regions and streams live.
///
/// The payload of a block of R rows is: activations in dimension-major order
/// (`[width, R]`, the stored dtype), then tokens (int32), documents (int64), windows (int64)
/// and positions (int32), all little-endian. The bitshuffled payload has the same regions,
/// each shuffled by its own element size. The shuffled activations are `8 × element size`
/// bit planes of `planeBytes` bytes, then the `n % 8` leftover elements; they are cut into
/// streams of consecutive planes (the last stream also takes the leftover elements). Then
/// come one stream per metadata column.
struct BlockLayout: Equatable {
    let dtype: ShardDType
    let width: Int
    let rows: Int

    /// Bytes before the stream table: activation stream count (u32) and a reserved u32.
    static let prefixSize = 8
    /// The smallest block: prefix and five stream-table entries.
    static let minimumStoredSize = prefixSize + 5 * ShardFileFormat.streamEntrySize
    static let metadataStreamCount = 4
    static let metadataNames = ["tokens", "documents", "windows", "positions"]

    var elementSize: Int { dtype.elementSize }
    var activationCount: Int { rows * width }
    var activationBytes: Int { activationCount * elementSize }
    var uncompressedSize: Int { activationBytes + rows * ShardFileFormat.metadataBytesPerRow }
    var planeCount: Int { 8 * elementSize }
    /// Bytes of one bit plane.
    var planeBytes: Int { (activationCount & ~7) / 8 }

    func tableSize(activationStreams: Int) -> Int {
        Self.prefixSize + (activationStreams + Self.metadataStreamCount) * ShardFileFormat.streamEntrySize
    }

    /// Byte ranges of the metadata columns in the payload, with their element sizes.
    var metadataColumns: [(range: Range<Int>, elementSize: Int)] {
        var start = activationBytes
        return [4, 8, 8, 4].map { size in
            defer { start += rows * size }
            return (start..<(start + rows * size), size)
        }
    }

    /// Bytes of the shuffled activations that hold `planes`; the stream that ends with the
    /// last plane also holds the leftover elements.
    func activationRange(planes: Range<Int>) -> Range<Int> {
        (planes.lowerBound * planeBytes)..<(planes.upperBound == planeCount ? activationBytes : planes.upperBound * planeBytes)
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
    /// Per metadata column: blocks left before LZ4 is tried again on a column it could not shrink.
    private var skipLZ4 = [Int](repeating: 0, count: BlockLayout.metadataStreamCount)
    static let skipBlocks = 7
    /// A plane is worth LZ4 when at least this fraction of its sampled bytes are 0x00 or
    /// 0xFF; noise scores about 2/256, the high exponent bits of activations 0.7 and more.
    static let compressiblePlaneFraction = 0.25
    static let planeSampleBytes = 1024

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
        output = .allocate(byteCount: layout.tableSize(activationStreams: layout.planeCount) + layout.uncompressedSize, alignment: 64)
    }

    deinit {
        payload.deallocate()
        shuffled.deallocate()
        output.deallocate()
    }

    /// Runs of consecutive activation planes of one kind: compressible or noise-like.
    private func planeGroups(_ layout: BlockLayout) -> [(planes: Range<Int>, compressible: Bool)] {
        guard layout.planeBytes > 0 else { return [(0..<layout.planeCount, true)] }
        var counts = [UInt32](repeating: 0, count: layout.planeCount)
        let sampled = counts.withUnsafeMutableBufferPointer { counts in
            Bitshuffle.planeRunBytes(
                UnsafeRawBufferPointer(rebasing: shuffled[0..<(layout.planeBytes * layout.planeCount)]), planeBytes: layout.planeBytes,
                sample: Self.planeSampleBytes, into: counts)
        }
        var groups: [(planes: Range<Int>, compressible: Bool)] = []
        for plane in 0..<layout.planeCount {
            let compressible = Double(counts[plane]) >= Self.compressiblePlaneFraction * Double(sampled)
            if let last = groups.last, last.compressible == compressible {
                groups[groups.count - 1].planes = last.planes.lowerBound..<(plane + 1)
            } else {
                groups.append((plane..<(plane + 1), compressible))
            }
        }
        return groups
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
            // Little-endian host (checked at compile time in ShardFileFormat.swift): copy as is.
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

        // 3. Streams. Activation planes are grouped into runs of noise-like planes (stored as
        // is, LZ4 would not shrink them) and runs of planes with long runs of equal bits
        // (LZ4-compressed); then one stream per metadata column.
        var streams: [(range: Range<Int>, planes: Int, tryLZ4: Bool, metadata: Int?)] = []
        for group in planeGroups(layout) {
            streams.append((layout.activationRange(planes: group.planes), group.planes.count, group.compressible, nil))
        }
        for (index, column) in columns.enumerated() {
            streams.append((column.range, 0, skipLZ4[index] == 0, index))
        }
        let activationStreams = streams.count - BlockLayout.metadataStreamCount
        let tableSize = layout.tableSize(activationStreams: activationStreams)
        output.storeBytes(of: UInt32(activationStreams).littleEndian, toByteOffset: 0, as: UInt32.self)
        output.storeBytes(of: UInt32(0), toByteOffset: 4, as: UInt32.self)
        var cursor = tableSize
        var activationStored = BlockLayout.prefixSize + activationStreams * ShardFileFormat.streamEntrySize
        for (index, stream) in streams.enumerated() {
            let source = UnsafeRawBufferPointer(rebasing: shuffled[stream.range])
            var method = StreamMethod.stored
            var size = source.count
            if source.count > 1 && stream.tryLZ4 {
                let room = UnsafeMutableRawBufferPointer(rebasing: output[cursor..<(cursor + source.count - 1)])
                if let compressed = try? LZ4Block.compress(source, into: room) {
                    method = .lz4
                    size = compressed
                }
            }
            if let column = stream.metadata {
                // A metadata column that LZ4 could not shrink by 1% is stored without trying
                // for the next `skipBlocks` blocks, then probed again.
                if !stream.tryLZ4 {
                    skipLZ4[column] -= 1
                } else if size * 100 > source.count * 99 {
                    skipLZ4[column] = Self.skipBlocks
                }
            }
            if method == .stored, size > 0 {
                UnsafeMutableRawBufferPointer(rebasing: output[cursor..<(cursor + size)]).copyMemory(from: source)
            }
            let entry = BlockLayout.prefixSize + index * ShardFileFormat.streamEntrySize
            output.storeBytes(of: UInt32(size).littleEndian, toByteOffset: entry, as: UInt32.self)
            let word = UInt32(method.rawValue) | UInt32(stream.planes) << 8
            output.storeBytes(of: word.littleEndian, toByteOffset: entry + 4, as: UInt32.self)
            cursor += size
            if stream.metadata == nil { activationStored += size }
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

        // Stream table: activation streams (consecutive planes), then the metadata columns.
        guard stored.count >= BlockLayout.minimumStoredSize else {
            throw fail("block size", expected: "at least \(BlockLayout.minimumStoredSize) bytes", found: "\(stored.count) bytes")
        }
        var reader = ByteReader(stored)
        let activationStreams = Int(reader.read(UInt32.self)!)
        let reserved: UInt32 = reader.read()!
        guard activationStreams >= 1, activationStreams <= layout.planeCount, reserved == 0 else {
            throw fail("activation stream count", expected: "1...\(layout.planeCount) and a zero reserved field", found: "\(activationStreams), \(reserved)")
        }
        let tableSize = layout.tableSize(activationStreams: activationStreams)
        guard stored.count >= tableSize else {
            throw fail("stream table", expected: "\(tableSize) bytes", found: "\(stored.count) bytes")
        }
        // Names are only built for messages: formatting one per stream would cost more than
        // decoding a small stream.
        func streamName(_ index: Int) -> String {
            guard index < activationStreams else { return BlockLayout.metadataNames[index - activationStreams] }
            let first = streams[..<index].reduce(0) { $0 + $1.planes }
            return "activation planes \(first)..<\(first + streams[index].planes)"
        }
        var streams: [(method: StreamMethod, size: Int, range: Range<Int>, planes: Int)] = []
        streams.reserveCapacity(activationStreams + BlockLayout.metadataStreamCount)
        var total = tableSize
        var nextPlane = 0
        let columns = layout.metadataColumns
        for index in 0..<(activationStreams + BlockLayout.metadataStreamCount) {
            let size = Int(reader.read(UInt32.self)!)
            let word: UInt32 = reader.read()!
            let planes = Int(word >> 8 & 0xff)
            let range: Range<Int>
            if index < activationStreams {
                let last = index == activationStreams - 1
                guard word >> 16 == 0, planes >= 1, nextPlane + planes <= layout.planeCount, !last || nextPlane + planes == layout.planeCount else {
                    throw fail("planes of stream \(index)", expected: "consecutive planes ending at plane \(layout.planeCount)", found: "\(planes) from plane \(nextPlane)")
                }
                range = layout.activationRange(planes: nextPlane..<(nextPlane + planes))
                nextPlane += planes
            } else {
                guard word >> 8 == 0 else {
                    throw fail("reserved bits of stream \(index)", expected: "0", found: (word >> 8).hex)
                }
                range = columns[index - activationStreams].range
            }
            streams.append((.stored, size, range, planes))
            guard let method = StreamMethod(rawValue: UInt8(word & 0xff)) else {
                throw fail("storage method of stream \(index) (\(streamName(index)))", expected: "0 (stored) or 1 (LZ4)", found: "\(word & 0xff)")
            }
            if method == .stored, size != range.count {
                throw fail("size of stored stream \(index) (\(streamName(index)))", expected: "\(range.count) bytes", found: "\(size) bytes")
            }
            if method == .lz4, size == 0 || range.count > size * ShardFileFormat.maxLZ4Expansion + 16 {
                throw fail("size of LZ4 stream \(index) (\(streamName(index)))", expected: "1 or more bytes that can decode to \(range.count)", found: "\(size) bytes")
            }
            streams[index].method = method
            total += size
        }
        guard total == stored.count else {
            throw fail("sum of stream sizes", expected: "\(stored.count) bytes", found: "\(total) bytes")
        }

        // LZ4 streams decode into the shuffled buffer; stored streams are unshuffled where
        // they lie in the block, without a copy. `bases` holds where each stream's bytes are.
        reserve(max(layout.uncompressedSize, 1))
        var bases: [UnsafePointer<UInt8>] = []
        bases.reserveCapacity(streams.count)
        var cursor = tableSize
        for (index, stream) in streams.enumerated() {
            let source = UnsafeRawBufferPointer(rebasing: stored[cursor..<(cursor + stream.size)])
            let destination = UnsafeMutableRawBufferPointer(rebasing: shuffled[stream.range])
            switch stream.method {
            case .stored:
                bases.append((stored.baseAddress! + cursor).assumingMemoryBound(to: UInt8.self))
            case .lz4:
                do {
                    try LZ4Block.decompress(source, into: destination)
                } catch {
                    throw fail("LZ4 stream \(index) (\(streamName(index)))", expected: "\(destination.count) decoded bytes", found: "\(error)")
                }
                bases.append((shuffled.baseAddress! + stream.range.lowerBound).assumingMemoryBound(to: UInt8.self))
            }
            cursor += stream.size
        }

        // Unshuffle into the payload, then check its CRC.
        withUnsafeTemporaryAllocation(of: UnsafePointer<UInt8>?.self, capacity: 64) { planes in
            // Activations: plane p lies in the stream that holds it.
            var plane = 0
            var tail: UnsafeRawPointer?
            for index in 0..<activationStreams {
                for offset in 0..<streams[index].planes {
                    planes[plane] = bases[index] + offset * layout.planeBytes
                    plane += 1
                }
                if index == activationStreams - 1 { tail = UnsafeRawPointer(bases[index] + streams[index].planes * layout.planeBytes) }
            }
            Bitshuffle.unshuffle(
                planes: UnsafeBufferPointer(rebasing: planes[0..<layout.planeCount]), tail: tail, count: layout.activationCount,
                into: UnsafeMutableRawBufferPointer(rebasing: payload[0..<layout.activationBytes]), elementSize: layout.elementSize)
            // Metadata columns: each one stream.
            for (column, (range, size)) in columns.enumerated() {
                let base = bases[activationStreams + column]
                let count = info.rows, planeBytes = (count & ~7) / 8
                for p in 0..<(8 * size) { planes[p] = base + p * planeBytes }
                Bitshuffle.unshuffle(
                    planes: UnsafeBufferPointer(rebasing: planes[0..<(8 * size)]), tail: UnsafeRawPointer(base + (count & ~7) * size),
                    count: count, into: UnsafeMutableRawBufferPointer(rebasing: payload[range]), elementSize: size)
            }
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
