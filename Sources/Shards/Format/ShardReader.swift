import Glibc
import Platform

/// Random access to a shard file: the header, the block index, any row or block, the whole
/// file, and a full integrity check. Opening validates the trailer, header and index against
/// their CRC-32C; every block read checks the CRC of its stored bytes before decoding and the
/// CRC of its payload after. Corrupt, truncated or hostile files produce a ``ShardError``,
/// never a crash and never wrong rows, and no allocation exceeds what the file's size allows.
public final class ShardReader {
    public let path: String
    public let header: ShardHeader
    public let blocks: [ShardBlockInfo]
    public let fileSize: Int
    private let source: Source
    private let decoder: ShardBlockDecoder
    private var cached: (block: Int, rows: ShardRows)?

    /// Bytes the reader reads from: a file (pread) or memory.
    enum Source {
        case file(Int32)
        case memory([UInt8])
    }

    public convenience init(path: String) throws {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ShardError(path: path, part: .file, check: "open", expected: "a readable file", found: String(cString: strerror(errno)))
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            close(descriptor)
            throw ShardError(path: path, part: .file, check: "file type", expected: "a regular file", found: "something else")
        }
        do {
            try self.init(source: .file(descriptor), size: Int(info.st_size), path: path)
        } catch {
            close(descriptor)
            throw error
        }
    }

    /// Reads a shard held in memory (`name` appears in messages).
    public convenience init(bytes: [UInt8], name: String = "<memory>") throws {
        try self.init(source: .memory(bytes), size: bytes.count, path: name)
    }

    private init(source: Source, size: Int, path: String) throws {
        self.source = source
        self.path = path
        fileSize = size
        func fail(_ part: ShardError.Part, _ check: String, _ expected: String, _ found: String, _ detail: String = "") -> ShardError {
            ShardError(path: path, part: part, check: check, expected: expected, found: found, detail: detail)
        }
        let minimum = ShardFileFormat.fixedHeaderSize + ShardFileFormat.trailerSize
        guard size >= minimum else {
            if size >= 8, let prefix = try? Self.read(source, at: 0, count: min(size, 12), path: path), prefix.count >= 12 {
                _ = try prefix.withUnsafeBytes { try ShardHeader.encodedLength(prefix: $0, path: path) }
            }
            throw fail(.file, "file size", "at least \(minimum) bytes (header and trailer)", "\(size) bytes", "the file is truncated or not a shard")
        }
        // Magic and version first, for a clear message on foreign files.
        let prefix = try Self.read(source, at: 0, count: 12, path: path)
        let headerLength = try prefix.withUnsafeBytes { try ShardHeader.encodedLength(prefix: $0, path: path) }

        // Trailer.
        let trailerBytes = try Self.read(source, at: size - ShardFileFormat.trailerSize, count: ShardFileFormat.trailerSize, path: path)
        guard Array(trailerBytes[24..<32]) == ShardFileFormat.endMagic else {
            throw fail(.trailer, "end marker", "\"SHARDEND\"", describe(Array(trailerBytes[24..<32])), "the file is truncated or was not finished")
        }
        let (indexOffset, blockCount, metadataCRC, reserved) = trailerBytes.withUnsafeBytes { raw in
            var reader = ByteReader(raw)
            return (reader.read(UInt64.self)!, reader.read(UInt64.self)!, reader.read(UInt32.self)!, reader.read(UInt32.self)!)
        }
        guard reserved == 0 else { throw fail(.trailer, "reserved field", "0", "\(reserved)") }
        let indexEnd = size - ShardFileFormat.trailerSize
        guard blockCount <= UInt64(indexEnd / ShardFileFormat.indexEntrySize),
            indexOffset == UInt64(indexEnd - Int(blockCount) * ShardFileFormat.indexEntrySize)
        else {
            throw fail(.trailer, "index position", "an index that ends where the trailer starts (byte \(indexEnd))",
                       "offset \(indexOffset) with \(blockCount) entries")
        }
        guard headerLength >= ShardFileFormat.fixedHeaderSize, headerLength <= Int(indexOffset) else {
            throw fail(.header, "header length", "\(ShardFileFormat.fixedHeaderSize)...\(indexOffset) bytes", "\(headerLength)")
        }

        // One CRC covers header, index and trailer: check it before trusting any field.
        let headerBytes = try Self.read(source, at: 0, count: headerLength, path: path)
        let indexBytes = try Self.read(source, at: Int(indexOffset), count: Int(blockCount) * ShardFileFormat.indexEntrySize, path: path)
        var crc = CRC32C.checksum(headerBytes)
        crc = CRC32C.checksum(indexBytes, continuing: crc)
        crc = CRC32C.checksum(Array(trailerBytes[0..<16]), continuing: crc)
        guard crc == metadataCRC else {
            throw fail(.header, "CRC-32C of header, index and trailer", metadataCRC.hex + " (from the trailer)", crc.hex,
                       "the header or the block index is damaged")
        }
        let header = try headerBytes.withUnsafeBytes { try ShardHeader.parse($0, path: path) }
        guard Int(blockCount) == header.blockCount else {
            throw fail(.index, "block count", "\(header.blockCount) for \(header.rowCount) rows of \(header.blockRows)", "\(blockCount)")
        }

        // Index: contiguous blocks from the end of the header to the index.
        var blocks: [ShardBlockInfo] = []
        blocks.reserveCapacity(Int(blockCount))
        var offset = headerLength
        try indexBytes.withUnsafeBytes { raw in
            var reader = ByteReader(raw)
            for number in 0..<Int(blockCount) {
                let entryOffset = reader.read(UInt64.self)!
                let rows = Int(reader.read(UInt32.self)!)
                let storedSize = Int(reader.read(UInt32.self)!)
                let uncompressedSize = Int(reader.read(UInt32.self)!)
                let storedCRC: UInt32 = reader.read()!
                let dataCRC: UInt32 = reader.read()!
                let reserved: UInt32 = reader.read()!
                func entryFail(_ check: String, _ expected: String, _ found: String) -> ShardError {
                    fail(.block(number), "index entry: " + check, expected, found)
                }
                guard reserved == 0 else { throw entryFail("reserved field", "0", "\(reserved)") }
                guard entryOffset == UInt64(offset) else { throw entryFail("offset", "\(offset)", "\(entryOffset)") }
                let expectedRows = header.rows(inBlock: number)
                guard rows == expectedRows else { throw entryFail("rows", "\(expectedRows)", "\(rows)") }
                let expectedUncompressed = header.uncompressedSize(rows: rows)
                guard uncompressedSize == expectedUncompressed else {
                    throw entryFail("uncompressed size", "\(expectedUncompressed) bytes", "\(uncompressedSize) bytes")
                }
                let tableSize = BlockLayout.minimumStoredSize
                guard storedSize >= tableSize, storedSize <= Int(indexOffset) - offset else {
                    throw entryFail("stored size", "\(tableSize)...\(Int(indexOffset) - offset) bytes", "\(storedSize) bytes")
                }
                // LZ4 expands at most 255-fold: a bigger claim would only make us allocate.
                guard uncompressedSize <= storedSize * ShardFileFormat.maxLZ4Expansion else {
                    throw entryFail("uncompressed size", "at most \(ShardFileFormat.maxLZ4Expansion) × the stored size", "\(uncompressedSize) bytes from \(storedSize)")
                }
                blocks.append(
                    ShardBlockInfo(
                        offset: offset, firstRow: number * header.blockRows, rows: rows, storedSize: storedSize,
                        uncompressedSize: uncompressedSize, storedCRC: storedCRC, dataCRC: dataCRC))
                offset += storedSize
            }
        }
        guard offset == Int(indexOffset) else {
            throw fail(.index, "end of the last block", "byte \(indexOffset), where the index starts", "byte \(offset)")
        }
        self.header = header
        self.blocks = blocks
        decoder = ShardBlockDecoder(header: header, path: path)
    }

    deinit {
        if case .file(let descriptor) = source { close(descriptor) }
    }

    public var rowCount: Int { header.rowCount }

    /// Decodes block `number`, checking both of its CRCs.
    public func readBlock(_ number: Int) throws -> ShardRows {
        precondition(number >= 0 && number < blocks.count, "block \(number) is outside 0..<\(blocks.count)")
        if let cached, cached.block == number { return cached.rows }
        let info = blocks[number]
        let stored = try Self.read(source, at: info.offset, count: info.storedSize, path: path)
        var rows = ShardRows(
            width: header.width, activations: [Float](repeating: 0, count: info.rows * header.width),
            tokens: [Int32](repeating: 0, count: info.rows), documents: [Int64](repeating: 0, count: info.rows),
            windows: [Int64](repeating: 0, count: info.rows), positions: [Int32](repeating: 0, count: info.rows))
        try stored.withUnsafeBytes { storedBytes in
            try rows.activations.withUnsafeMutableBufferPointer { activations in
                try rows.tokens.withUnsafeMutableBufferPointer { tokens in
                    try rows.documents.withUnsafeMutableBufferPointer { documents in
                        try rows.windows.withUnsafeMutableBufferPointer { windows in
                            try rows.positions.withUnsafeMutableBufferPointer { positions in
                                try decoder.decode(
                                    storedBytes, block: number, info: info, activations: activations, tokens: tokens,
                                    documents: documents, windows: windows, positions: positions)
                            }
                        }
                    }
                }
            }
        }
        cached = (number, rows)
        return rows
    }

    /// Rows `range` (any range inside 0..<rowCount), decoding only the blocks it touches.
    public func readRows(_ range: Range<Int>) throws -> ShardRows {
        precondition(range.lowerBound >= 0 && range.upperBound <= rowCount, "rows \(range) are outside 0..<\(rowCount)")
        var result = ShardRows(width: header.width)
        guard !range.isEmpty else { return result }
        result.activations.reserveCapacity(range.count * header.width)
        var row = range.lowerBound
        while row < range.upperBound {
            let number = row / header.blockRows
            let block = try readBlock(number)
            let first = row - blocks[number].firstRow
            let last = min(range.upperBound - blocks[number].firstRow, block.count)
            result.append(block.slice(first..<last))
            row = blocks[number].firstRow + last
        }
        return result
    }

    /// One row.
    public func row(_ index: Int) throws -> ShardRows { try readRows(index..<(index + 1)) }

    /// Every row of the file.
    public func readAll() throws -> ShardRows { try readRows(0..<rowCount) }

    /// Checks every block's stored CRC, decodes it and checks its payload CRC. Returns every
    /// problem found (empty when the file is intact); the header, index and trailer were
    /// checked when the reader opened.
    public func verify() -> [ShardError] {
        var problems: [ShardError] = []
        for number in blocks.indices {
            do {
                cached = nil
                _ = try readBlock(number)
            } catch let error as ShardError {
                problems.append(error)
            } catch {
                problems.append(ShardError(path: path, part: .block(number), check: "read", expected: "a readable block", found: "\(error)"))
            }
        }
        cached = nil
        return problems
    }

    /// Opens and verifies `path`: the problems that make it unreadable or any block corrupt.
    public static func verify(path: String) -> [ShardError] {
        do {
            return try ShardReader(path: path).verify()
        } catch let error as ShardError {
            return [error]
        } catch {
            return [ShardError(path: path, part: .file, check: "open", expected: "a shard file", found: "\(error)")]
        }
    }

    private static func read(_ source: Source, at offset: Int, count: Int, path: String) throws -> [UInt8] {
        switch source {
        case .memory(let bytes):
            guard offset >= 0, count >= 0, offset <= bytes.count - count else {
                throw ShardError(path: path, part: .file, check: "read of bytes \(offset)..<\(offset + count)", expected: "bytes inside the file", found: "a \(bytes.count)-byte file")
            }
            return Array(bytes[offset..<(offset + count)])
        case .file(let descriptor):
            var result = [UInt8](repeating: 0, count: count)
            var done = 0
            while done < count {
                let got = result.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress! + done, count - done, off_t(offset + done)) }
                if got < 0 {
                    if errno == EINTR { continue }
                    throw ShardError(path: path, part: .file, check: "read of bytes \(offset)..<\(offset + count)", expected: "success", found: String(cString: strerror(errno)))
                }
                if got == 0 {
                    throw ShardError(path: path, part: .file, check: "read of bytes \(offset)..<\(offset + count)", expected: "\(count) bytes", found: "\(done) bytes; the file shrank while open")
                }
                done += got
            }
            return result
        }
    }
}
