import Foundation
import Shards

/// Where a stream of rows stands: epoch, file (index into the source's list) and row in it.
public struct DataPosition: Codable, Equatable, Sendable {
    public var epoch = 0
    public var file = 0
    public var row = 0

    public init(epoch: Int = 0, file: Int = 0, row: Int = 0) {
        self.epoch = epoch
        self.file = file
        self.row = row
    }
}

/// What the trainer needs to know about the data before the first step.
public struct DataDescription: Sendable {
    public var width: Int
    public var hook: String
    public var modelName: String
    public var modelConfigSHA256: String
    /// Mean L2 norm of the rows, from the collection's statistics, when known.
    public var meanNorm: Double?

    public init(width: Int, hook: String, modelName: String = "", modelConfigSHA256: String = "", meanNorm: Double? = nil) {
        self.width = width
        self.hook = hook
        self.modelName = modelName
        self.modelConfigSHA256 = modelConfigSHA256
        self.meanNorm = meanNorm
    }
}

/// Raw activation rows of one hook, from shard files, in manifest order, epoch after epoch.
public final class ShardSource {
    public let files: [String]
    public let description: DataDescription
    public var position = DataPosition()
    private var reader: ShardReader?
    private var readerFile = -1

    /// - Parameters:
    ///   - directory: a folder of shards (with or without `manifest.json`).
    ///   - hook: the hook to read; may be nil when the folder holds one.
    public init(directory: String, hook: String?) throws {
        let all = try ShardDirectory.shardFiles(in: directory)
        let manifest = FileManager.default.fileExists(atPath: directory + "/" + ShardManifest.fileName)
            ? try ShardManifest.read(directory) : nil
        var hooks: [String] = []
        var byHook: [String: [String]] = [:]
        var headers: [String: ShardHeader] = [:]
        if let manifest {
            for shard in manifest.shards {
                if byHook[shard.hook] == nil { hooks.append(shard.hook) }
                byHook[shard.hook, default: []].append(directory + "/" + shard.file)
            }
        } else {
            for path in all {
                let header = try ShardReader(path: path).header
                if byHook[header.hook] == nil { hooks.append(header.hook) }
                byHook[header.hook, default: []].append(path)
                headers[header.hook] = header
            }
        }
        guard !hooks.isEmpty else { throw TrainerError("no shard files in \(directory)") }
        let chosen: String
        if let hook {
            guard byHook[hook] != nil else {
                throw TrainerError("no shards for hook \(hook) in \(directory); it holds: \(hooks.joined(separator: ", "))")
            }
            chosen = hook
        } else {
            guard hooks.count == 1 else {
                throw TrainerError("\(directory) holds \(hooks.count) hooks; pick one with --hook: \(hooks.joined(separator: ", "))")
            }
            chosen = hooks[0]
        }
        files = byHook[chosen]!
        let first = try ShardReader(path: files[0]).header
        let statistics = manifest?.statistics[chosen]
        description = DataDescription(
            width: first.width, hook: chosen, modelName: first.model.name, modelConfigSHA256: first.model.configSHA256Hex,
            meanNorm: statistics.map { $0.meanNorm })
    }

    /// The token windows the rows came from, rebuilt from the token, window and position
    /// columns (at most `limit`, in manifest order), for passes that need whole sequences.
    /// Needs every position of a window: a collection with `--skip-special` left gaps.
    public func tokenWindows(limit: Int) throws -> [[Int32]] {
        var windows: [[Int32]] = []
        for path in files where windows.count < limit {
            let reader = try ShardReader(path: path)
            var current: (id: Int64, tokens: [Int32])?
            for first in stride(from: 0, to: reader.rowCount, by: reader.header.blockRows) {
                let rows = try reader.readRows(first..<min(reader.rowCount, first + reader.header.blockRows))
                for i in 0..<rows.count {
                    if current?.id != rows.windows[i] {
                        if let done = current { windows.append(done.tokens) }
                        if windows.count == limit { return windows }
                        current = (rows.windows[i], [])
                    }
                    guard Int(rows.positions[i]) == current!.tokens.count else {
                        throw TrainerError(
                            "\(path) row \(first + i): window \(rows.windows[i]) has position \(rows.positions[i]) where \(current!.tokens.count) "
                                + "was expected, so its tokens cannot be rebuilt (collected with --skip-special?); give --text-file instead")
                    }
                    current!.tokens.append(rows.tokens[i])
                }
            }
            if let done = current { windows.append(done.tokens) }
        }
        return Array(windows.prefix(limit))
    }

    /// Rows over all files of the hook (one epoch).
    public func totalRows() throws -> Int { try files.reduce(0) { $0 + (try ShardReader(path: $1).rowCount) } }

    /// Up to `maxRows` rows (row-major floats) from the current position, moving on to the
    /// next file and, after the last, to the next epoch. Never returns an empty batch unless
    /// every file is empty.
    public func read(maxRows: Int) throws -> [Float] {
        var skipped = 0
        while true {
            if readerFile != position.file {
                reader = try ShardReader(path: files[position.file])
                readerFile = position.file
            }
            let reader = reader!
            if position.row < reader.rowCount {
                let end = min(reader.rowCount, position.row + maxRows)
                let rows = try reader.readRows(position.row..<end)
                position.row = end
                return rows.activations
            }
            position.row = 0
            position.file += 1
            if position.file == files.count {
                position.file = 0
                position.epoch += 1
            }
            skipped += 1
            if skipped > files.count { throw TrainerError("the shard files of \(description.hook) hold no rows") }
        }
    }
}

/// A problem the trainer reports as one sentence.
public struct TrainerError: Error, CustomStringConvertible, Equatable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Mixes rows across units and documents: filled to capacity, it hands out random rows
/// (each draw moves the last row into the hole) and is refilled whenever it drops to half,
/// so a batch is never one document's consecutive tokens.
public final class ShuffleBuffer {
    public let width: Int
    public let capacity: Int
    public let rows: Storage<Float>
    public private(set) var count = 0

    public init(width: Int, capacity: Int) {
        self.width = width
        self.capacity = capacity
        rows = Storage(count: capacity * width, repeating: 0)
    }

    public var needsRefill: Bool { count <= capacity / 2 }
    public var free: Int { capacity - count }

    /// Appends rows (at most `free`); returns how many were taken.
    @discardableResult
    public func append(_ values: UnsafeBufferPointer<Float>) -> Int {
        let taken = min(values.count / width, free)
        (rows.pointer + count * width).update(from: values.baseAddress!, count: taken * width)
        count += taken
        return taken
    }

    /// Moves `n` random rows into `out [n, d]`.
    public func draw(_ n: Int, into out: UnsafeMutablePointer<Float>, random: inout SplitMix64) {
        precondition(n <= count, "draw of \(n) rows from a buffer of \(count)")
        let d = width
        for r in 0..<n {
            let pick = Int(random.next() % UInt64(count))
            (out + r * d).update(from: rows.pointer + pick * d, count: d)
            count -= 1
            if pick != count { (rows.pointer + pick * d).update(from: rows.pointer + count * d, count: d) }
        }
    }

    /// Restores contents saved by a checkpoint.
    public func restore(_ values: [Float]) {
        precondition(values.count % width == 0 && values.count / width <= capacity, "buffer contents do not fit")
        count = values.count / width
        values.withUnsafeBufferPointer { (rows.pointer).update(from: $0.baseAddress!, count: values.count) }
    }

    public var contents: [Float] { Array(UnsafeBufferPointer(start: rows.pointer, count: count * width)) }
}
