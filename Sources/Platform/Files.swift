import Glibc

/// A failed file-system call, naming the file and what to do where that is clear.
public struct FileError: Error, Equatable, CustomStringConvertible {
    public let operation: String
    public let path: String
    public let code: Int32

    public init(operation: String, path: String, code: Int32) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    public var reason: String { String(cString: strerror(code)) }
    public var alreadyExists: Bool { code == EEXIST }
    public var notFound: Bool { code == ENOENT }

    public var description: String {
        var text = "could not \(operation) \(path): \(reason)"
        if code == EEXIST { text += "; remove it or choose another name" }
        return text
    }
}

/// Writes whole files so that readers see either the old content or the new, never a part:
/// temporary name in the same directory, fsync, rename, fsync of the directory.
public enum AtomicFile {
    /// - Parameters:
    ///   - mode: permission bits, applied from creation on (a secret is never world-readable).
    ///   - replacing: when false, an existing file at `path` is an error and stays untouched.
    public static func write(
        _ bytes: [UInt8], to path: String, mode: mode_t = 0o644, replacing: Bool = true
    ) throws {
        let writer = try DurableFileWriter(path: path, mode: mode, replacing: replacing)
        try bytes.withUnsafeBytes { buffer in try writer.write(buffer) }
        try writer.commit()
    }

    public static func write(_ text: String, to path: String, mode: mode_t = 0o644, replacing: Bool = true) throws {
        try write(Array(text.utf8), to: path, mode: mode, replacing: replacing)
    }

    /// Makes a completed rename durable.
    public static func syncDirectory(containing path: String) throws {
        let directory = parentDirectory(of: path)
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw FileError(operation: "open directory", path: directory, code: errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw FileError(operation: "fsync directory", path: directory, code: errno) }
    }

    static func temporaryName(for path: String) -> String {
        let directory = parentDirectory(of: path)
        let name = path.split(separator: "/").last.map(String.init) ?? path
        let nonce = UInt32.random(in: 0...UInt32.max)
        return "\(directory)/.\(name).tmp-\(getpid())-\(String(nonce, radix: 16))"
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }
}

/// Streams a file of any size to a temporary name and moves it into place on ``commit()``.
/// Dropped without a commit, it removes the temporary file: a crash or error never leaves
/// a partial file under the final name.
public final class DurableFileWriter {
    public let path: String
    private let temporaryPath: String
    private let mode: mode_t
    private let replacing: Bool
    private var descriptor: Int32
    private var buffer: [UInt8] = []
    private let bufferLimit = 1 << 20
    public private(set) var bytesWritten = 0

    public init(path: String, mode: mode_t = 0o644, replacing: Bool = true) throws {
        self.path = path
        self.mode = mode
        self.replacing = replacing
        temporaryPath = AtomicFile.temporaryName(for: path)
        descriptor = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw FileError(operation: "create", path: temporaryPath, code: errno) }
        buffer.reserveCapacity(bufferLimit)
    }

    deinit { abandon() }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(descriptor >= 0, "DurableFileWriter used after commit or abandon")
        bytesWritten += bytes.count
        if buffer.count + bytes.count <= bufferLimit {
            buffer.append(contentsOf: bytes)
            return
        }
        try flush()
        if bytes.count >= bufferLimit {
            try writeAll(bytes)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in try write(raw) }
    }

    /// Replaces already-written bytes at `offset` (for example a header whose counts are only
    /// known at the end). The range must lie inside what was written so far; the file length
    /// does not change.
    public func overwrite(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        precondition(descriptor >= 0, "DurableFileWriter used after commit or abandon")
        precondition(offset >= 0 && offset + bytes.count <= bytesWritten, "overwrite outside the written range")
        try flush()
        var done = 0
        while done < bytes.count {
            let written = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if written < 0 {
                if errno == EINTR { continue }
                throw FileError(operation: "write", path: temporaryPath, code: errno)
            }
            done += written
        }
    }

    public func overwrite(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { raw in try overwrite(raw, at: offset) }
    }

    /// fsync, then rename (or, when not replacing, link) into place, then fsync the folder.
    public func commit() throws {
        do {
            try flush()
            guard fchmod(descriptor, mode) == 0 else { throw FileError(operation: "chmod", path: temporaryPath, code: errno) }
            guard fsync(descriptor) == 0 else { throw FileError(operation: "fsync", path: temporaryPath, code: errno) }
            close(descriptor)
            descriptor = -1
            if replacing {
                guard rename(temporaryPath, path) == 0 else {
                    throw FileError(operation: "rename into place", path: path, code: errno)
                }
            } else {
                // link(2) never replaces: it fails with EEXIST, atomically.
                guard link(temporaryPath, path) == 0 else { throw FileError(operation: "create", path: path, code: errno) }
                unlink(temporaryPath)
            }
        } catch {
            abandon()
            throw error
        }
        try AtomicFile.syncDirectory(containing: path)
    }

    /// Closes and removes the temporary file. Idempotent.
    public func abandon() {
        if descriptor >= 0 {
            close(descriptor)
            descriptor = -1
        }
        unlink(temporaryPath)
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { raw in try writeAll(raw) }
        buffer.removeAll(keepingCapacity: true)
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw FileError(operation: "write", path: temporaryPath, code: errno)
            }
            offset += written
        }
    }
}

/// Reads a whole file. Works for /proc files, whose reported size is zero.
public func readFile(_ path: String) throws -> [UInt8] {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0 else { throw FileError(operation: "open", path: path, code: errno) }
    defer { close(descriptor) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw FileError(operation: "read", path: path, code: errno)
        }
        if count == 0 { return result }
        result.append(contentsOf: chunk[..<count])
    }
}

/// A whole file as UTF-8 text (invalid bytes become U+FFFD), or nil if it cannot be read.
public func readWholeFile(_ path: String) -> String? {
    guard let bytes = try? readFile(path) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

/// Permission bits of a file (for checks such as "the secret key is 0600").
public func filePermissions(_ path: String) throws -> mode_t {
    var info = stat()
    guard stat(path, &info) == 0 else { throw FileError(operation: "stat", path: path, code: errno) }
    return info.st_mode & 0o7777
}
