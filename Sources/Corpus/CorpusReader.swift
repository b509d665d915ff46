import Foundation
import Glibc

/// How documents are stored in a corpus file.
public enum CorpusFormat: String, Sendable, CaseIterable {
    /// One JSON object per line; the text is in a named field.
    case jsonl
    /// One document per line.
    case txt
}

/// Why a corpus line was not used. The raw values are the manifest's counter names.
public enum SkipReason: String, Error, Sendable, CaseIterable, Codable {
    case invalidUTF8 = "invalid_utf8"
    case invalidJSON = "invalid_json"
    case missingField = "missing_field"
    case emptyDocument = "empty_document"
    case lineTooLong = "line_too_long"
}

/// One line of a corpus: a document, or a line that was skipped and why.
public struct CorpusLine: Sendable {
    /// 0-based index of the line across all files in the order given. Every line has one,
    /// skipped or not, so an id always leads back to its text: file and line below.
    public let documentID: Int64
    public let file: String
    /// 1-based line number in `file`.
    public let line: Int
    /// Byte offset of the line's first byte in `file`, and of the byte after its newline.
    public let byteRange: Range<Int64>
    public let content: Result<String, SkipReason>

    public init(documentID: Int64, file: String, line: Int, byteRange: Range<Int64>, content: Result<String, SkipReason>) {
        self.documentID = documentID
        self.file = file
        self.line = line
        self.byteRange = byteRange
        self.content = content
    }

    public var text: String? { try? content.get() }
}

/// Where a corpus reader stands: the next line to read is in file `fileIndex` (of the paths
/// given) at `byteOffset`, after `linesBefore` lines of that file, and gets `documentID`.
/// Cluster units record where they start, so their text can be read again later by seeking.
public struct CorpusPosition: Equatable, Hashable, Sendable {
    public var fileIndex: Int
    public var byteOffset: Int64
    public var linesBefore: Int
    public var documentID: Int64

    public init(fileIndex: Int = 0, byteOffset: Int64 = 0, linesBefore: Int = 0, documentID: Int64 = 0) {
        self.fileIndex = fileIndex
        self.byteOffset = byteOffset
        self.linesBefore = linesBefore
        self.documentID = documentID
    }

    /// The first line of the first file.
    public static let start = CorpusPosition()
}

/// An error reading the corpus itself (not a bad line): missing file, I/O failure.
public struct CorpusError: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let problem: String
    public var description: String { "corpus file \(path): \(problem)" }
}

/// Streams the lines of corpus files with bounded memory: one read buffer and one line at a
/// time, however large the files.
public final class CorpusReader {
    public let paths: [String]
    public let format: CorpusFormat
    public let textField: String
    /// Lines longer than this are skipped as `line_too_long` without being held in memory.
    public let maxLineBytes: Int

    private var fileIndex = 0
    private var descriptor: Int32 = -1
    private var buffer: [UInt8]
    private var bufferStart = 0
    private var bufferEnd = 0
    private var fileOffset: Int64 = 0
    private var lineNumber = 0
    private var nextDocumentID: Int64
    /// Where the first file opened starts reading (a resumed or re-read cluster unit).
    private var pendingStart: (byteOffset: Int64, linesBefore: Int)?

    /// - Parameter firstDocumentID: the id of the first line read (cluster units start mid-corpus).
    public init(
        paths: [String], format: CorpusFormat, textField: String = "text", maxLineBytes: Int = 64 << 20,
        firstDocumentID: Int64 = 0, readBufferBytes: Int = 1 << 20
    ) {
        self.buffer = [UInt8](repeating: 0, count: max(16, readBufferBytes))
        self.paths = paths
        self.format = format
        self.textField = textField
        self.maxLineBytes = maxLineBytes
        self.nextDocumentID = firstDocumentID
    }

    /// A reader that starts at `position` instead of the first line: it seeks to the byte
    /// offset, which must be a line boundary (a position that an earlier reader reported).
    public convenience init(
        paths: [String], format: CorpusFormat, textField: String = "text", maxLineBytes: Int = 64 << 20,
        startingAt position: CorpusPosition, readBufferBytes: Int = 1 << 20
    ) {
        precondition(position.byteOffset >= 0 && position.linesBefore >= 0 && position.fileIndex >= 0, "invalid corpus position \(position)")
        self.init(
            paths: paths, format: format, textField: textField, maxLineBytes: maxLineBytes, firstDocumentID: position.documentID,
            readBufferBytes: readBufferBytes)
        fileIndex = position.fileIndex
        pendingStart = (position.byteOffset, position.linesBefore)
    }

    /// Where the next line will come from. At the end of a file it still names that file
    /// (at its end) until the next call of ``next()`` moves on.
    public var position: CorpusPosition {
        if descriptor < 0 {
            // Not yet opened: the pending start, or the beginning of the next file.
            return CorpusPosition(
                fileIndex: fileIndex, byteOffset: pendingStart?.byteOffset ?? 0, linesBefore: pendingStart?.linesBefore ?? 0,
                documentID: nextDocumentID)
        }
        return CorpusPosition(fileIndex: fileIndex, byteOffset: fileOffset, linesBefore: lineNumber, documentID: nextDocumentID)
    }

    deinit { if descriptor >= 0 { close(descriptor) } }

    /// The next line, or nil after the last file.
    public func next() throws -> CorpusLine? {
        while fileIndex < paths.count {
            if descriptor < 0 { try openCurrent() }
            if let line = try readLine() { return line }
            close(descriptor)
            descriptor = -1
            fileIndex += 1
        }
        return nil
    }

    private func openCurrent() throws {
        let path = paths[fileIndex]
        descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw CorpusError(path: path, problem: String(cString: strerror(errno)) + "; check the --corpus paths")
        }
        bufferStart = 0
        bufferEnd = 0
        fileOffset = 0
        lineNumber = 0
        if let start = pendingStart {
            pendingStart = nil
            guard lseek(descriptor, off_t(start.byteOffset), SEEK_SET) >= 0 else {
                let problem = String(cString: strerror(errno))
                close(descriptor)
                descriptor = -1
                throw CorpusError(path: path, problem: "cannot seek to byte \(start.byteOffset): " + problem)
            }
            fileOffset = start.byteOffset
            lineNumber = start.linesBefore
        }
    }

    /// Fills the buffer; false at end of file.
    private func refill() throws -> Bool {
        if bufferStart > 0 {
            buffer.withUnsafeMutableBytes { raw in
                raw.baseAddress!.copyMemory(from: raw.baseAddress! + bufferStart, byteCount: bufferEnd - bufferStart)
            }
            bufferEnd -= bufferStart
            bufferStart = 0
        }
        if bufferEnd == buffer.count { buffer += [UInt8](repeating: 0, count: buffer.count) }
        while true {
            let count = buffer.withUnsafeMutableBytes { raw in read(descriptor, raw.baseAddress! + bufferEnd, raw.count - bufferEnd) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw CorpusError(path: paths[fileIndex], problem: String(cString: strerror(errno))) }
            bufferEnd += count
            return count > 0
        }
    }

    private func readLine() throws -> CorpusLine? {
        var scanned = bufferStart
        var tooLong = false
        var discarded = 0
        while true {
            if let newline = buffer[scanned..<bufferEnd].firstIndex(of: UInt8(ascii: "\n")) {
                return finishLine(end: newline, consumed: newline + 1, tooLong: tooLong, discarded: discarded)
            }
            scanned = bufferEnd
            if bufferEnd - bufferStart > maxLineBytes {
                // Drop what we have of an overlong line; keep scanning for its end.
                tooLong = true
                discarded += bufferEnd - bufferStart
                bufferStart = bufferEnd
                scanned = bufferEnd
            }
            let startBefore = bufferStart
            guard try refill() else {
                // Last line without a newline.
                guard bufferEnd > bufferStart || tooLong else { return nil }
                return finishLine(end: bufferEnd, consumed: bufferEnd, tooLong: tooLong, discarded: discarded)
            }
            scanned -= startBefore - bufferStart
        }
    }

    private func finishLine(end: Int, consumed: Int, tooLong: Bool, discarded: Int) -> CorpusLine {
        lineNumber += 1
        let length = Int64(discarded + consumed - bufferStart)
        let range = fileOffset..<(fileOffset + length)
        fileOffset += length
        var bytes = buffer[bufferStart..<end]
        bufferStart = consumed
        if bytes.last == UInt8(ascii: "\r") { bytes = bytes.dropLast() }
        let content: Result<String, SkipReason> = tooLong ? .failure(.lineTooLong) : parse(bytes)
        defer { nextDocumentID += 1 }
        return CorpusLine(documentID: nextDocumentID, file: paths[fileIndex], line: lineNumber, byteRange: range, content: content)
    }

    private func parse(_ bytes: ArraySlice<UInt8>) -> Result<String, SkipReason> {
        guard let line = String(validating: bytes, as: UTF8.self) else { return .failure(.invalidUTF8) }
        let text: String
        switch format {
        case .txt:
            text = line
        case .jsonl:
            guard let object = try? JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
                return .failure(.invalidJSON)
            }
            guard let field = object[textField] as? String else { return .failure(.missingField) }
            text = field
        }
        guard text.unicodeScalars.contains(where: { !$0.properties.isWhitespace }) else { return .failure(.emptyDocument) }
        return .success(text)
    }
}
