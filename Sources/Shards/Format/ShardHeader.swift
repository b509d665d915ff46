/// Which model produced the activations: its name and the SHA-256 of its config.json.
public struct ModelIdentity: Equatable, Sendable {
    public var name: String
    /// 32 bytes; all zero when the config is unknown.
    public var configSHA256: [UInt8]

    public init(name: String, configSHA256: [UInt8] = [UInt8](repeating: 0, count: 32)) {
        precondition(configSHA256.count == 32, "a SHA-256 digest has 32 bytes, not \(configSHA256.count)")
        self.name = name
        self.configSHA256 = configSHA256
    }

    /// The identity of a model whose config.json holds `configJSON`.
    public init(name: String, configJSON: [UInt8]) {
        self.init(name: name, configSHA256: SHA256.hash(configJSON))
    }

    public var configSHA256Hex: String { SHA256.hex(configSHA256) }
}

/// The header of a shard file: everything needed to interpret its blocks.
public struct ShardHeader: Equatable, Sendable {
    public var version: UInt16 = ShardFileFormat.version
    public var dtype: ShardDType
    public var codec: ShardCodec = .bitshuffleLZ4
    /// Activation width d.
    public var width: Int
    /// Rows per block; every block but the last holds exactly this many.
    public var blockRows: Int
    public var rowCount: Int
    /// TransformerLens-style hook name, e.g. `blocks.3.hook_resid_post`.
    public var hook: String
    public var model: ModelIdentity
    /// The work unit that produced this shard.
    public var unitID: UInt64

    public init(
        dtype: ShardDType, width: Int, blockRows: Int = ShardFileFormat.defaultBlockRows, rowCount: Int = 0, hook: String,
        model: ModelIdentity, unitID: UInt64
    ) {
        self.dtype = dtype
        self.width = width
        self.blockRows = blockRows
        self.rowCount = rowCount
        self.hook = hook
        self.model = model
        self.unitID = unitID
    }

    public var blockCount: Int { rowCount == 0 ? 0 : (rowCount - 1) / blockRows + 1 }
    /// Upper bound of a block's stream-table bytes (one activation stream per bit plane).
    public var maxStreamTableSize: Int { 8 + (8 * dtype.elementSize + 4) * ShardFileFormat.streamEntrySize }
    /// Bytes of header on disk.
    public var encodedSize: Int { ShardFileFormat.fixedHeaderSize + hook.utf8.count + model.name.utf8.count }

    /// Rows in block `block`.
    public func rows(inBlock block: Int) -> Int { min(blockRows, rowCount - block * blockRows) }

    /// Uncompressed bytes of a block of `rows` rows (activations in the stored dtype + metadata).
    public func uncompressedSize(rows: Int) -> Int {
        rows * (width * dtype.elementSize + ShardFileFormat.metadataBytesPerRow)
    }

    /// Why these values cannot be written or read, or nil when they are valid.
    public func problem() -> (field: String, expected: String, found: String)? {
        if width < 1 || width > ShardFileFormat.maxWidth { return ("width", "1...\(ShardFileFormat.maxWidth)", "\(width)") }
        if blockRows < 1 || blockRows > ShardFileFormat.maxBlockRows {
            return ("block rows", "1...\(ShardFileFormat.maxBlockRows)", "\(blockRows)")
        }
        if blockRows * width * dtype.elementSize > ShardFileFormat.maxBlockActivationBytes {
            return ("block size", "block rows × width × element size ≤ \(ShardFileFormat.maxBlockActivationBytes) bytes",
                    "\(blockRows) × \(width) × \(dtype.elementSize)")
        }
        if rowCount < 0 { return ("row count", "≥ 0", "\(rowCount)") }
        if hook.utf8.isEmpty || hook.utf8.count > ShardFileFormat.maxNameBytes {
            return ("hook name length", "1...\(ShardFileFormat.maxNameBytes) bytes", "\(hook.utf8.count)")
        }
        if model.name.utf8.count > ShardFileFormat.maxNameBytes {
            return ("model name length", "0...\(ShardFileFormat.maxNameBytes) bytes", "\(model.name.utf8.count)")
        }
        return nil
    }

    /// The header's bytes (format in the <doc:ShardFormat> article).
    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(ShardFileFormat.magic)
        writer.append(version)
        writer.append(UInt16(encodedSize))
        writer.append(dtype.rawValue)
        writer.append(codec.rawValue)
        writer.append(UInt16(0))
        writer.append(UInt32(width))
        writer.append(UInt32(blockRows))
        writer.append(UInt64(rowCount))
        writer.append(unitID)
        writer.append(model.configSHA256)
        writer.append(UInt16(hook.utf8.count))
        writer.append(UInt16(model.name.utf8.count))
        writer.append(UInt32(0))
        writer.append(Array(hook.utf8))
        writer.append(Array(model.name.utf8))
        return writer.bytes
    }

    /// The header length field of a header's first 12 bytes, after checking magic and version.
    static func encodedLength(prefix: UnsafeRawBufferPointer, path: String) throws -> Int {
        var reader = ByteReader(prefix)
        guard let magic = reader.read(count: 8), magic == ShardFileFormat.magic else {
            throw ShardError(
                path: path, part: .header, check: "magic number", expected: "\"ACTSHARD\"",
                found: describe(Array(prefix.prefix(8))), detail: "this is not an actcluster shard file")
        }
        let version: UInt16 = reader.read()!
        guard version == ShardFileFormat.version else {
            throw ShardError(
                path: path, part: .header, check: "format version", expected: "\(ShardFileFormat.version)", found: "\(version)",
                detail: version > ShardFileFormat.version ? "written by a newer actcluster; upgrade to read it" : "")
        }
        return Int(reader.read(UInt16.self)!)
    }

    /// Parses and validates a whole header.
    static func parse(_ bytes: UnsafeRawBufferPointer, path: String) throws -> ShardHeader {
        func fail(_ check: String, _ expected: String, _ found: String) -> ShardError {
            ShardError(path: path, part: .header, check: check, expected: expected, found: found)
        }
        guard bytes.count >= ShardFileFormat.fixedHeaderSize else {
            throw fail("header length", "at least \(ShardFileFormat.fixedHeaderSize) bytes", "\(bytes.count)")
        }
        let length = try encodedLength(prefix: bytes, path: path)
        guard length == bytes.count else { throw fail("header length", "\(bytes.count)", "\(length)") }
        var reader = ByteReader(bytes)
        _ = reader.read(count: 12)
        let dtypeCode: UInt8 = reader.read()!
        let codecCode: UInt8 = reader.read()!
        let reserved16: UInt16 = reader.read()!
        let width: UInt32 = reader.read()!
        let blockRows: UInt32 = reader.read()!
        let rowCount: UInt64 = reader.read()!
        let unitID: UInt64 = reader.read()!
        let digest = reader.read(count: 32)!
        let hookLength = Int(reader.read(UInt16.self)!)
        let modelLength = Int(reader.read(UInt16.self)!)
        let reserved32: UInt32 = reader.read()!
        guard let dtype = ShardDType(rawValue: dtypeCode) else { throw fail("dtype code", "1 (fp32), 2 (bf16) or 3 (fp16)", "\(dtypeCode)") }
        guard let codec = ShardCodec(rawValue: codecCode) else { throw fail("codec code", "1 (bitshuffle-lz4)", "\(codecCode)") }
        guard reserved16 == 0, reserved32 == 0 else { throw fail("reserved header fields", "0", "\(reserved16), \(reserved32)") }
        guard rowCount <= UInt64(Int.max / 2) else { throw fail("row count", "a count below 2^62", "\(rowCount)") }
        guard ShardFileFormat.fixedHeaderSize + hookLength + modelLength == length else {
            throw fail("name lengths", "\(length - ShardFileFormat.fixedHeaderSize) bytes of names", "\(hookLength) + \(modelLength)")
        }
        guard let hookBytes = reader.read(count: hookLength), let hook = String(validating: hookBytes, as: UTF8.self),
            let modelBytes = reader.read(count: modelLength), let modelName = String(validating: modelBytes, as: UTF8.self)
        else { throw fail("hook and model names", "valid UTF-8", "invalid bytes") }
        var header = ShardHeader(
            dtype: dtype, width: Int(width), blockRows: Int(blockRows), rowCount: Int(rowCount), hook: hook,
            model: ModelIdentity(name: modelName, configSHA256: digest), unitID: unitID)
        header.codec = codec
        if let problem = header.problem() { throw fail(problem.field, problem.expected, problem.found) }
        return header
    }
}

/// One block's entry in the footer index.
public struct ShardBlockInfo: Equatable, Sendable {
    /// Byte offset of the block in the file.
    public var offset: Int
    public var firstRow: Int
    public var rows: Int
    /// Bytes of the block on disk (stream table and streams).
    public var storedSize: Int
    /// Bytes of the block's payload before bitshuffle and LZ4.
    public var uncompressedSize: Int
    /// CRC-32C of the block's bytes on disk.
    public var storedCRC: UInt32
    /// CRC-32C of the uncompressed payload.
    public var dataCRC: UInt32

    public init(offset: Int, firstRow: Int, rows: Int, storedSize: Int, uncompressedSize: Int, storedCRC: UInt32, dataCRC: UInt32) {
        self.offset = offset
        self.firstRow = firstRow
        self.rows = rows
        self.storedSize = storedSize
        self.uncompressedSize = uncompressedSize
        self.storedCRC = storedCRC
        self.dataCRC = dataCRC
    }

    func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(UInt64(offset))
        writer.append(UInt32(rows))
        writer.append(UInt32(storedSize))
        writer.append(UInt32(uncompressedSize))
        writer.append(storedCRC)
        writer.append(dataCRC)
        writer.append(UInt32(0))
        return writer.bytes
    }
}

/// The last 32 bytes of a shard file.
struct ShardTrailer: Equatable {
    var indexOffset: Int
    var blockCount: Int
    /// CRC-32C of header ‖ index ‖ the trailer's first 16 bytes.
    var metadataCRC: UInt32

    func encodedPrefix() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(UInt64(indexOffset))
        writer.append(UInt64(blockCount))
        return writer.bytes
    }

    func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.append(encodedPrefix())
        writer.append(metadataCRC)
        writer.append(UInt32(0))
        writer.append(ShardFileFormat.endMagic)
        return writer.bytes
    }
}

/// Printable form of a few raw bytes for messages: text when it is plain ASCII, else hex.
func describe(_ bytes: [UInt8]) -> String {
    if !bytes.isEmpty, bytes.allSatisfy({ $0 >= 0x20 && $0 < 0x7f }) { return "\"" + String(decoding: bytes, as: UTF8.self) + "\"" }
    return bytes.isEmpty ? "nothing" : bytes.map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
}
