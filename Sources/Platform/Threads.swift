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
