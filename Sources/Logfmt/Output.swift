import Glibc
import Synchronization

/// Where formatted log lines go. Implementations must be safe to call from any thread.
public protocol LogLineWriter: Sendable {
    func write(line: String)
}

/// Writes each line with one write(2) to standard error and, optionally, to a file opened
/// for appending, so lines from several processes sharing a file never interleave.
public final class StandardLogOutput: LogLineWriter {
    private let descriptors: Mutex<[Int32]>

    /// - Parameter filePath: a log file to append to as well, created when missing.
    public init(standardError: Bool = true, filePath: String? = nil) throws(LogFileError) {
        var descriptors: [Int32] = standardError ? [STDERR_FILENO] : []
        if let filePath {
            let descriptor = open(filePath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else { throw LogFileError(path: filePath, code: errno) }
            descriptors.append(descriptor)
        }
        self.descriptors = Mutex(descriptors)
    }

    public func write(line: String) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        descriptors.withLock { descriptors in
            for descriptor in descriptors {
                bytes.withUnsafeBytes { buffer in
                    var offset = 0
                    while offset < buffer.count {
                        let written = Glibc.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                        if written < 0 && errno == EINTR { continue }
                        if written <= 0 { break }  // a full disk must not take the process down
                        offset += written
                    }
                }
            }
        }
    }
}

/// The log file could not be opened.
public struct LogFileError: Error, CustomStringConvertible {
    public let path: String
    public let code: Int32
    public var description: String {
        "could not open log file \(path) for appending: \(String(cString: strerror(code))); check that its folder exists and is writable"
    }
}

/// Keeps lines in memory, for tests.
public final class InMemoryLogOutput: LogLineWriter {
    private let storage = Mutex<[String]>([])
    public init() {}
    public func write(line: String) { storage.withLock { $0.append(line) } }
    public var lines: [String] { storage.withLock { $0 } }
}
