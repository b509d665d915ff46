import Corpus

/// A corpus that no longer matches the units planned from it.
public struct PlanningError: Error, Equatable, Sendable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Cuts a corpus into units while streaming it: memory holds one unit's lines, however large
/// the corpus. A unit is a run of whole lines of one file; it closes after the line that
/// brings its corpus bytes to ``CorpusSpec/unitBytes`` (about `unitTokens` tokens at 4 bytes
/// each), at the end of its file, or at ``ClusterWire/Limits/maxUnitLines`` lines. Bytes are
/// counted as they lie in the file (skipped lines included), as `actcluster collect` counts
/// them. Planning resumes from any unit's ``UnitPlan/end`` (the journal keeps it).
public final class UnitPlanner {
    public let corpus: CorpusSpec
    /// Where the next unit starts.
    public private(set) var position: CorpusPosition
    public private(set) var nextUnit: UnitID
    private var reader: CorpusReader?
    private let readBufferBytes: Int

    public init(corpus: CorpusSpec, startingAt position: CorpusPosition = .start, nextUnit: UnitID = 0, readBufferBytes: Int = 1 << 20) {
        self.corpus = corpus
        self.position = position
        self.nextUnit = nextUnit
        self.readBufferBytes = readBufferBytes
    }

    /// A planner that goes on where `state` stopped.
    public convenience init(resuming state: CoordinatorState) {
        self.init(corpus: state.run.corpus, startingAt: state.planPosition, nextUnit: state.nextUnit)
    }

    /// The next unit with its lines, or nil at the end of the corpus.
    public func next() throws -> (plan: UnitPlan, lines: [CorpusLine])? {
        let budget = corpus.unitBytes
        while position.fileIndex < corpus.paths.count {
            let reader =
                self.reader
                ?? CorpusReader(
                    paths: [corpus.paths[position.fileIndex]], format: corpus.format, textField: corpus.textField, maxLineBytes: corpus.maxLineBytes,
                    startingAt: CorpusPosition(byteOffset: position.byteOffset, linesBefore: position.linesBefore, documentID: position.documentID),
                    readBufferBytes: readBufferBytes)
            self.reader = reader
            var lines: [CorpusLine] = []
            var bytes: Int64 = 0
            var textBytes = 0
            var endOfFile = false
            while bytes < budget && lines.count < ClusterWire.Limits.maxUnitLines {
                guard let line = try reader.next() else {
                    endOfFile = true
                    break
                }
                bytes += line.byteRange.upperBound - line.byteRange.lowerBound
                textBytes += line.text?.utf8.count ?? 0
                lines.append(line)
            }
            let fileIndex = position.fileIndex
            if endOfFile {
                self.reader = nil
                position = CorpusPosition(fileIndex: fileIndex + 1, byteOffset: 0, linesBefore: 0, documentID: reader.position.documentID)
            }
            guard let first = lines.first, let last = lines.last else { continue }
            let plan = UnitPlan(
                unit: nextUnit, fileIndex: fileIndex, byteRange: first.byteRange.lowerBound..<last.byteRange.upperBound, firstDocumentID: first.documentID,
                firstLine: first.line, lineCount: lines.count, textBytes: textBytes)
            nextUnit = UnitID(nextUnit.rawValue + 1)
            if !endOfFile { position = plan.end }
            return (plan, lines)
        }
        return nil
    }
}

/// Reads a planned unit's lines again (to assign it after a restart or a retry) by seeking
/// to its byte range, and checks that the file still holds the lines the plan describes.
public struct UnitReader: Sendable {
    public let corpus: CorpusSpec

    public init(corpus: CorpusSpec) { self.corpus = corpus }

    public func lines(of plan: UnitPlan) throws -> [CorpusLine] {
        guard plan.fileIndex < corpus.paths.count else {
            throw PlanningError("unit \(plan.unit) names corpus file \(plan.fileIndex), but the run has \(corpus.paths.count) files")
        }
        let path = corpus.paths[plan.fileIndex]
        let reader = CorpusReader(
            paths: [path], format: corpus.format, textField: corpus.textField, maxLineBytes: corpus.maxLineBytes,
            startingAt: CorpusPosition(byteOffset: plan.byteRange.lowerBound, linesBefore: plan.firstLine - 1, documentID: plan.firstDocumentID),
            readBufferBytes: Int(min(max(plan.byteRange.upperBound - plan.byteRange.lowerBound, 4096), 1 << 20)))
        var lines: [CorpusLine] = []
        lines.reserveCapacity(plan.lineCount)
        var textBytes = 0
        while lines.count < plan.lineCount, let line = try reader.next() {
            textBytes += line.text?.utf8.count ?? 0
            lines.append(line)
        }
        let end = lines.last?.byteRange.upperBound ?? plan.byteRange.lowerBound
        guard lines.count == plan.lineCount, end == plan.byteRange.upperBound, textBytes == plan.textBytes else {
            throw PlanningError(
                "corpus file \(path) changed since unit \(plan.unit) was planned: expected \(plan.lineCount) lines ending at byte \(plan.byteRange.upperBound) with \(plan.textBytes) bytes of text, found \(lines.count) lines ending at byte \(end) with \(textBytes); restore the file or start the run again in a new output folder")
        }
        return lines
    }
}
