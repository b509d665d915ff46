/// GPT-2's `bytes_to_unicode`: every byte gets a printable stand-in character, so byte-level
/// vocabularies can be stored as text. Printable Latin-1 bytes map to themselves; the other 68
/// bytes map, in byte order, to U+0100 onwards.
enum ByteLevelAlphabet {
    static let scalarForByte: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var next: UInt32 = 256
        for byte in 0..<256 {
            let printable = (0x21...0x7E).contains(byte) || (0xA1...0xAC).contains(byte) || (0xAE...0xFF).contains(byte)
            if printable {
                table[byte] = Unicode.Scalar(UInt32(byte))!
            } else {
                table[byte] = Unicode.Scalar(next)!
                next += 1
            }
        }
        return table
    }()

    /// The stand-ins for the UTF-8 bytes of `scalars`.
    static func map(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(scalars.count + scalars.count / 2)
        scalarForByte.withUnsafeBufferPointer { table in
            for scalar in scalars {
                let value = scalar.value
                if value < 0x80 {
                    output.append(table[Int(value)])
                    continue
                }
                withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 4) { bytes in
                    let count = scalar.encodeUTF8(into: bytes.baseAddress!)
                    for index in 0..<count { output.append(table[Int(bytes[index])]) }
                }
            }
        }
        return output
    }
}
