import Foundation
import SafeTensors
import Shards
import Testing

/// Deterministic pseudo-random bytes (SplitMix64), so failures reproduce.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func bytes(_ count: Int) -> [UInt8] { (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) } }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
}

let fastPaths: [KernelImplementation] = [.portable, .sse42, .avx2, .avx512, .avx512GFNI]

@Suite struct CRC32CKernel {
    @Test func knownVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([]) == 0)
        // RFC 3720 (iSCSI) test patterns.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        for implementation in KernelImplementation.allCases where implementation.isAvailable(for: .crc32c) {
            #expect(CRC32C.checksum(Array("123456789".utf8), implementation: implementation) == 0xE306_9283, "\(implementation)")
        }
    }

    @Test func fastPathsMatchTheReferenceAtEverySizeAndAlignment() {
        var random = SplitMix(state: 1)
        let data = random.bytes(70_000)
        // Sizes around the 3 × 256 and 3 × 8192 stride boundaries, powers of two and odd sizes.
        let sizes = [0, 1, 7, 8, 9, 63, 64, 255, 256, 257, 271, 511, 512, 767, 768, 769, 1000, 4096, 4111, 24_575, 24_576, 24_577, 32_768, 65_537]
        for implementation in fastPaths where implementation.isAvailable(for: .crc32c) {
            for size in sizes {
                for offset in [0, 1, 3, 7] where offset + size <= data.count {
                    data.withUnsafeBytes { raw in
                        let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + size)])
                        let expected = CRC32C.checksum(slice, implementation: .reference)
                        #expect(CRC32C.checksum(slice, implementation: implementation) == expected, "\(implementation) size \(size) offset \(offset)")
                        // Continuing from an earlier CRC.
                        let continued = CRC32C.checksum(slice, continuing: 0x1234_5678, implementation: .reference)
                        #expect(CRC32C.checksum(slice, continuing: 0x1234_5678, implementation: implementation) == continued, "\(implementation) size \(size) continued")
                    }
                }
            }
        }
    }

    @Test func continuesAndCombines() {
        var random = SplitMix(state: 2)
        let data = random.bytes(10_001)
        let whole = CRC32C.checksum(data)
        for split in [0, 1, 5000, 9_999, 10_001] {
            let a = Array(data[..<split]), b = Array(data[split...])
            #expect(CRC32C.checksum(b, continuing: CRC32C.checksum(a)) == whole)
            #expect(CRC32C.combine(CRC32C.checksum(a), CRC32C.checksum(b), lengthOfB: b.count) == whole)
        }
    }

    @Test func theDispatcherPicksTheFastPathHere() {
        if KernelImplementation.avx512.isAvailable(for: .crc32c) {
            #expect(KernelImplementation.automatic.resolved(for: .crc32c) == .avx512)
        } else if KernelImplementation.sse42.isAvailable(for: .crc32c) {
            #expect(KernelImplementation.automatic.resolved(for: .crc32c) == .sse42)
        }
        if KernelImplementation.avx512GFNI.isAvailable(for: .bitshuffle) {
            #expect(KernelImplementation.automatic.resolved(for: .bitshuffle) == .avx512GFNI)
        } else if KernelImplementation.avx512.isAvailable(for: .bitshuffle) {
            #expect(KernelImplementation.automatic.resolved(for: .bitshuffle) == .avx512)
        }
    }
}

@Suite struct BitshuffleKernel {
    func shuffled(_ input: [UInt8], _ size: Int, _ implementation: KernelImplementation) -> [UInt8] {
        var output = [UInt8](repeating: 0xAA, count: input.count)
        input.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { Bitshuffle.shuffle(source, into: $0, elementSize: size, implementation: implementation) }
        }
        return output
    }

    func unshuffled(_ input: [UInt8], _ size: Int, _ implementation: KernelImplementation) -> [UInt8] {
        var output = [UInt8](repeating: 0x55, count: input.count)
        input.withUnsafeBytes { source in
            output.withUnsafeMutableBytes { Bitshuffle.unshuffle(source, into: $0, elementSize: size, implementation: implementation) }
        }
        return output
    }

    @Test func referenceLayoutIsBlosc() {
        // 8 two-byte elements: element e = 0x0100 | e. Plane 8j+k, bit e = bit k of byte j of element e.
        let input: [UInt8] = (0..<8).flatMap { [UInt8($0), 1] }
        let output = shuffled(input, 2, .reference)
        // Byte 0 (values 0...7): plane 0 holds bit 0 of each → 0b10101010, plane 1 → 0b11001100, plane 2 → 0b11110000.
        #expect(Array(output[0..<8]) == [0xAA, 0xCC, 0xF0, 0, 0, 0, 0, 0])
        // Byte 1 is 1 in every element: plane 8 all ones, the rest zero.
        #expect(Array(output[8..<16]) == [0xFF, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func planeStatisticCountsRunsOfEqualBits() {
        // Plane 0 all zero, plane 1 all 0xFF, plane 2 alternating 0x55/0x00, plane 3 noise.
        var random = SplitMix(state: 5)
        let planeBytes = 5000
        var planes = [UInt8](repeating: 0, count: planeBytes) + [UInt8](repeating: 0xFF, count: planeBytes)
        planes += (0..<planeBytes).map { $0 % 2 == 0 ? 0x55 : 0 }
        planes += random.bytes(planeBytes)
        var counts = [UInt32](repeating: 0, count: 4)
        let sampled = planes.withUnsafeBytes { bytes in
            counts.withUnsafeMutableBufferPointer { Bitshuffle.planeRunBytes(bytes, planeBytes: planeBytes, sample: 1024, into: $0) }
        }
        #expect(sampled == 1024)
        #expect(counts[0] == 1024 && counts[1] == 1024 && counts[2] == 512 && counts[3] < 40, "\(counts)")
        let whole = planes.withUnsafeBytes { bytes in
            counts.withUnsafeMutableBufferPointer { Bitshuffle.planeRunBytes(bytes, planeBytes: planeBytes, sample: 8192, into: $0) }
        }
        #expect(whole == planeBytes && counts[0] == 5000 && counts[2] == 2500)
    }

    @Test(arguments: [1, 2, 4, 8])
    func fastPathsMatchTheReference(elementSize: Int) {
        var random = SplitMix(state: UInt64(elementSize))
        // Powers of two, odd counts, counts below 8 and around the 32/64-element vector steps.
        let counts = [0, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 1024, 4096, 4099, 98_304, 98_311]
        for count in counts {
            let input = random.bytes(count * elementSize)
            let reference = shuffled(input, elementSize, .reference)
            #expect(unshuffled(reference, elementSize, .reference) == input, "reference round trip, count \(count)")
            for implementation in fastPaths where implementation.isAvailable(for: .bitshuffle) {
                #expect(shuffled(input, elementSize, implementation) == reference, "\(implementation) shuffle, size \(elementSize), count \(count)")
                #expect(unshuffled(reference, elementSize, implementation) == input, "\(implementation) unshuffle, size \(elementSize), count \(count)")
            }
        }
    }
}

@Suite struct Conversions {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Reference/fixtures/shards/conversions.safetensors").path

    func raw<T: FixedWidthInteger>(_ file: SafeTensorsFile, _ name: String, as _: T.Type) throws -> [T] {
        let bytes = try file.rawBytes(name)
        return (0..<(bytes.count / MemoryLayout<T>.size)).map {
            T(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self))
        }
    }

    /// Counts mismatches and reports the first few, so a failure says what went wrong.
    func compare(_ found: [UInt16], _ expected: [UInt16], inputs: [UInt32], _ label: String) {
        let wrong = found.indices.filter { found[$0] != expected[$0] }
        #expect(wrong.isEmpty, "\(label): \(wrong.count) of \(found.count) differ; first: \(wrong.prefix(5).map { "0x\(String(inputs[$0], radix: 16)) -> 0x\(String(found[$0], radix: 16)), torch 0x\(String(expected[$0], radix: 16))" })")
    }

    @Test func bitExactAgainstTorch() throws {
        let file = try SafeTensorsFile(path: Self.fixture)
        let inputBits = try raw(file, "f32_in", as: UInt32.self)
        let inputs = inputBits.map { Float(bitPattern: $0) }
        let bf16 = try raw(file, "bf16_out", as: UInt16.self)
        let f16 = try raw(file, "f16_out", as: UInt16.self)
        let halves = try raw(file, "f16_in", as: UInt16.self)
        let halvesAsFloat = try raw(file, "f16_in_f32", as: UInt32.self)
        #expect(inputs.count > 5000 && halves.count > 500)
        for implementation in [KernelImplementation.reference] + fastPaths where implementation.isAvailable(for: .conversion) {
            compare(FloatConversion.bfloat16(inputs, implementation: implementation), bf16, inputs: inputBits, "bf16 \(implementation)")
            compare(FloatConversion.float16(inputs, implementation: implementation), f16, inputs: inputBits, "fp16 \(implementation)")
            let back = FloatConversion.floats(fromFloat16: halves, implementation: implementation).map(\.bitPattern)
            #expect(back == halvesAsFloat, "fp16 -> fp32 \(implementation)")
            let widened = FloatConversion.floats(fromBFloat16: bf16, implementation: implementation).map(\.bitPattern)
            #expect(widened == bf16.map { UInt32($0) << 16 }, "bf16 -> fp32 \(implementation)")
        }
    }

    @Test func everyBinary16PatternMatchesSwiftFloat16() {
        let all = (0...UInt16.max).map { $0 }
        for implementation in [KernelImplementation.reference] + fastPaths where implementation.isAvailable(for: .conversion) {
            let floats = FloatConversion.floats(fromFloat16: all, implementation: implementation)
            for (bits, value) in zip(all, floats) where !Float16(bitPattern: bits).isNaN {
                #expect(value.bitPattern == Float(Float16(bitPattern: bits)).bitPattern, "0x\(String(bits, radix: 16)) \(implementation)")
            }
            // Round trip of every non-NaN pattern.
            let again = FloatConversion.float16(floats, implementation: implementation)
            let mismatches = all.indices.filter { !Float16(bitPattern: all[$0]).isNaN && again[$0] != all[$0] }
            #expect(mismatches.isEmpty, "\(implementation): \(mismatches.count) binary16 patterns do not survive a round trip")
        }
    }

    @Test func fastPathsMatchTheReferenceOnRandomBits() {
        var random = SplitMix(state: 9)
        for count in [0, 1, 15, 16, 17, 1024, 4099] {
            let inputs = (0..<count).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: random.next())) }
            let bf16 = FloatConversion.bfloat16(inputs, implementation: .reference)
            let f16 = FloatConversion.float16(inputs, implementation: .reference)
            for implementation in fastPaths where implementation.isAvailable(for: .conversion) {
                #expect(FloatConversion.bfloat16(inputs, implementation: implementation) == bf16, "bf16 \(implementation) count \(count)")
                #expect(FloatConversion.float16(inputs, implementation: implementation) == f16, "fp16 \(implementation) count \(count)")
            }
        }
    }
}

@Suite struct SHA256Digest {
    @Test func knownVectors() {
        #expect(SHA256.hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        var hasher = SHA256()
        for _ in 0..<1000 { hasher.update([UInt8](repeating: UInt8(ascii: "a"), count: 1000)) }
        #expect(SHA256.hex(hasher.finalize()) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}

@Suite struct ColumnLayoutKernel {
    @Test(arguments: ShardDType.allCases)
    func fastPathsMatchTheReference(dtype: ShardDType) {
        var random = SplitMix(state: 12)
        for (rows, columns) in [(1, 1), (8, 8), (7, 13), (16, 7), (256, 384), (33, 384), (255, 17), (64, 1024), (9, 24), (40, 40), (24, 31)] {
            let values = (0..<(rows * columns)).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: random.next())) }
            let byteCount = rows * columns * dtype.elementSize
            func pack(_ implementation: KernelImplementation) -> [UInt8] {
                var output = [UInt8](repeating: 0, count: byteCount)
                values.withUnsafeBufferPointer { input in
                    output.withUnsafeMutableBytes {
                        ColumnLayout.pack(input, into: $0, rows: rows, columns: columns, dtype: dtype, implementation: implementation)
                    }
                }
                return output
            }
            func unpack(_ packed: [UInt8], _ implementation: KernelImplementation) -> [UInt32] {
                var output = [Float](repeating: 0, count: rows * columns)
                packed.withUnsafeBytes { input in
                    output.withUnsafeMutableBufferPointer {
                        ColumnLayout.unpack(input, into: $0, rows: rows, columns: columns, dtype: dtype, implementation: implementation)
                    }
                }
                return output.map(\.bitPattern)
            }
            let reference = pack(.reference)
            // The reference is the definition: element (r, c) converted, at c × rows + r.
            let converted: [UInt8] =
                switch dtype {
                case .fp32: values.withUnsafeBytes { Array($0) }
                case .bf16: FloatConversion.bfloat16(values).withUnsafeBytes { Array($0) }
                case .fp16: FloatConversion.float16(values).withUnsafeBytes { Array($0) }
                }
            let size = dtype.elementSize
            var expected = [UInt8](repeating: 0, count: byteCount)
            for r in 0..<rows {
                for c in 0..<columns {
                    for b in 0..<size { expected[(c * rows + r) * size + b] = converted[(r * columns + c) * size + b] }
                }
            }
            #expect(reference == expected, "\(dtype) \(rows) × \(columns) reference")
            let unpacked = unpack(reference, .reference)
            for implementation in fastPaths where implementation.isAvailable(for: .conversion) {
                #expect(pack(implementation) == reference, "\(dtype) \(rows) × \(columns) pack \(implementation)")
                #expect(unpack(reference, implementation) == unpacked, "\(dtype) \(rows) × \(columns) unpack \(implementation)")
            }
        }
    }
}

@Suite struct UnshuffleFromScatteredPlanes {
    @Test(arguments: [1, 2, 4, 8])
    func matchesTheContiguousReference(elementSize: Int) {
        var random = SplitMix(state: 40 + UInt64(elementSize))
        for count in [1, 7, 8, 9, 64, 100, 512, 1000, 4099] {
            let input = random.bytes(count * elementSize)
            var shuffled = [UInt8](repeating: 0, count: input.count)
            input.withUnsafeBytes { source in
                shuffled.withUnsafeMutableBytes { Bitshuffle.shuffle(source, into: $0, elementSize: elementSize, implementation: .reference) }
            }
            // Planes copied apart from each other (3 filler bytes between them, in reverse
            // order), the tail to its own array.
            let planeBytes = (count & ~7) / 8
            let planeCount = 8 * elementSize
            var scattered: [UInt8] = []
            var offsets = [Int](repeating: 0, count: planeCount)
            for p in (0..<planeCount).reversed() {
                scattered += [0xEE, 0xEE, 0xEE]
                offsets[p] = scattered.count
                scattered += shuffled[(p * planeBytes)..<((p + 1) * planeBytes)]
            }
            let tail = Array(shuffled[(planeCount * planeBytes)...]) + [0xEE]
            for implementation in [KernelImplementation.reference] + fastPaths where implementation.isAvailable(for: .bitshuffle) {
                var output = [UInt8](repeating: 0, count: input.count)
                scattered.withUnsafeBufferPointer { scattered in
                    let pointers: [UnsafePointer<UInt8>?] = offsets.map { scattered.baseAddress! + $0 }
                    pointers.withUnsafeBufferPointer { pointers in
                        tail.withUnsafeBytes { tail in
                            output.withUnsafeMutableBytes {
                                Bitshuffle.unshuffle(
                                    planes: pointers, tail: tail.baseAddress, count: count, into: $0, elementSize: elementSize,
                                    implementation: implementation)
                            }
                        }
                    }
                }
                #expect(output == input, "\(implementation) size \(elementSize) count \(count)")
            }
        }
    }
}
