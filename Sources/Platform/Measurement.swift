import Glibc

/// Peak resident set size of this process so far, in bytes (`getrusage`).
public func peakResidentBytes() -> Int {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return usage.ru_maxrss * 1024
}

extension Duration {
    /// The duration in seconds, for rates and logs.
    public var seconds: Double {
        let (whole, fraction) = components
        return Double(whole) + Double(fraction) / 1e18
    }

    /// Whole nanoseconds, for system calls and logs that count in them (or in microseconds).
    public var wholeNanoseconds: Int64 {
        let (whole, fraction) = components
        return whole * 1_000_000_000 + fraction / 1_000_000_000
    }
}

/// The machine's CPU time so far, summed over its cores, from the first line of /proc/stat.
/// Over a span, it says how much of the machine went to other processes, to interrupts and to
/// the hypervisor (steal) while a benchmark ran.
public struct MachineCPUTimes: Sendable {
    /// Seconds running processes: user, nice and system (guest time is counted in user).
    public var processes: Double
    /// Seconds in interrupts, hard and soft (softirq: the kernel's deferred network work).
    public var interrupts: Double
    /// Seconds the hypervisor ran something else while this machine's cores had work.
    public var steal: Double
    /// Seconds of all kinds, idle included: the cores times the wall time.
    public var total: Double

    /// Parses the text of /proc/stat; nil if its first line is not the `cpu` total.
    public init?(procStat text: String) {
        guard let line = text.split(separator: "\n", maxSplits: 1).first, line.hasPrefix("cpu ") else { return nil }
        // user nice system idle iowait irq softirq steal [guest guest_nice]
        let ticks = line.split(separator: " ").dropFirst().prefix(8).compactMap { Double($0) }
        guard ticks.count == 8 else { return nil }
        let perSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
        processes = (ticks[0] + ticks[1] + ticks[2]) / perSecond
        interrupts = (ticks[5] + ticks[6]) / perSecond
        steal = ticks[7] / perSecond
        total = ticks.reduce(0, +) / perSecond
    }

    /// The machine's times now, or nil where there is no /proc/stat.
    public static func now() -> MachineCPUTimes? { readWholeFile("/proc/stat").flatMap { MachineCPUTimes(procStat: $0) } }
}
