import Corpus
import Foundation
import Testing

private func scratchFile(_ name: String, _ bytes: [UInt8]) throws -> String {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("corpus-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    let path = directory.appendingPathComponent(name).path
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return path
}

private func readAll(_ reader: CorpusReader) throws -> [CorpusLine] {
    var lines: [CorpusLine] = []
    while let line = try reader.next() { lines.append(line) }
    return lines
}

@Suite struct Reading {
    @Test(arguments: [16, 1 << 20])
    func jsonlWithEveryKindOfBadLine(_ bufferBytes: Int) throws {
        var bytes = Array(#"{"text": "first document"}"#.utf8) + [0x0A]
        bytes += Array(#"{"text": "caf\u00e9 \"quoted\"", "id": 7}"#.utf8) + [0x0D, 0x0A]  // CRLF
        bytes += [0x7B, 0x22, 0xFF, 0x22, 0x7D, 0x0A]                                   // invalid UTF-8
        bytes += Array("not json at all\n".utf8)
        bytes += Array(#"{"body": "no text field"}"#.utf8) + [0x0A]
        bytes += Array(#"{"text": "   \t "}"#.utf8) + [0x0A]                              // empty
        bytes += Array(#"{"text": 42}"#.utf8) + [0x0A]                                   // not a string
        bytes += [0x0A]                                                                  // blank line
        bytes += Array(#"{"text": "last, no newline"}"#.utf8)
        let first = try scratchFile("a.jsonl", bytes)
        let second = try scratchFile("b.jsonl", Array(#"{"text": "other file"}"#.utf8) + [0x0A])

        let lines = try readAll(CorpusReader(paths: [first, second], format: .jsonl, readBufferBytes: bufferBytes))
        #expect(lines.map(\.documentID) == Array(0..<10))
        #expect(lines.map(\.text) == ["first document", "café \"quoted\"", nil, nil, nil, nil, nil, nil, "last, no newline", "other file"])
        let reasons = lines.map { line -> SkipReason? in if case .failure(let r) = line.content { r } else { nil } }
        #expect(reasons == [nil, nil, .invalidUTF8, .invalidJSON, .missingField, .emptyDocument, .missingField, .invalidJSON, nil, nil])
        #expect(lines.map(\.line) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 1])
        #expect(lines[9].file == second)
        // Byte ranges lead back to the exact bytes of each line, newline included.
        for line in lines where line.file == first {
            let slice = Array(bytes[Int(line.byteRange.lowerBound)..<Int(line.byteRange.upperBound)])
            #expect(slice.last == 0x0A || line.byteRange.upperBound == Int64(bytes.count))
        }
        #expect(lines.last(where: { $0.file == first })!.byteRange.upperBound == Int64(bytes.count))
    }

    @Test func txtLinesAndOverlongLinesWithBoundedMemory() throws {
        let long = String(repeating: "x", count: 5000)
        let path = try scratchFile("c.txt", Array("one\n\(long)\nthree\n".utf8))
        let lines = try readAll(CorpusReader(paths: [path], format: .txt, maxLineBytes: 1000, readBufferBytes: 64))
        #expect(lines.map(\.text) == ["one", nil, "three"])
        #expect(lines[1].byteRange == 4..<5005)
        #expect(lines[2].byteRange == 5005..<5011)
    }

    @Test func missingFileIsACorpusError() {
        let reader = CorpusReader(paths: ["/nonexistent/corpus.txt"], format: .txt)
        let error = #expect(throws: CorpusError.self) { _ = try reader.next() }
        #expect(error?.description.contains("/nonexistent/corpus.txt") == true)
    }
}

@Suite struct Packing {
    @Test func bertStyleWindowsKeepEveryTokenOnceAndNeverDoubleTheSeparator() {
        var packer = WindowPacker(context: 8, prefix: [101], suffix: [102], separator: [102], firstWindowID: 1000)
        let documents: [(Int64, [Int32])] = [(0, [1, 2, 3]), (1, Array(10..<25)), (2, [30]), (4, [40, 41, 42, 43, 44])]
        var windows: [PackedWindow] = []
        for (id, tokens) in documents { windows += packer.add(document: id, tokens: tokens) }
        if let last = packer.finish() { windows.append(last) }

        #expect(windows.map(\.id) == Array(1000..<(1000 + Int64(windows.count))))
        for window in windows {
            #expect(window.tokens.count <= 8)
            #expect(window.tokens.first == 101 && window.tokens.last == 102)
            #expect(!zip(window.tokens, window.tokens.dropFirst()).contains { $0 == 102 && $1 == 102 })
            #expect(window.tokens.count == window.documents.count && window.tokens.count == window.special.count)
        }
        // Content tokens, in order, are exactly the documents' tokens: nothing lost or repeated.
        let content = windows.flatMap { w in zip(w.tokens, zip(w.documents, w.special)).filter { !$0.1.1 }.map { ($0.0, $0.1.0) } }
        #expect(content.map(\.0) == documents.flatMap(\.1))
        #expect(content.map(\.1) == documents.flatMap { id, tokens in tokens.map { _ in id } })
        #expect(windows[0].tokens == [101, 1, 2, 3, 102, 10, 11, 102])
    }

    @Test func gptStyleWindowsAreFullAndSeparatedByEndOfText() {
        var packer = WindowPacker(context: 4, prefix: [], suffix: [], separator: [50256])
        var windows = packer.add(document: 0, tokens: [1, 2, 3])
        windows += packer.add(document: 1, tokens: [4, 5, 6, 7, 8])
        #expect(windows.map(\.tokens) == [[1, 2, 3, 50256], [4, 5, 6, 7]])
        #expect(windows[0].documents == [0, 0, 0, 0])
        #expect(packer.finish()?.tokens == [8])
        #expect(packer.finish() == nil)
    }
}
