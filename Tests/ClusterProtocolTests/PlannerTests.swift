import ClusterProtocol
import Corpus
import Foundation
import Testing

/// Three files: jsonl with bad lines, one empty file, and a file without a final newline.
private func corpusFiles() throws -> [String] {
    let directory = try scratchDirectory("planner")
    var first = ""
    for index in 0..<40 {
        switch index % 9 {
        case 3: first += "not json\n"
        case 5: first += "{\"text\": \"   \"}\n"
        case 7: first += "{\"other\": 1}\n"
        default: first += "{\"text\": \"document \(index) " + String(repeating: "word ", count: index % 6) + "café\"}\n"
        }
    }
    var third = ""
    for index in 0..<13 { third += "{\"text\": \"tail \(index)\"}" + (index == 12 ? "" : "\r\n") }
    let paths = [directory + "/a.jsonl", directory + "/empty.jsonl", directory + "/c.jsonl"]
    try writeFile(paths[0], first)
    try writeFile(paths[1], "")
    try writeFile(paths[2], third)
    return paths
}

private func allLines(_ paths: [String]) throws -> [CorpusLine] {
    let reader = CorpusReader(paths: paths, format: .jsonl)
    var lines: [CorpusLine] = []
    while let line = try reader.next() { lines.append(line) }
    return lines
}

private func plans(_ planner: UnitPlanner) throws -> [(plan: UnitPlan, lines: [CorpusLine])] {
    var result: [(UnitPlan, [CorpusLine])] = []
    while let next = try planner.next() { result.append(next) }
    return result
}

private func same(_ a: [CorpusLine], _ b: [CorpusLine]) -> Bool {
    a.count == b.count
        && zip(a, b).allSatisfy {
            $0.documentID == $1.documentID && $0.file == $1.file && $0.line == $1.line && $0.byteRange == $1.byteRange && $0.content == $1.content
        }
}

@Suite struct Planning {
    @Test(arguments: [1, 16, 50, 100_000])
    func unitsCoverTheCorpusOnceInOrder(_ unitTokens: Int) throws {
        let paths = try corpusFiles()
        let spec = CorpusSpec(paths: paths, format: .jsonl, unitTokens: unitTokens)
        let units = try plans(UnitPlanner(corpus: spec, readBufferBytes: 16))
        let everything = try allLines(paths)
        #expect(same(units.flatMap(\.lines), everything))
        #expect(units.map(\.plan.unit) == (0..<units.count).map { UnitID(UInt64($0)) })
        for (plan, lines) in units {
            #expect(Set(lines.map(\.file)) == [paths[plan.fileIndex]], "a unit never spans files")
            #expect(plan.lineCount == lines.count && plan.firstDocumentID == lines[0].documentID && plan.firstLine == lines[0].line)
            #expect(plan.byteRange == lines[0].byteRange.lowerBound..<lines.last!.byteRange.upperBound)
            #expect(plan.textBytes == lines.reduce(0) { $0 + ($1.text?.utf8.count ?? 0) })
            // Closed after the line that reached the budget, or at the end of the file.
            let bytes = plan.byteRange.upperBound - plan.byteRange.lowerBound
            let lastBytes = lines.last!.byteRange.upperBound - lines.last!.byteRange.lowerBound
            #expect(bytes - lastBytes < spec.unitBytes)
        }
        if unitTokens == 100_000 { #expect(units.count == 2) }  // one per non-empty file
        if unitTokens == 1 { #expect(units.count == everything.count) }
    }

    @Test func planningResumesFromAnyUnitsEnd() throws {
        let paths = try corpusFiles()
        let spec = CorpusSpec(paths: paths, format: .jsonl, unitTokens: 16)
        let all = try plans(UnitPlanner(corpus: spec))
        for (index, unit) in all.enumerated() {
            let resumed = try plans(UnitPlanner(corpus: spec, startingAt: unit.plan.end, nextUnit: UnitID(UInt64(index + 1))))
            #expect(resumed.map(\.plan) == all[(index + 1)...].map(\.plan))
        }
    }

    @Test func resumesFromTheJournaledState() throws {
        let paths = try corpusFiles()
        let run = RunDefinition(run: 1, corpus: CorpusSpec(paths: paths, format: .jsonl, unitTokens: 16), settings: Samples.settings)
        let all = try plans(UnitPlanner(corpus: run.corpus))
        var state = CoordinatorState(run: run)
        for unit in all.prefix(4) { #expect(state.apply(.planned(unit.plan)).changed) }
        let rest = try plans(UnitPlanner(resuming: state))
        #expect(rest.map(\.plan) == all.dropFirst(4).map(\.plan))
        for unit in rest { #expect(state.apply(.planned(unit.plan)).changed) }
        #expect(state.apply(.planningFinished).changed)
    }

    @Test func unitReaderReadsAUnitAgainBySeeking() throws {
        let paths = try corpusFiles()
        let spec = CorpusSpec(paths: paths, format: .jsonl, unitTokens: 16)
        let reader = UnitReader(corpus: spec)
        for (plan, lines) in try plans(UnitPlanner(corpus: spec)).reversed() {
            #expect(same(try reader.lines(of: plan), lines))
            // What ASSIGN carries gives the collector the very same lines.
            let assignment = Assignment(run: 1, lease: 1, attempt: 1, settings: Samples.settings, file: paths[plan.fileIndex], plan: plan, corpusLines: lines)
            guard case .assign(let decoded) = try CoordinatorMessage.decode(frames: CoordinatorMessage.assign(assignment).encode()) else {
                Issue.record("not an ASSIGN")
                continue
            }
            #expect(same(decoded.corpusLines, lines))
        }
    }

    @Test func aChangedCorpusIsNoticed() throws {
        let paths = try corpusFiles()
        let spec = CorpusSpec(paths: paths, format: .jsonl, unitTokens: 16)
        let units = try plans(UnitPlanner(corpus: spec))
        var text = try String(contentsOfFile: paths[0], encoding: .utf8)
        text = text.replacingOccurrences(of: "document 1 ", with: "document one ")
        try writeFile(paths[0], text)
        #expect {
            _ = try UnitReader(corpus: spec).lines(of: units[0].plan)
        } throws: { error in
            error is PlanningError && "\(error)".contains("changed since unit 0 was planned")
        }
    }

    @Test func corpusReaderStartsAtAPosition() throws {
        let paths = try corpusFiles()
        let everything = try allLines(paths)
        // Start at line 10 of the first file and read across the other files.
        let start = CorpusPosition(fileIndex: 0, byteOffset: everything[9].byteRange.lowerBound, linesBefore: 9, documentID: 9)
        let reader = CorpusReader(paths: paths, format: .jsonl, startingAt: start)
        #expect(reader.position == start)
        var lines: [CorpusLine] = []
        while let line = try reader.next() {
            lines.append(line)
            #expect(reader.position.documentID == line.documentID + 1)
        }
        #expect(same(lines, Array(everything[9...])))
        #expect(reader.position == CorpusPosition(fileIndex: 3, byteOffset: 0, linesBefore: 0, documentID: Int64(everything.count)))
    }
}
