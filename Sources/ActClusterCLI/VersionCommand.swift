import ArgumentParser
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
            print("{" + facts.map { "\(jsonString($0.0)): \(jsonString($0.1))" }.joined(separator: ", ") + "}")
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

/// A JSON string literal with the escapes JSON requires.
func jsonString(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

extension String {
    var trimmingSpaces: String {
        String(self.drop { $0 == " " }.reversed().drop { $0 == " " }.reversed())
    }
}
