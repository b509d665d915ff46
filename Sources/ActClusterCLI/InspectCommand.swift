import ArgumentParser
import Foundation
import Shards

/// `actcluster inspect`: what a shard file or a collection folder holds.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show the header, blocks, rows and compression ratio of shard files or a collection folder.",
        discussion: """
            Ratios compare the file's size (header, blocks with row metadata, index) with the \
            activations alone stored raw, as float32 and as the file's dtype. Opening a file checks \
            its header and index; `actcluster verify` also checks every block.
            """
    )

    @Argument(help: ArgumentHelp("Shard files or folders of them.", valueName: "path"))
    var paths: [String]

    @Flag(help: "Also list every block: rows, offset, stored and uncompressed bytes, CRC-32C.")
    var blocks = false

    func run() throws {
        for line in try report() { print(line) }
    }

    func report() throws -> [String] {
        var lines: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw CommandFailure("\(path): no such file or folder")
            }
            if isDirectory.boolValue {
                lines += try folderReport(path)
            } else {
                lines += try fileReport(path)
            }
        }
        return lines
    }

    private func open(_ path: String) throws -> ShardReader {
        do {
            return try ShardReader(path: path)
        } catch {
            throw CommandFailure("\(error)")
        }
    }

    private func fileReport(_ path: String) throws -> [String] {
        let reader = try open(path)
        let header = reader.header
        let values = header.rowCount * header.width
        var lines = [
            "file     \(path) (\(reader.fileSize) bytes)",
            "format   shard version \(header.version), codec \(header.codec)",
            "model    \(header.model.name.isEmpty ? "(unnamed)" : header.model.name), config.json SHA-256 \(header.model.configSHA256Hex)",
            "hook     \(header.hook)",
            "unit     \(header.unitID)",
            "dtype    \(header.dtype), width \(header.width)",
            "rows     \(header.rowCount) in \(reader.blocks.count) blocks of up to \(header.blockRows)",
            "ratio    \(ratio(values * 4, reader.fileSize)) vs raw fp32 (\(values * 4) bytes), "
                + "\(ratio(values * header.dtype.elementSize, reader.fileSize)) vs raw \(header.dtype) (\(values * header.dtype.elementSize) bytes)",
        ]
        if blocks {
            lines.append(
                [pad("block", 5), pad("rows", 5), pad("first row", 12), pad("offset", 8), pad("stored", 12), pad("uncompressed", 13), pad("ratio", 6),
                 "  crc32c(stored)  crc32c(data)"].joined(separator: " "))
            for (number, block) in reader.blocks.enumerated() {
                lines.append(
                    [
                        pad("\(number)", 5), pad("\(block.rows)", 5), pad("\(block.firstRow)", 12), pad("\(block.offset)", 8),
                        pad("\(block.storedSize)", 12), pad("\(block.uncompressedSize)", 13),
                        pad(ratio(block.uncompressedSize, block.storedSize), 6), "  " + CRC32C.hex(block.storedCRC),
                        "      " + CRC32C.hex(block.dataCRC),
                    ].joined(separator: " "))
            }
        }
        return lines
    }

    private func folderReport(_ folder: String) throws -> [String] {
        var lines: [String] = []
        let manifestPath = folder + "/" + ShardManifest.fileName
        if FileManager.default.fileExists(atPath: manifestPath) {
            let manifest: ShardManifest
            do {
                manifest = try ShardManifest.read(manifestPath)
            } catch {
                throw CommandFailure("\(error)")
            }
            lines.append("manifest \(manifestPath)")
            lines.append("model    \(manifest.model.name), config.json SHA-256 \(manifest.model.configSHA256)")
            lines.append("hooks    \(manifest.hooks.joined(separator: ", "))")
            lines.append("dtype    \(manifest.dtype), context \(manifest.context), \(manifest.rows) rows in \(manifest.shards.count) shards")
            for (hook, statistics) in manifest.statistics.sorted(by: { $0.key < $1.key }) {
                let meanVariance = statistics.variance.reduce(0, +) / Double(max(statistics.variance.count, 1))
                lines.append(
                    "stats    \(hook): \(statistics.count) rows, mean norm \(String(format: "%.4g", statistics.meanNorm)), "
                        + "mean variance \(String(format: "%.4g", meanVariance))")
            }
            if !manifest.skipped.isEmpty {
                lines.append("skipped  " + manifest.skipped.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "))
            }
        }
        let files: [String]
        do {
            files = try ShardDirectory.shardFiles(in: folder)
        } catch {
            throw CommandFailure("\(error)")
        }
        var rows = 0, bytes = 0, raw32 = 0, rawStored = 0
        lines.append("shard                                        hook                          unit      rows  dtype       bytes  ratio(fp32)")
        for path in files {
            let reader = try open(path)
            let header = reader.header
            let values = header.rowCount * header.width
            rows += header.rowCount
            bytes += reader.fileSize
            raw32 += values * 4
            rawStored += values * header.dtype.elementSize
            let name = path.split(separator: "/").last.map(String.init) ?? path
            lines.append(
                "\(name.padding(toLength: 44, withPad: " ", startingAt: 0)) \(header.hook.padding(toLength: 29, withPad: " ", startingAt: 0)) "
                    + "\(pad("\(header.unitID)", 4)) \(pad("\(header.rowCount)", 9))  \(header.dtype)  \(pad("\(reader.fileSize)", 10))  "
                    + ratio(values * 4, reader.fileSize))
        }
        lines.append(
            "total    \(files.count) shards, \(rows) rows, \(bytes) bytes; ratio \(ratio(raw32, bytes)) vs raw fp32, "
                + "\(ratio(rawStored, bytes)) vs raw stored dtype")
        return lines
    }

    private func ratio(_ raw: Int, _ stored: Int) -> String {
        stored == 0 ? "-" : String(format: "%.3f×", Double(raw) / Double(stored))
    }

    private func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }
}
