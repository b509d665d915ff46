import Foundation
import LZ4
import Testing

/// Deterministic bytes: xorshift64* so failures reproduce.
struct Noise {
    var state: UInt64
    init(seed: UInt64) { state = seed | 1 }
    mutating func next() -> UInt64 {
        state ^= state >> 12; state ^= state << 25; state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func bytes(_ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { raw in
            var index = 0
            while index + 8 <= count { raw.storeBytes(of: next(), toByteOffset: index, as: UInt64.self); index += 8 }
            while index < count { raw[index] = UInt8(truncatingIfNeeded: next()); index += 1 }
        }
        return out
    }
}

enum Samples {
    static let names = ["empty", "one byte", "random 100 KiB", "compressible 100 KiB", "activation-like 256 KiB"]
    static func make(_ name: String) -> [UInt8] {
        var noise = Noise(seed: 42)
        switch name {
        case "empty": return []
        case "one byte": return [0xA7]
        case "random 100 KiB": return noise.bytes(100 * 1024)
        case "compressible 100 KiB":
            return Array(String(repeating: "the residual stream carries features; ", count: 2800).utf8.prefix(100 * 1024))
        default:
            // bf16-like: random low byte, a few repeated exponent patterns in the high byte.
            return (0..<(256 * 1024)).map { index in
                index % 2 == 0 ? UInt8(truncatingIfNeeded: noise.next()) : [0x3F, 0xBF, 0x3E, 0xBE][Int(noise.next() % 4)]
            }
        }
    }
}

@Suite struct BlockFormat {
    @Test(arguments: Samples.names)
    func roundTrip(_ name: String) throws {
        let input = Samples.make(name)
        let compressed = try LZ4Block.compress(input)
        #expect(compressed.count <= LZ4Block.compressBound(input.count))
        #expect(try LZ4Block.decompress(compressed, uncompressedSize: input.count) == input)
        if name == "compressible 100 KiB" { #expect(compressed.count < input.count / 10) }
    }

    @Test func roundTrip64MiB() throws {
        var noise = Noise(seed: 7)
        var input = noise.bytes(32 << 20)
        input += Array(repeating: 0x5A, count: 16 << 20)
        input += Array(String(repeating: "sparse autoencoders ", count: (16 << 20) / 20).utf8)
        let compressed = try LZ4Block.compress(input)
        #expect(try LZ4Block.decompress(compressed, uncompressedSize: input.count) == input)
    }

    @Test func tooSmallDestinationIsAnError() throws {
        let input = Samples.make("random 100 KiB")
        var small = [UInt8](repeating: 0, count: 1000)
        #expect(throws: LZ4Error.destinationTooSmall(available: 1000)) {
            try input.withUnsafeBytes { src in
                try small.withUnsafeMutableBytes { dst in _ = try LZ4Block.compress(src, into: dst) }
            }
        }
    }

    @Test func everyTruncationIsAnError() throws {
        for name in Samples.names where name != "empty" {
            let input = Samples.make(name)
            let compressed = try LZ4Block.compress(input)
            let step = max(1, compressed.count / 200)
            for length in stride(from: 0, to: compressed.count, by: step) {
                #expect(throws: LZ4Error.self, "\(name) cut at \(length)") {
                    try LZ4Block.decompress(Array(compressed.prefix(length)), uncompressedSize: input.count)
                }
            }
        }
    }

    @Test func wrongExpectedSizeIsAnError() throws {
        let input = Samples.make("compressible 100 KiB")
        let compressed = try LZ4Block.compress(input)
        #expect(throws: LZ4Error.self) { try LZ4Block.decompress(compressed, uncompressedSize: input.count + 1) }
        #expect(throws: LZ4Error.self) { try LZ4Block.decompress(compressed, uncompressedSize: input.count - 1) }
    }

    /// The block format has no checksum, so a flipped literal can decode "successfully";
    /// what must hold is no crash and never output of the wrong size. (Shards add CRC-32C.)
    @Test func corruptedBlocksNeverCrash() throws {
        let input = Samples.make("activation-like 256 KiB")
        let compressed = try LZ4Block.compress(input)
        var noise = Noise(seed: 99)
        var detected = 0
        for _ in 0..<1000 {
            var damaged = compressed
            let position = Int(noise.next() % UInt64(damaged.count))
            damaged[position] ^= UInt8(truncatingIfNeeded: noise.next() % 255 + 1)
            do {
                let output = try LZ4Block.decompress(damaged, uncompressedSize: input.count)
                #expect(output.count == input.count)
            } catch {
                detected += 1
            }
        }
        #expect(detected > 0)
    }
}

@Suite struct FrameFormat {
    @Test(arguments: Samples.names)
    func roundTrip(_ name: String) throws {
        let input = Samples.make(name)
        let frame = try LZ4Frame.compress(input)
        #expect(Array(frame.prefix(4)) == [0x04, 0x22, 0x4D, 0x18], "LZ4 frame magic")
        #expect(try LZ4Frame.decompress(frame) == input)
    }

    @Test func roundTrip64MiBStreamedInChunks() throws {
        var noise = Noise(seed: 11)
        let input = noise.bytes(24 << 20) + Array(repeating: 0, count: 40 << 20)
        let encoder = try LZ4FrameEncoder()
        var frame: [UInt8] = []
        for start in stride(from: 0, to: input.count, by: 3 << 20) {
            try encoder.compress(Array(input[start..<min(input.count, start + (3 << 20))]), appendingTo: &frame)
        }
        try encoder.finish(appendingTo: &frame)
        #expect(try LZ4Frame.decompress(frame) == input)
    }

    @Test func decoderFedByteByByteMatchesBulk() throws {
        let input = Samples.make("compressible 100 KiB") + Samples.make("random 100 KiB")
        let frame = try LZ4Frame.compress(input)
        let decoder = try LZ4FrameDecoder()
        var output: [UInt8] = []
        for byte in frame {
            try decoder.decompress([byte], appendingTo: &output)
        }
        try decoder.finish()
        #expect(output == input)
    }

    @Test func concatenatedFramesDecodeInOrder() throws {
        let a = Samples.make("one byte"), b = Samples.make("compressible 100 KiB")
        #expect(try LZ4Frame.decompress(try LZ4Frame.compress(a) + LZ4Frame.compress(b)) == a + b)
    }

    @Test func everyTruncationIsReported() throws {
        let input = Samples.make("activation-like 256 KiB")
        let frame = try LZ4Frame.compress(input)
        for length in 0..<frame.count where length % 97 == 0 || length > frame.count - 16 {
            #expect(throws: LZ4Error.self, "cut at \(length) of \(frame.count)") {
                _ = try LZ4Frame.decompress(Array(frame.prefix(length)))
            }
        }
    }

    /// With block and content checksums every corruption is caught or harmless.
    @Test func randomCorruptionsAreDetectedOrHarmless() throws {
        let input = Samples.make("activation-like 256 KiB")
        let frame = try LZ4Frame.compress(input)
        var noise = Noise(seed: 1234)
        var detected = 0
        for _ in 0..<1000 {
            var damaged = frame
            let position = Int(noise.next() % UInt64(damaged.count))
            damaged[position] ^= UInt8(truncatingIfNeeded: noise.next() % 255 + 1)
            do {
                let output = try LZ4Frame.decompress(damaged, maxOutputBytes: input.count * 2)
                #expect(output == input, "corruption at byte \(position) decoded to wrong data")
            } catch {
                detected += 1
            }
        }
        #expect(detected > 900)
    }

    @Test func outputLimitStopsDecompressionBombs() throws {
        let frame = try LZ4Frame.compress([UInt8](repeating: 0, count: 8 << 20))
        #expect(frame.count < 64 << 10)
        #expect(throws: LZ4Error.outputLimitExceeded(limit: 1 << 20)) {
            _ = try LZ4Frame.decompress(frame, maxOutputBytes: 1 << 20)
        }
    }

    @Test func garbageIsACorruptFrame() throws {
        #expect(throws: LZ4Error.truncatedFrame) { _ = try LZ4Frame.decompress([]) }
        let error = try #require(throws: LZ4Error.self) { _ = try LZ4Frame.decompress(Array("not lz4 at all".utf8)) }
        guard case .corruptFrame = error else { Issue.record("expected corruptFrame, got \(error)"); return }
    }

    /// Interoperability with the reference `lz4` command-line tool, both directions.
    @Test func interoperatesWithTheLz4Tool() throws {
        let input = Samples.make("activation-like 256 KiB")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("lz4-interop-\(getpid())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let ours = directory.appendingPathComponent("ours.lz4"), raw = directory.appendingPathComponent("raw")
        try Data(try LZ4Frame.compress(input)).write(to: ours)
        try Data(input).write(to: raw)
        try run(["lz4", "-d", "-f", "-q", ours.path, directory.appendingPathComponent("decoded").path])
        #expect(try Data(contentsOf: directory.appendingPathComponent("decoded")) == Data(input))
        try run(["lz4", "-f", "-q", "--content-size", raw.path, directory.appendingPathComponent("theirs.lz4").path])
        let theirs = [UInt8](try Data(contentsOf: directory.appendingPathComponent("theirs.lz4")))
        #expect(try LZ4Frame.decompress(theirs) == input)
    }

    private func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "\(arguments.joined(separator: " ")) failed; is Debian's lz4 installed?")
    }
}
