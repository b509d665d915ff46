/// Why LZ4 could not compress or decompress. Corrupt input always ends here, never in a crash.
public enum LZ4Error: Error, Equatable, CustomStringConvertible {
    case inputTooLarge(size: Int, limit: Int)
    case destinationTooSmall(available: Int)
    /// A block did not decode to exactly the expected size: it is corrupt or truncated.
    case corruptBlock(expectedSize: Int, detail: String)
    /// The frame library rejected the input (bad magic, checksum mismatch, …).
    case corruptFrame(String)
    /// The input ended in the middle of a frame.
    case truncatedFrame
    case outputLimitExceeded(limit: Int)
    case libraryFailure(String)

    public var description: String {
        switch self {
        case .inputTooLarge(let size, let limit):
            "LZ4 input of \(size) bytes exceeds the block limit of \(limit) bytes; split it into smaller blocks"
        case .destinationTooSmall(let available):
            "LZ4 output buffer of \(available) bytes is too small; size it with LZ4Block.compressBound"
        case .corruptBlock(let expectedSize, let detail):
            "LZ4 block is corrupt or truncated: expected \(expectedSize) decompressed bytes, \(detail)"
        case .corruptFrame(let name):
            "LZ4 frame is corrupt: \(name)"
        case .truncatedFrame:
            "LZ4 frame is truncated: the input ended before the frame's end mark"
        case .outputLimitExceeded(let limit):
            "LZ4 frame decompresses to more than the allowed \(limit) bytes; refusing to continue"
        case .libraryFailure(let message):
            "LZ4 library failure: \(message)"
        }
    }
}
