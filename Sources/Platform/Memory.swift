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
