import CPlatform
import Glibc

/// Names the calling thread, as `top -H`, `perf` and /proc show it (Linux keeps 15 bytes).
/// Foundation's `Thread.name` does not reach the kernel on Linux, and Glibc's module does not
/// export `pthread_setname_np`, so the thread writes its own `comm`.
public func nameCurrentThread(_ name: String) {
    let descriptor = open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)
    guard descriptor >= 0 else { return }
    defer { close(descriptor) }
    let bytes = Array(name.utf8.prefix(15))
    _ = write(descriptor, bytes, bytes.count)
}

/// A shorter scheduler slice for a thread that must answer quickly. On Linux 6.12 and later a
/// SCHED_OTHER thread may ask for a slice shorter than the default (EEVDF's custom slice,
/// 0.1–100 ms): when it wakes it then gets a core sooner, ahead of threads that run longer,
/// while its share of the CPU stays what its nice gives. Older kernels ignore the request.
public enum SchedulerSlice {
    /// Asks for `slice` for thread `tid` (0: the calling thread). Returns nil, or the reason
    /// the kernel refused.
    @discardableResult
    public static func request(_ slice: Duration, thread tid: Int32 = 0) -> String? {
        let code = actcluster_set_scheduler_slice(tid, UInt64(max(0, slice.wholeNanoseconds)))
        return code == 0 ? nil : String(cString: strerror(code))
    }

    /// Asks for `slice` for every thread of this process whose name starts with `prefix`
    /// (libzmq's I/O threads are `ZMQbg/IO/0`, …). A thread names itself once it runs, so
    /// while none has the name yet this looks again, for up to `wait`. Returns how many took
    /// the slice, and why the first that did not, did not.
    public static func request(_ slice: Duration, threadsNamed prefix: String, wait: Duration = .zero) -> (threads: Int, failure: String?) {
        let deadline = ContinuousClock.now + wait
        while true {
            var threads = 0
            var failure: String?
            for (tid, name) in processThreads() where name.hasPrefix(prefix) {
                if let reason = request(slice, thread: tid) { failure = failure ?? reason } else { threads += 1 }
            }
            if threads > 0 || failure != nil || ContinuousClock.now >= deadline { return (threads, failure) }
            usleep(1000)
        }
    }

    /// The slice the kernel gives thread `tid` of process `pid` (nil: this one), from its
    /// `/proc` sched file (`se.slice`); nil where the kernel shows none.
    public static func current(thread tid: Int32, process pid: Int32? = nil) -> Duration? {
        guard let text = readWholeFile("/proc/\(pid.map(String.init) ?? "self")/task/\(tid)/sched") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("se.slice") {
            guard let value = line.split(separator: ":").last.flatMap({ Int64($0.trimmingPrefix(while: { $0 == " " })) }) else { return nil }
            return .nanoseconds(value)
        }
        return nil
    }
}

/// The calling thread's id, as `/proc/self/task` names it.
public func currentThreadID() -> Int32 { actcluster_thread_id() }

/// The threads of process `pid` (nil: this one): id and name.
public func processThreads(of pid: Int32? = nil) -> [(tid: Int32, name: String)] {
    let tasks = "/proc/\(pid.map(String.init) ?? "self")/task"
    guard let directory = opendir(tasks) else { return [] }
    defer { closedir(directory) }
    var threads: [(Int32, String)] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let tid = Int32(name) else { continue }
        // The kernel ends the name with a newline.
        let comm = readWholeFile("\(tasks)/\(tid)/comm") ?? ""
        threads.append((tid, String(comm.split(separator: "\n").first ?? "")))
    }
    return threads
}
