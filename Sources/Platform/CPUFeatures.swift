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

extension Substring {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let trimmed = drop { set.contains($0) }
        return String(trimmed.reversed().drop { set.contains($0) }.reversed())
    }
}
