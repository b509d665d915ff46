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
    ) throws(FileError) {
        let temporary = temporaryName(for: path)
        let descriptor = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard descriptor >= 0 else { throw FileError(operation: "create", path: temporary, code: errno) }
        do throws(FileError) {
            defer { close(descriptor) }
            try writeAll(bytes, to: descriptor, path: temporary)
            guard fchmod(descriptor, mode) == 0 else { throw FileError(operation: "chmod", path: temporary, code: errno) }
            guard fsync(descriptor) == 0 else { throw FileError(operation: "fsync", path: temporary, code: errno) }
        } catch {
            unlink(temporary)
            throw error
        }
        if replacing {
            guard rename(temporary, path) == 0 else {
                let error = FileError(operation: "rename into place", path: path, code: errno)
                unlink(temporary)
                throw error
            }
        } else {
            // link(2) never replaces: it fails with EEXIST, atomically.
            let status = link(temporary, path)
            let code = errno
            unlink(temporary)
            guard status == 0 else { throw FileError(operation: "create", path: path, code: code) }
        }
        try syncDirectory(containing: path)
    }

    public static func write(_ text: String, to path: String, mode: mode_t = 0o644, replacing: Bool = true) throws(FileError) {
        try write(Array(text.utf8), to: path, mode: mode, replacing: replacing)
    }

    /// Makes a completed rename durable.
    public static func syncDirectory(containing path: String) throws(FileError) {
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

    static func writeAll(_ bytes: [UInt8], to descriptor: Int32, path: String) throws(FileError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw FileError(operation: "write", path: path, code: errno)
            }
            offset += written
        }
    }
}

/// Reads a whole file. Works for /proc files, whose reported size is zero.
public func readFile(_ path: String) throws(FileError) -> [UInt8] {
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
public func filePermissions(_ path: String) throws(FileError) -> mode_t {
    var info = stat()
    guard stat(path, &info) == 0 else { throw FileError(operation: "stat", path: path, code: errno) }
    return info.st_mode & 0o7777
}
