import ArgumentParser
import Foundation
import Shards

/// `actcluster verify`: every checksum of shard files and collection folders.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check every checksum of shard files or collection folders; exit non-zero on any problem.",
        discussion: """
            For each file: the header, index and trailer CRC-32C, then every block's CRC-32C of the \
            stored bytes and, after decoding, of the uncompressed data. For a folder with a \
            manifest.json: also each listed file's size, CRC-32C, rows, hook and unit, and shard \
            files the manifest does not list. Each problem names the file, the block and what was \
            expected versus found.
            """
    )

    @Argument(help: ArgumentHelp("Shard files or folders of them.", valueName: "path"))
    var paths: [String]

    @Flag(help: "Print only problems.")
    var quiet = false

    func run() throws {
        let (lines, problems) = check()
        for line in lines { print(line) }
        if problems > 0 {
            throw CommandFailure("\(problems) problem\(problems == 1 ? "" : "s") found; do not use the damaged shards until they are re-collected or restored")
        }
    }

    /// Report lines and the number of problems.
    func check() -> (lines: [String], problems: Int) {
        var lines: [String] = []
        var problems = 0
        for path in paths {
            var isDirectory: ObjCBool = false
            let found: [ShardError]
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                lines.append("FAILED \(path): no such file or folder")
                problems += 1
                continue
            }
            found = isDirectory.boolValue ? ShardDirectory.verify(path) : ShardReader.verify(path: path)
            for problem in found { lines.append("FAILED \(problem)") }
            problems += found.count
            if found.isEmpty && !quiet { lines.append("ok     \(path)\(summary(path, isDirectory.boolValue))") }
        }
        return (lines, problems)
    }

    private func summary(_ path: String, _ isDirectory: Bool) -> String {
        guard !isDirectory else {
            let files = (try? ShardDirectory.shardFiles(in: path))?.count ?? 0
            return " (\(files) shard files)"
        }
        guard let reader = try? ShardReader(path: path) else { return "" }
        return " (\(reader.rowCount) rows, \(reader.blocks.count) blocks)"
    }
}
