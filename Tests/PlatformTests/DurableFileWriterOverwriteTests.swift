import Foundation
import Platform
import Testing

@Suite struct DurableFileWriterOverwrite {
    @Test func patchesWrittenBytesIncludingOnesStillBuffered() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("overwrite-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/file.bin"

        let writer = try DurableFileWriter(path: path)
        try writer.write([UInt8](repeating: 1, count: 16))
        try writer.write([UInt8](repeating: 2, count: 3 << 20))  // past the 1 MiB buffer
        try writer.write([UInt8](repeating: 3, count: 10))  // still buffered
        try writer.overwrite([9, 9, 9, 9], at: 0)
        try writer.overwrite([7, 7], at: writer.bytesWritten - 2)
        try writer.commit()

        let bytes = try readFile(path)
        #expect(bytes.count == 16 + (3 << 20) + 10)
        #expect(Array(bytes[0..<6]) == [9, 9, 9, 9, 1, 1])
        #expect(Array(bytes.suffix(3)) == [3, 7, 7])
    }
}
