import ArgumentParser
import Foundation
import BLAS
import LZ4
import Platform
import ZeroMQ

/// `actcluster version`: what this binary was built with and what this host can do.
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print versions of actcluster and its libraries, and the CPU features that matter.",
        discussion: """
            Run it on every host of a fleet: workers should agree on library versions, and the \
            CPU line tells whether the fast AVX-512 and AMX (bf16) paths are available.
            """
    )

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        let cpu = CPUFeatures.current
        let facts: [(String, String)] = [
            ("actcluster", ActCluster.version),
            ("libzmq", ZeroMQLibrary.version),
            ("curve", ZeroMQLibrary.hasCurve ? "yes" : "no"),
            ("lz4", LZ4Block.libraryVersion),
            ("openblas_config", BLAS.configuration.trimmingSpaces),
            ("openblas_core", BLAS.coreName),
            ("openblas_threads", String(BLAS.threadCount)),
            ("cpu", cpu.modelName),
            ("avx512", cpu.avx512 ? "yes" : "no"),
            ("avx512_bf16", cpu.avx512bf16 ? "yes" : "no"),
            ("amx", cpu.amx ? "yes" : "no"),
        ]
        if json {
            let object = Dictionary(uniqueKeysWithValues: facts)
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        print("actcluster \(ActCluster.version)")
        print("libzmq     \(ZeroMQLibrary.version) (CURVE \(ZeroMQLibrary.hasCurve ? "available" : "NOT available"))")
        print("lz4        \(LZ4Block.libraryVersion)")
        print("OpenBLAS   \(BLAS.configuration.trimmingSpaces) (core \(BLAS.coreName), \(BLAS.threadCount) threads)")
        print("CPU        \(cpu.modelName)")
        print("features   \(cpu.summary)")
    }
}

extension String {
    var trimmingSpaces: String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
