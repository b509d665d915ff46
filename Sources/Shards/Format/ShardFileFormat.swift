// Shard files are little-endian, and the codec copies integer and float columns between
// memory and files as they are.
#if _endian(big)
#error("the shard codec assumes a little-endian host")
#endif

/// Constants of the shard file format, version 1. The article <doc:ShardFormat> in this module's
/// documentation catalog is the specification; this file is its only copy in code.
public enum ShardFileFormat {
    /// "ACTSHARD": the first 8 bytes of every shard file.
    public static let magic: [UInt8] = Array("ACTSHARD".utf8)
    /// "SHARDEND": the last 8 bytes of every shard file.
    public static let endMagic: [UInt8] = Array("SHARDEND".utf8)
    public static let version: UInt16 = 1

    /// Bytes of the fixed part of the header; the hook and model names follow it.
    public static let fixedHeaderSize = 80
    public static let indexEntrySize = 32
    public static let trailerSize = 32
    /// Bytes of one stream-table entry at the start of each block.
    public static let streamEntrySize = 8
    /// Bytes of row metadata per row: token (4), document (8), window (8), position (4).
    public static let metadataBytesPerRow = 24

    public static let maxWidth = 1 << 20
    public static let maxBlockRows = 1 << 20
    /// Upper bound of one block's activation bytes (block rows × width × element size).
    public static let maxBlockActivationBytes = 256 << 20
    public static let maxNameBytes = 1024
    /// LZ4 cannot expand data by more than this factor; a block or stream that claims more
    /// is corrupt (and would otherwise make a reader allocate far beyond the file's size).
    public static let maxLZ4Expansion = 255

    public static let defaultBlockRows = 256
    /// File name suffix of shard files.
    public static let fileExtension = "shard"
}

/// How activations are stored.
public enum ShardDType: UInt8, CaseIterable, Sendable, CustomStringConvertible {
    case fp32 = 1
    case bf16 = 2
    case fp16 = 3

    public var elementSize: Int { self == .fp32 ? 4 : 2 }
    public var name: String {
        switch self {
        case .fp32: "fp32"
        case .bf16: "bf16"
        case .fp16: "fp16"
        }
    }
    public var description: String { name }

    public init?(name: String) {
        guard let match = Self.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = match
    }
}

/// How blocks are encoded.
public enum ShardCodec: UInt8, Sendable, CustomStringConvertible {
    /// Per block: activations in dimension-major order, bitshuffled by element size and cut
    /// into one stream per element byte; each row-metadata column bitshuffled on its own;
    /// every stream LZ4-compressed, or stored when LZ4 does not make it smaller.
    case bitshuffleLZ4 = 1

    public var description: String { "bitshuffle-lz4" }
}

/// The rows of a block, a range or a whole shard: activations as float32 plus the metadata
/// that leads every row back to its text.
public struct ShardRows: Sendable {
    public var width: Int
    /// Row-major `[count, width]`.
    public var activations: [Float]
    /// Token id of each row.
    public var tokens: [Int32]
    /// 0-based index of the row's document in the corpus, counting across files in order.
    public var documents: [Int64]
    /// Context window of the row; unique across a collection.
    public var windows: [Int64]
    /// 0-based position of the row in its window.
    public var positions: [Int32]

    public init(width: Int, activations: [Float] = [], tokens: [Int32] = [], documents: [Int64] = [], windows: [Int64] = [], positions: [Int32] = []) {
        self.width = width
        self.activations = activations
        self.tokens = tokens
        self.documents = documents
        self.windows = windows
        self.positions = positions
    }

    public var count: Int { tokens.count }

    /// The columns agree on the row count.
    public var isConsistent: Bool {
        activations.count == tokens.count * width && documents.count == tokens.count
            && windows.count == tokens.count && positions.count == tokens.count
    }

    public mutating func append(_ other: ShardRows) {
        precondition(other.width == width, "cannot append rows of width \(other.width) to rows of width \(width)")
        activations += other.activations
        tokens += other.tokens
        documents += other.documents
        windows += other.windows
        positions += other.positions
    }

    /// Rows `range` of these rows.
    public func slice(_ range: Range<Int>) -> ShardRows {
        ShardRows(
            width: width, activations: Array(activations[(range.lowerBound * width)..<(range.upperBound * width)]),
            tokens: Array(tokens[range]), documents: Array(documents[range]), windows: Array(windows[range]),
            positions: Array(positions[range]))
    }
}
