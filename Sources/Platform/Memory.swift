import Glibc

/// Large working arrays: 2 MB-aligned and, where the kernel allows it (transparent huge pages
/// in `madvise` mode), backed by 2 MB pages. Kernels that gather rows at random from arrays of
/// many megabytes (sparse decode, latent gradients) otherwise miss the TLB on most rows.
public enum LargeAllocation {
    public static let alignment = 2 << 20

    /// Byte counts from which huge pages are asked for.
    public static let threshold = 4 << 20

    /// Memory for `byteCount` bytes, aligned to `alignment` and advised to use huge pages when
    /// `byteCount` reaches `threshold`; free it with `deallocate()` on the pointer.
    public static func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
        guard byteCount >= threshold else { return UnsafeMutableRawPointer.allocate(byteCount: max(1, byteCount), alignment: 64) }
        let rounded = (byteCount + alignment - 1) / alignment * alignment
        let pointer = UnsafeMutableRawPointer.allocate(byteCount: rounded, alignment: alignment)
        _ = madvise(pointer, rounded, Int32(MADV_HUGEPAGE))  // advice only: failure leaves 4 KB pages
        return pointer
    }
}

extension LargeAllocation {
    /// Keeps freed blocks up to 64 MB in the heap for reuse: by default glibc maps large
    /// arrays afresh and trims the heap when they are freed, so a forward pass would
    /// page-fault its captured hooks in again each batch (a few percent of `bench forward`).
    /// Call once at process start; glibc's `mallopt` is looked up at run time because its
    /// header is not part of the Glibc module.
    public static func keepFreedBlocksMapped() {
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let trimThreshold: Int32 = -1, mmapThreshold: Int32 = -3  // M_TRIM_THRESHOLD, M_MMAP_THRESHOLD in malloc.h
        _ = mallopt(mmapThreshold, 64 << 20)
        _ = mallopt(trimThreshold, 256 << 20)
    }
}
