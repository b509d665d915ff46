import ArgumentParser
import Foundation
import Platform
import SafeTensors
import Shards

/// `actcluster export`: shard rows into files numpy and PyTorch read directly.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the rows of shard files as safetensors or .npy, for numpy and PyTorch.",
        discussion: """
            safetensors holds `activations` float32 [rows, d], `tokens` int32 [rows], `doc` int64, \
            `window` int64 and `pos` int32, with hook, model and dtype in its metadata. npy holds \
            the activations only, float32 [rows, d]. Rows follow the order of the inputs (a \
            folder: its manifest's order, else file names). Every block is checked while it is \
            read. Memory: one block plus 24 bytes per row for the metadata columns.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case safetensors, npy
    }

    @Argument(help: ArgumentHelp("Shard files or folders of them.", valueName: "path"))
    var paths: [String]

    @Option(help: "Output format: safetensors or npy.")
    var format: Format

    @Option(help: ArgumentHelp("Output file (written to a temporary name, then renamed).", valueName: "file"))
    var out: String

    @Option(help: ArgumentHelp("The hook to export when the inputs hold several.", valueName: "name"))
    var hook: String?

    func run() throws {
        let readers = try selectReaders()
        let width = readers.first?.header.width ?? 0
        let rows = readers.reduce(0) { $0 + $1.rowCount }
        do {
            switch format {
            case .safetensors: try writeSafeTensors(readers, rows: rows, width: width)
            case .npy: try writeNpy(readers, rows: rows, width: width)
            }
        } catch let error as CommandFailure {
            throw error
        } catch {
            throw CommandFailure("\(error)")
        }
        print("wrote \(out): \(rows) rows × \(width) (\(format.rawValue)) from \(readers.count) shard files")
    }

    /// Opens the inputs and keeps the shards of the chosen hook.
    func selectReaders() throws -> [ShardReader] {
        let files: [String]
        let readers: [ShardReader]
        do {
            files = try ShardDirectory.expand(paths)
            readers = try files.map { try ShardReader(path: $0) }
        } catch {
            throw CommandFailure("\(error)")
        }
        guard !readers.isEmpty else { throw CommandFailure("no shard files in \(paths.joined(separator: ", "))") }
        var hooks: [String] = []
        for reader in readers where !hooks.contains(reader.header.hook) { hooks.append(reader.header.hook) }
        let chosen: String
        if let hook {
            guard hooks.contains(hook) else {
                throw CommandFailure("no shards for hook \(hook); the inputs hold: \(hooks.joined(separator: ", "))")
            }
            chosen = hook
        } else {
            guard hooks.count == 1 else {
                throw CommandFailure("the inputs hold \(hooks.count) hooks; pick one with --hook: \(hooks.joined(separator: ", "))")
            }
            chosen = hooks[0]
        }
        let selected = readers.filter { $0.header.hook == chosen }
        let width = selected[0].header.width
        if let other = selected.first(where: { $0.header.width != width }) {
            throw CommandFailure("\(other.path) has width \(other.header.width), but \(selected[0].path) has \(width); export them separately")
        }
        return selected
    }

    /// Calls `body` with each block's rows, in order, checking every block.
    private func forEachBlock(_ readers: [ShardReader], _ body: (ShardRows) throws -> Void) throws {
        for reader in readers {
            for number in reader.blocks.indices { try body(try reader.readBlock(number)) }
        }
    }

    private final class Columns {
        var tokens: [Int32] = []
        var documents: [Int64] = []
        var windows: [Int64] = []
        var positions: [Int32] = []
    }

    private func writeSafeTensors(_ readers: [ShardReader], rows: Int, width: Int) throws {
        let columns = Columns()
        columns.tokens.reserveCapacity(rows)
        columns.documents.reserveCapacity(rows)
        columns.windows.reserveCapacity(rows)
        columns.positions.reserveCapacity(rows)
        let first = readers[0].header
        let tensors = [
            OutputTensor(name: "activations", dtype: .f32, shape: [rows, width]) { writer in
                try forEachBlock(readers) { block in
                    try block.activations.withUnsafeBytes { try writer.write($0) }
                    columns.tokens += block.tokens
                    columns.documents += block.documents
                    columns.windows += block.windows
                    columns.positions += block.positions
                }
            },
            OutputTensor(name: "tokens", dtype: .i32, shape: [rows]) { writer in try columns.tokens.withUnsafeBytes { try writer.write($0) } },
            OutputTensor(name: "doc", dtype: .i64, shape: [rows]) { writer in try columns.documents.withUnsafeBytes { try writer.write($0) } },
            OutputTensor(name: "window", dtype: .i64, shape: [rows]) { writer in try columns.windows.withUnsafeBytes { try writer.write($0) } },
            OutputTensor(name: "pos", dtype: .i32, shape: [rows]) { writer in try columns.positions.withUnsafeBytes { try writer.write($0) } },
        ]
        let metadata = [
            "hook": first.hook, "model": first.model.name, "model_config_sha256": first.model.configSHA256Hex,
            "stored_dtype": first.dtype.name, "format": "actcluster export",
        ]
        try SafeTensorsWriter.write(tensors, metadata: metadata, to: out)
    }

    private func writeNpy(_ readers: [ShardReader], rows: Int, width: Int) throws {
        let writer = try DurableFileWriter(path: out)
        do {
            try writer.write(Self.npyHeader(shape: [rows, width], descr: "<f4"))
            try forEachBlock(readers) { block in try block.activations.withUnsafeBytes { try writer.write($0) } }
            try writer.commit()
        } catch {
            writer.abandon()
            throw error
        }
    }

    /// A .npy version 1.0 header: magic, version, little-endian header length, then a Python
    /// dict literal padded with spaces and a newline so the data starts 64-byte aligned.
    static func npyHeader(shape: [Int], descr: String) -> [UInt8] {
        let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var dict = Array("{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }".utf8)
        let unpadded = 10 + dict.count + 1
        dict += [UInt8](repeating: UInt8(ascii: " "), count: (64 - unpadded % 64) % 64)
        dict.append(UInt8(ascii: "\n"))
        let length = UInt16(dict.count)
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(length & 0xff), UInt8(length >> 8)] + dict
    }
}
