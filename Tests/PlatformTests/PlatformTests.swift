import Foundation
import Platform
import Synchronization
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

@Suite struct ThreadNames {
    /// The kernel's name for the thread, cut to its 15 bytes; other threads keep theirs.
    @Test func aThreadNamesItselfAsTheKernelShowsIt() throws {
        let before = readWholeFile("/proc/thread-self/comm")
        let seen = Mutex<[String?]>([])
        let done = DispatchSemaphore(value: 0)
        Thread {
            nameCurrentThread("a-rather-long-thread-name")
            let comm = readWholeFile("/proc/thread-self/comm")
            let tid = readWholeFile("/proc/thread-self/stat")?.split(separator: " ").first.map(String.init)
            let byTid = tid.flatMap { readWholeFile("/proc/self/task/\($0)/comm") }
            seen.withLock { $0 = [comm, byTid] }
            done.signal()
        }.start()
        done.wait()
        #expect(seen.withLock { $0 } == ["a-rather-long-t\n", "a-rather-long-t\n"])
        #expect(readWholeFile("/proc/thread-self/comm") == before)
    }
}

/// Where the machine's time went, from a /proc/stat written by hand.
@Suite struct MachineTimes {
    @Test func readsTheTotalLineInClockTicks() throws {
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let text = "cpu  100 20 30 400 5 6 7 8 50 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 1\n"
        let times = try #require(MachineCPUTimes(procStat: text))
        #expect(times.processes == 150 / hz)
        #expect(times.interrupts == 13 / hz)
        #expect(times.steal == 8 / hz)
        #expect(times.total == 576 / hz)
        #expect(MachineCPUTimes(procStat: "cpu0 1 2 3 4 5 6 7 8\n") == nil)
        #expect(MachineCPUTimes(procStat: "cpu  1 2 3\n") == nil)
        #expect(MachineCPUTimes.now() != nil)
    }
}

/// The CPUs a process may use, from `/proc/<pid>/status` masks written by hand.
@Suite struct AllowedCPUCount {
    @Test func countsTheBitsOfTheMask() {
        #expect(AllowedCPUs.count(status: "Name:\tx\nCpus_allowed:\t3\nCpus_allowed_list:\t0-1\n") == 2)
        #expect(AllowedCPUs.count(status: "Cpus_allowed:\t00000000,00000001\n") == 1)
        #expect(AllowedCPUs.count(status: "Cpus_allowed:\tff,ffffffff\n") == 40)
        #expect(AllowedCPUs.count(status: "Name:\tx\n") == nil)
    }

    @Test func theProcessMayRunOnAtLeastOneAndAtMostEveryCPU() throws {
        let count = try #require(AllowedCPUs.current)
        #expect(count >= 1)
        #expect(count <= Int(sysconf(Int32(_SC_NPROCESSORS_CONF))))
    }
}

/// Scheduler slices, read back from the kernel's sched files (this machine runs Linux 6.18).
@Suite struct SchedulerSlices {
    /// On a thread of its own: a slice the test sets is not the process's to keep.
    private func onNewThread<T: Sendable>(_ body: @escaping @Sendable () -> T) -> T {
        let result = Mutex<T?>(nil)
        let done = DispatchSemaphore(value: 0)
        Thread {
            result.withLock { $0 = body() }
            done.signal()
        }.start()
        done.wait()
        return result.withLock { $0! }
    }

    @Test func aThreadGetsTheSliceItAsksFor() throws {
        let (tid, before, failure, after, name) = onNewThread {
            nameCurrentThread("slice-test")
            let tid = currentThreadID()
            let before = SchedulerSlice.current(thread: tid)
            let failure = SchedulerSlice.request(.microseconds(700))
            let name = processThreads().first { $0.tid == tid }?.name
            return (tid, before, failure, SchedulerSlice.current(thread: tid), name)
        }
        #expect(tid > 0)
        #expect(name == "slice-test")
        #expect(failure == nil)
        let kernels = try #require(before, "the kernel shows no se.slice")
        #expect(kernels != .microseconds(700))
        #expect(after == .microseconds(700))
    }

    @Test func threadsAreFoundByName() throws {
        let (taken, failure, slice) = onNewThread {
            nameCurrentThread("slice-by-name")
            let result = SchedulerSlice.request(.microseconds(900), threadsNamed: "slice-by-")
            return (result.threads, result.failure, SchedulerSlice.current(thread: currentThreadID()))
        }
        #expect(taken == 1)
        #expect(failure == nil)
        #expect(slice == .microseconds(900))
        #expect(SchedulerSlice.request(.microseconds(900), threadsNamed: "no-such-thread-").threads == 0)
    }

    /// A thread that names itself only after a while, as libzmq's I/O thread does once it runs.
    @Test func aThreadNamedLateIsWaitedFor() throws {
        let named = DispatchSemaphore(value: 0), finish = DispatchSemaphore(value: 0)
        let tid = Mutex<Int32>(0)
        Thread {
            Thread.sleep(forTimeInterval: 0.05)
            tid.withLock { $0 = currentThreadID() }
            nameCurrentThread("slice-late")
            named.signal()
            finish.wait()
        }.start()
        let result = SchedulerSlice.request(.microseconds(800), threadsNamed: "slice-late", wait: .seconds(5))
        named.wait()
        #expect(result.threads == 1 && result.failure == nil, "\(result)")
        #expect(SchedulerSlice.current(thread: tid.withLock { $0 }) == .microseconds(800))
        #expect(SchedulerSlice.request(.microseconds(800), threadsNamed: "never-named-", wait: .milliseconds(20)).threads == 0)
        finish.signal()
    }

    @Test func anIdThatNamesNoThreadIsRefusedWithTheReason() throws {
        let reason = try #require(SchedulerSlice.request(.microseconds(500), thread: Int32.max))
        #expect(reason.contains("No such process"), "\(reason)")
    }
}
