import Foundation
import Platform
import Shards
import Testing

/// A temporary folder removed when the value is dropped... by the test's `defer`.
func temporaryFolder(_ label: String) throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Rows with activation-like values (a few large dimensions, many small), plus some specials.
func makeRows(_ count: Int, width: Int, seed: UInt64, specials: Bool = false) -> ShardRows {
    var random = SplitMix(state: seed)
    var rows = ShardRows(width: width)
    for row in 0..<count {
        for dimension in 0..<width {
            let unit = Double(random.next() >> 11) / Double(1 << 53) - 0.5
            let scale = dimension % 5 == 0 ? 8.0 : 0.7
            rows.activations.append(Float(unit * scale))
        }
        rows.tokens.append(Int32(truncatingIfNeeded: random.next() % 30_522))
        rows.documents.append(Int64(row / 37))
        rows.windows.append(Int64(row / 128) + 1_000_000)
        rows.positions.append(Int32(row % 128))
    }
    if specials && count * width >= 8 {
        let values: [Float] = [.nan, .infinity, -.infinity, 0, -0.0, .greatestFiniteMagnitude, Float(bitPattern: 1), 65_520]
        for (index, value) in values.enumerated() { rows.activations[(index * 7919) % (count * width)] = value }
    }
    return rows
}

/// What a reader must return for `rows` stored as `dtype`: the float32 values after rounding.
func storedValues(_ rows: ShardRows, _ dtype: ShardDType) -> [UInt32] {
    switch dtype {
    case .fp32: rows.activations.map(\.bitPattern)
    case .bf16: FloatConversion.floats(fromBFloat16: FloatConversion.bfloat16(rows.activations)).map(\.bitPattern)
    case .fp16: FloatConversion.floats(fromFloat16: FloatConversion.float16(rows.activations)).map(\.bitPattern)
    }
}

func sameRows(_ found: ShardRows, _ expected: ShardRows, _ dtype: ShardDType) -> Bool {
    found.width == expected.width && found.activations.map(\.bitPattern) == storedValues(expected, dtype)
        && found.tokens == expected.tokens && found.documents == expected.documents && found.windows == expected.windows
        && found.positions == expected.positions
}

let testModel = ModelIdentity(name: "all-MiniLM-L6-v2", configJSON: Array("{\"hidden_size\": 384}".utf8))

func header(_ dtype: ShardDType, width: Int, blockRows: Int, hook: String = "blocks.3.hook_resid_post", unit: UInt64 = 17) -> ShardHeader {
    ShardHeader(dtype: dtype, width: width, blockRows: blockRows, hook: hook, model: testModel, unitID: unit)
}

@discardableResult
func writeShard(_ rows: ShardRows, to path: String, _ dtype: ShardDType, blockRows: Int, hook: String = "blocks.3.hook_resid_post", unit: UInt64 = 17) throws -> ShardFileSummary {
    let writer = try ShardWriter(path: path, header: header(dtype, width: rows.width, blockRows: blockRows, hook: hook, unit: unit))
    try writer.append(rows)
    return try writer.finish()
}

@Suite struct ShardRoundTrip {
    @Test(arguments: ShardDType.allCases)
    func everyDtypeWidthAndRowCount(dtype: ShardDType) throws {
        let folder = try temporaryFolder("shard-roundtrip")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        for width in [7, 13, 384] {
            for count in [0, 1, 63, 64, 65, 300] {
                let rows = makeRows(count, width: width, seed: UInt64(width * 1000 + count), specials: true)
                let path = folder + "/w\(width)-n\(count).shard"
                let summary = try writeShard(rows, to: path, dtype, blockRows: 64)
                let reader = try ShardReader(path: path)
                #expect(reader.header.rowCount == count && reader.header.width == width && reader.header.dtype == dtype)
                #expect(reader.header.hook == "blocks.3.hook_resid_post" && reader.header.unitID == 17 && reader.header.model == testModel)
                #expect(reader.blocks.count == (count + 63) / 64)
                #expect(summary.bytes == reader.fileSize && summary.rows == count)
                #expect(ShardDirectory.fileSizeAndCRC(path)?.1 == summary.checksum, "manifest checksum is the CRC-32C of the whole file")
                let all = try reader.readAll()
                #expect(sameRows(all, rows, dtype), "\(dtype) width \(width) rows \(count)")
                #expect(reader.verify().isEmpty)
                if count > 0 {
                    // Random access: single rows and ranges across block boundaries.
                    for index in [0, count / 2, count - 1] {
                        #expect(sameRows(try reader.row(index), rows.slice(index..<(index + 1)), dtype))
                    }
                    let range = (count / 3)..<count
                    #expect(sameRows(try reader.readRows(range), rows.slice(range), dtype))
                }
            }
        }
    }

    @Test func appendingInPiecesWritesTheSameBytesAsOneAppend() throws {
        let folder = try temporaryFolder("shard-pieces")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let rows = makeRows(1000, width: 13, seed: 5)
        try writeShard(rows, to: folder + "/whole.shard", .bf16, blockRows: 100)
        let writer = try ShardWriter(path: folder + "/pieces.shard", header: header(.bf16, width: 13, blockRows: 100))
        var start = 0
        for size in [1, 99, 100, 250, 7, 43, 500] {
            try writer.append(rows.slice(start..<(start + size)))
            start += size
        }
        #expect(start == 1000)
        try writer.finish()
        #expect(try readFile(folder + "/whole.shard") == readFile(folder + "/pieces.shard"))
    }

    @Test func largeBlocksAndManyBlocks() throws {
        let folder = try temporaryFolder("shard-blocks")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let rows = makeRows(2000, width: 384, seed: 6)
        try writeShard(rows, to: folder + "/a.shard", .bf16, blockRows: ShardFileFormat.defaultBlockRows)
        try writeShard(rows, to: folder + "/b.shard", .fp16, blockRows: 3)
        #expect(sameRows(try ShardReader(path: folder + "/a.shard").readAll(), rows, .bf16))
        let many = try ShardReader(path: folder + "/b.shard")
        #expect(many.blocks.count == 667)
        #expect(sameRows(try many.readAll(), rows, .fp16))
    }

    @Test func noiseAndConstantActivationsBothRoundTrip() throws {
        // All planes noise (one stored stream), and all planes constant (one LZ4 stream).
        let folder = try temporaryFolder("shard-extremes")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var random = SplitMix(state: 8)
        var noise = makeRows(300, width: 384, seed: 8)
        noise.activations = noise.activations.map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: random.next())) }
        var constant = makeRows(300, width: 384, seed: 9)
        constant.activations = constant.activations.map { _ in 1.5 }
        for dtype in ShardDType.allCases {
            for (name, rows) in [("noise", noise), ("constant", constant)] {
                let path = folder + "/\(name)-\(dtype).shard"
                let summary = try writeShard(rows, to: path, dtype, blockRows: 128)
                #expect(sameRows(try ShardReader(path: path).readAll(), rows, dtype), "\(name) \(dtype)")
                if name == "constant" { #expect(summary.bytes < 300 * 384 / 20, "constant activations compress: \(summary.bytes) bytes") }
            }
        }
    }

    @Test func aWriterThatDoesNotFinishLeavesNothing() throws {
        let folder = try temporaryFolder("shard-abandon")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        do {
            let writer = try ShardWriter(path: folder + "/x.shard", header: header(.bf16, width: 8, blockRows: 4))
            try writer.append(makeRows(10, width: 8, seed: 1))
            writer.abandon()
        }
        do {
            let writer = try ShardWriter(path: folder + "/y.shard", header: header(.bf16, width: 8, blockRows: 4))
            try writer.append(makeRows(10, width: 8, seed: 1))
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).isEmpty)
        #expect(throws: ShardError.self) { try ShardWriter(path: folder + "/z.shard", header: header(.bf16, width: 0, blockRows: 4)) }
    }

    @Test func theByteLayoutMatchesTheSpecification() throws {
        let folder = try temporaryFolder("shard-layout")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let rows = makeRows(5, width: 3, seed: 2)
        try writeShard(rows, to: folder + "/s.shard", .bf16, blockRows: 4, hook: "h", unit: 0x0102)
        let bytes = try readFile(folder + "/s.shard")
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        func u64(_ at: Int) -> Int { u32(at) | u32(at + 4) << 32 }
        #expect(Array(bytes[0..<8]) == Array("ACTSHARD".utf8))
        #expect(u16(8) == 1)  // version
        let headerSize = u16(10)
        #expect(headerSize == 80 + 1 + testModel.name.utf8.count)
        #expect(bytes[12] == 2 && bytes[13] == 1)  // bf16, bitshuffle-lz4
        #expect(u32(16) == 3 && u32(20) == 4 && u64(24) == 5 && u64(32) == 0x0102)
        #expect(Array(bytes[40..<72]) == testModel.configSHA256)
        #expect(u16(72) == 1 && u16(74) == testModel.name.utf8.count && bytes[80] == UInt8(ascii: "h"))
        #expect(Array(bytes.suffix(8)) == Array("SHARDEND".utf8))
        let trailer = bytes.count - 32
        let indexOffset = u64(trailer)
        #expect(u64(trailer + 8) == 2 && indexOffset == trailer - 64)
        #expect(u64(indexOffset) == headerSize)  // block 0 follows the header
        #expect(u32(indexOffset + 8) == 4 && u32(indexOffset + 32 + 8) == 1)  // rows per block
        #expect(u32(indexOffset + 16) == 4 * (3 * 2 + 24))  // uncompressed size of block 0
        var metadata = Array(bytes[0..<headerSize]) + Array(bytes[indexOffset..<trailer]) + Array(bytes[trailer..<(trailer + 16)])
        #expect(UInt32(u32(trailer + 16)) == CRC32C.checksum(metadata))
        metadata[12] = 9
        #expect(UInt32(u32(trailer + 16)) != CRC32C.checksum(metadata))
        // Block 0: activation stream count, reserved, stream table, then the streams.
        let block0 = Array(bytes[headerSize..<u64(indexOffset + 32)])
        #expect(UInt32(u32(indexOffset + 20)) == CRC32C.checksum(block0))
        let activationStreams = u32(headerSize)
        #expect(activationStreams >= 1 && activationStreams <= 16 && u32(headerSize + 4) == 0)
        let entries = (0..<(activationStreams + 4)).map { headerSize + 8 + 8 * $0 }
        let planes = entries.map { Int(bytes[$0 + 5]) }
        #expect(planes.prefix(activationStreams).reduce(0, +) == 16 && planes.suffix(4) == [0, 0, 0, 0])
        #expect(8 + 8 * entries.count + entries.map { u32($0) }.reduce(0, +) == block0.count)
    }
}

@Suite struct ShardIntegrity {
    /// A small file with several blocks, its rows and its bytes.
    static func sample() throws -> (rows: ShardRows, bytes: [UInt8]) {
        let folder = try temporaryFolder("shard-sample")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let rows = makeRows(150, width: 13, seed: 11)
        try writeShard(rows, to: folder + "/s.shard", .bf16, blockRows: 40)
        return (rows, try readFile(folder + "/s.shard"))
    }

    /// The outcome of reading damaged bytes: problems from opening or verify, and whether a
    /// full read succeeded with the right rows, failed, or returned wrong rows.
    enum Outcome: Equatable { case reported, harmless, wrongData, reportedButReadable, unreportedFailure }

    static func outcome(_ bytes: [UInt8], original rows: ShardRows) -> Outcome {
        let reader: ShardReader
        do {
            reader = try ShardReader(bytes: bytes, name: "damaged.shard")
        } catch {
            return .reported
        }
        let problems = reader.verify()
        let read = try? ShardReader(bytes: bytes, name: "damaged.shard").readAll()
        switch (problems.isEmpty, read) {
        case (true, .some(let found)): return sameRows(found, rows, .bf16) ? .harmless : .wrongData
        case (false, .none): return .reported
        case (false, .some(let found)): return sameRows(found, rows, .bf16) ? .reportedButReadable : .wrongData
        case (true, .none): return .unreportedFailure
        }
    }

    @Test func everyPrefixOfAFileIsRejectedAndTheWholeFileIsRead() throws {
        // The reader fed byte by byte: each prefix is a truncated file.
        let (rows, bytes) = try Self.sample()
        for length in 0..<bytes.count {
            #expect(throws: ShardError.self, "prefix of \(length) bytes") { try ShardReader(bytes: Array(bytes[0..<length])) }
        }
        #expect(sameRows(try ShardReader(bytes: bytes).readAll(), rows, .bf16))
    }

    @Test func truncationAtEveryBlockBoundaryIsReportedByTheFileReader() throws {
        let folder = try temporaryFolder("shard-truncate")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let (_, bytes) = try Self.sample()
        let reader = try ShardReader(bytes: bytes)
        var cuts = reader.blocks.map(\.offset) + reader.blocks.map { $0.offset + $0.storedSize } + [bytes.count - 1, bytes.count - 32]
        var random = SplitMix(state: 77)
        cuts += (0..<20).map { _ in random.below(bytes.count) }
        for cut in Set(cuts) {
            let path = folder + "/cut-\(cut).shard"
            try AtomicFile.write(Array(bytes[0..<cut]), to: path)
            let problems = ShardReader.verify(path: path)
            #expect(!problems.isEmpty, "truncated at \(cut) of \(bytes.count)")
            #expect(problems.allSatisfy { $0.description.hasPrefix(path + ": ") })
        }
    }

    @Test func everySingleBitFlipIsReported() throws {
        let (rows, bytes) = try Self.sample()
        var outcomes: [Outcome: Int] = [:]
        for position in bytes.indices {
            var damaged = bytes
            damaged[position] ^= UInt8(1 << (position % 8))
            outcomes[Self.outcome(damaged, original: rows), default: 0] += 1
        }
        #expect(outcomes[.wrongData] == nil && outcomes[.unreportedFailure] == nil, "\(outcomes)")
        #expect(outcomes[.reported] == bytes.count, "every byte is covered by a check: \(outcomes)")
    }

    @Test func aThousandRandomByteCorruptions() throws {
        let (rows, bytes) = try Self.sample()
        var random = SplitMix(state: 1000)
        var outcomes: [Outcome: Int] = [:]
        for _ in 0..<1000 {
            var damaged = bytes
            let position = random.below(bytes.count)
            damaged[position] = UInt8(truncatingIfNeeded: random.next() | 1) ^ damaged[position]  // always a change
            outcomes[Self.outcome(damaged, original: rows), default: 0] += 1
        }
        // Each corruption is reported (by opening or by verify and the reader), or provably
        // harmless (identical rows); never wrong rows, never a failure verify missed.
        #expect(outcomes[.wrongData] == nil && outcomes[.unreportedFailure] == nil && outcomes[.reportedButReadable] == nil, "\(outcomes)")
        #expect((outcomes[.reported] ?? 0) + (outcomes[.harmless] ?? 0) == 1000)
    }

    /// Rewrites the CRCs of damaged blocks and of the header and index, as a hostile writer
    /// would, so the damage reaches the decoder.
    static func rechecksummed(_ bytes: [UInt8]) -> [UInt8] {
        var bytes = bytes
        func load(_ at: Int, _ count: Int) -> Int { (0..<count).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        func store(_ value: UInt32, at offset: Int) {
            for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt32(i))) }
        }
        let trailer = bytes.count - 32
        let indexOffset = load(trailer, 8), blockCount = load(trailer + 8, 8)
        for number in 0..<blockCount {
            let entry = indexOffset + 32 * number
            let offset = load(entry, 8), stored = load(entry + 12, 4)
            guard offset + stored <= indexOffset else { continue }  // a lying size: nothing to re-checksum
            store(CRC32C.checksum(Array(bytes[offset..<(offset + stored)])), at: entry + 20)
        }
        let metadata = Array(bytes[0..<load(10, 2)]) + Array(bytes[indexOffset..<(trailer + 16)])
        store(CRC32C.checksum(metadata), at: trailer + 16)
        return bytes
    }

    @Test func damageBehindValidStoredChecksumsNeverYieldsWrongRows() throws {
        let (rows, bytes) = try Self.sample()
        let reader = try ShardReader(bytes: bytes)
        let blockBytes = reader.blocks.flatMap { Array($0.offset..<($0.offset + $0.storedSize)) }
        var random = SplitMix(state: 31)
        var outcomes: [Outcome: Int] = [:]
        for _ in 0..<400 {
            var damaged = bytes
            for _ in 0..<(1 + random.below(3)) {
                let position = blockBytes[random.below(blockBytes.count)]
                damaged[position] ^= UInt8(truncatingIfNeeded: random.next() | 1)
            }
            outcomes[Self.outcome(Self.rechecksummed(damaged), original: rows), default: 0] += 1
        }
        // Stream tables, LZ4 data and bit planes may now lie; the payload CRC still catches it.
        #expect(outcomes[.wrongData] == nil && outcomes[.unreportedFailure] == nil, "\(outcomes)")
    }

    @Test func hostileHeadersAreRejectedBeforeAllocating() throws {
        let (_, bytes) = try Self.sample()
        // Claim a huge width and block size; with every checksum recomputed, the reader must
        // refuse from the index sizes instead of allocating gigabytes.
        let reader = try ShardReader(bytes: bytes)
        let indexOffset = bytes.count - 32 - 32 * reader.blocks.count
        let fields: [(offset: Int, value: UInt32)] = [
            (16, 1 << 20), (20, 1 << 20), (16, 0), (20, 0), (24, .max), (28, .max), (12, 7), (13, 0),
            (indexOffset + 16, 200 << 20),  // block 0 claims 200 MiB uncompressed
            (indexOffset + 8, 1 << 20),  // block 0 claims a million rows
            (indexOffset + 12, 1 << 30),  // block 0 claims a 1 GiB stored size
        ]
        for field in fields {
            var damaged = bytes
            for i in 0..<4 { damaged[field.offset + i] = UInt8(truncatingIfNeeded: field.value >> (8 * UInt32(i))) }
            let hostile = Self.rechecksummed(damaged)
            #expect(throws: ShardError.self, "field at \(field.offset) = \(field.value)") { try ShardReader(bytes: hostile) }
        }
        // A stream table entry that claims LZ4 data decoding to far more than the stream:
        // checked before any decoding.
        var damaged = bytes
        let block = reader.blocks[0]
        damaged[block.offset] = 1  // stream 0 stored size 1 (LZ4), cannot yield 8 KB
        damaged[block.offset + 1] = 0
        damaged[block.offset + 4] = 1
        let hostile = Self.rechecksummed(damaged)
        #expect(throws: ShardError.self) { try ShardReader(bytes: hostile).readBlock(0) }
    }

    @Test func problemsNameFileBlockExpectedAndFound() throws {
        let folder = try temporaryFolder("shard-message")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var (_, bytes) = try Self.sample()
        let reader = try ShardReader(bytes: bytes)
        let block = reader.blocks[2]
        bytes[block.offset + block.storedSize / 2] ^= 0x40
        let path = folder + "/damaged.shard"
        try AtomicFile.write(bytes, to: path)
        let problems = ShardReader.verify(path: path)
        #expect(problems.count == 1)
        let text = problems.first?.description ?? ""
        #expect(text.hasPrefix("\(path): block 2: CRC-32C of the stored block bytes: expected 0x"), "\(text)")
        #expect(text.contains("(from the index), found 0x") && text.contains("rows 80..<120"), "\(text)")
        #expect(problems.first?.part == .block(2))
        #expect(throws: ShardError.self) { try ShardReader(path: path).readBlock(2) }
        #expect((try? ShardReader(path: path).readBlock(1)) != nil, "undamaged blocks stay readable")

        // Not a shard at all.
        try AtomicFile.write(Array("hello, this is not a shard file; it is long enough to have a trailer.......".utf8) + [UInt8](repeating: 0, count: 80), to: path)
        #expect(ShardReader.verify(path: path).first?.description.contains("magic number: expected \"ACTSHARD\", found \"hello, t\"") == true)
    }
}
