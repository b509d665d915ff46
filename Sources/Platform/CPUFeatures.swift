import Glibc

/// The CPU features that decide which compute paths are fast on this host, read from
/// `/proc/cpuinfo` (Linux only; elsewhere every flag reads false).
public struct CPUFeatures: Sendable, Equatable {
    public let modelName: String
    public let flags: Set<String>

    public init(modelName: String, flags: Set<String>) {
        self.modelName = modelName
        self.flags = flags
    }

    /// Parses the first processor block of `/proc/cpuinfo` text.
    public init(cpuinfo: String) {
        var model = "unknown"
        var flags: Set<String> = []
        for line in cpuinfo.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.isEmpty, !flags.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let key = line[..<colon].trimmingCharacters(in: " \t")
            let value = line[line.index(after: colon)...].trimmingCharacters(in: " \t")
            if key == "model name" { model = value }
            if key == "flags" { flags = Set(value.split(separator: " ").map(String.init)) }
        }
        self.init(modelName: model, flags: flags)
    }

    public static let current: CPUFeatures = CPUFeatures(cpuinfo: readWholeFile("/proc/cpuinfo") ?? "")

    public var avx2: Bool { flags.contains("avx2") }
    public var avx512: Bool { flags.contains("avx512f") }
    public var avx512bf16: Bool { flags.contains("avx512_bf16") }
    public var amx: Bool { flags.contains("amx_tile") && flags.contains("amx_bf16") }
    public var sse42: Bool { flags.contains("sse4_2") }

    /// One line for logs and `actcluster version`.
    public var summary: String {
        func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }
        return "AVX2=\(yesNo(avx2)) AVX-512=\(yesNo(avx512)) AVX512-BF16=\(yesNo(avx512bf16)) AMX=\(yesNo(amx))"
    }
}

/// How many CPUs the process may run on: its affinity (`taskset -c 0` makes it 1), not the
/// machine's count. Read from the `Cpus_allowed` mask of `/proc/self/status`.
public enum AllowedCPUs {
    /// The count in `/proc/<pid>/status` text; nil if it has no `Cpus_allowed` line.
    public static func count(status: String) -> Int? {
        for line in status.split(separator: "\n") where line.hasPrefix("Cpus_allowed:") {
            var bits = 0
            for character in line.dropFirst("Cpus_allowed:".count) {
                guard let digit = character.hexDigitValue else { continue }
                bits += digit.nonzeroBitCount
            }
            return bits
        }
        return nil
    }

    /// This process's count; nil where `/proc` has none.
    public static var current: Int? { readWholeFile("/proc/self/status").flatMap(count(status:)) }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let trimmed = drop { set.contains($0) }
        return String(trimmed.reversed().drop { set.contains($0) }.reversed())
    }
}
