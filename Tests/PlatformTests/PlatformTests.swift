import Foundation
import Platform
import Testing

@Suite struct AtomicFiles {
    private func scratch() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("platform-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test func writesReplacesAndLeavesNoTemporaryFiles() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/manifest.json"
        try AtomicFile.write("first", to: path)
        try AtomicFile.write("second", to: path)
        #expect(readWholeFile(path) == "second")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["manifest.json"])
    }

    @Test func refusesToReplaceWhenAsked() throws {
        let directory = try scratch()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let path = directory + "/key"
        try AtomicFile.write("original", to: path, mode: 0o600, replacing: false)
        let error = try #require(throws: FileError.self) {
            try AtomicFile.write("other", to: path, replacing: false)
        }
        #expect(error.alreadyExists)
        #expect(error.description.contains(path))
        #expect(readWholeFile(path) == "original")
        #expect(try filePermissions(path) == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["key"])
    }

    @Test func missingDirectoryIsAClearError() throws {
        let error = try #require(throws: FileError.self) {
            try AtomicFile.write("x", to: "/nonexistent-dir-\(UUID().uuidString)/file")
        }
        #expect(error.description.contains("No such file or directory"))
    }
}

@Suite struct CPU {
    @Test func parsesCpuinfoFlags() {
        let text = """
            processor\t: 0
            model name\t: Example CPU @ 2.0GHz
            flags\t\t: fpu sse4_2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile

            processor\t: 1
            flags\t\t: fpu
            """
        let cpu = CPUFeatures(cpuinfo: text)
        #expect(cpu.modelName == "Example CPU @ 2.0GHz")
        #expect(cpu.avx512 && cpu.avx512bf16 && cpu.amx && cpu.avx2 && cpu.sse42)
        #expect(cpu.summary == "AVX2=yes AVX-512=yes AVX512-BF16=yes AMX=yes")
        #expect(!CPUFeatures(cpuinfo: "flags : fpu amx_tile").amx)
    }

    @Test func readsThisHost() {
        #expect(!CPUFeatures.current.flags.isEmpty)
    }
}
