import Foundation
import Glibc

/// A folder of shard files, usually with a `manifest.json`.
public enum ShardDirectory {
    /// Shard files of a folder: in manifest order when there is a manifest, else by name.
    public static func shardFiles(in directory: String) throws -> [String] {
        if FileManager.default.fileExists(atPath: directory + "/" + ShardManifest.fileName) {
            return try ShardManifest.read(directory).shards.map { directory + "/" + $0.file }
        }
        return try listedShards(in: directory)
    }

    /// The `*.shard` files of a folder, sorted by name.
    public static func listedShards(in directory: String) throws -> [String] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw ShardError(path: directory, part: .file, check: "list folder", expected: "a readable folder", found: "\(error)")
        }
        return names.filter { $0.hasSuffix("." + ShardFileFormat.fileExtension) && !$0.hasPrefix(".") }.sorted().map { directory + "/" + $0 }
    }

    /// Expands folders into their shard files; files stay as given.
    public static func expand(_ paths: [String]) throws -> [String] {
        try paths.flatMap { path -> [String] in
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
                return try shardFiles(in: path)
            }
            return [path]
        }
    }

    /// Checks a folder: the manifest (when present) against the files it lists (size, CRC-32C
    /// of the whole file, rows, hook, unit), every shard's checksums, and shard files the
    /// manifest does not list.
    public static func verify(_ directory: String) -> [ShardError] {
        let manifestPath = directory + "/" + ShardManifest.fileName
        guard FileManager.default.fileExists(atPath: manifestPath) else {
            do {
                return try listedShards(in: directory).flatMap { ShardReader.verify(path: $0) }
            } catch let error as ShardError {
                return [error]
            } catch {
                return [ShardError(path: directory, part: .file, check: "list folder", expected: "a readable folder", found: "\(error)")]
            }
        }
        let manifest: ShardManifest
        do {
            manifest = try ShardManifest.read(manifestPath)
        } catch let error as ShardError {
            return [error]
        } catch {
            return [ShardError(path: manifestPath, part: .manifest, check: "read", expected: "a manifest", found: "\(error)")]
        }
        var problems: [ShardError] = []
        for entry in manifest.shards {
            let path = directory + "/" + entry.file
            func fail(_ check: String, _ expected: String, _ found: String) {
                problems.append(ShardError(path: path, part: .file, check: check + " (manifest.json)", expected: expected, found: found))
            }
            guard let (size, crc) = fileSizeAndCRC(path) else {
                fail("presence", "a file listed in manifest.json", "no readable file")
                continue
            }
            if size != entry.bytes { fail("size", "\(entry.bytes) bytes", "\(size) bytes") }
            if CRC32C.hex(crc) != entry.crc32c { fail("CRC-32C of the whole file", entry.crc32c, CRC32C.hex(crc)) }
            do {
                let reader = try ShardReader(path: path)
                if reader.rowCount != entry.rows { fail("rows", "\(entry.rows)", "\(reader.rowCount)") }
                if reader.header.hook != entry.hook { fail("hook", entry.hook, reader.header.hook) }
                if reader.header.unitID != entry.unit { fail("unit", "\(entry.unit)", "\(reader.header.unitID)") }
                if reader.header.dtype.name != manifest.dtype { fail("dtype", manifest.dtype, reader.header.dtype.name) }
                problems += reader.verify()
            } catch let error as ShardError {
                problems.append(error)
            } catch {
                fail("open", "a shard file", "\(error)")
            }
        }
        let listed = Set(manifest.shards.map { directory + "/" + $0.file })
        for path in (try? listedShards(in: directory)) ?? [] where !listed.contains(path) {
            problems.append(
                ShardError(path: path, part: .file, check: "listing in manifest.json", expected: "every shard file listed", found: "not listed"))
        }
        return problems
    }

    /// Size and CRC-32C of a whole file, read in 1 MiB pieces; nil when it cannot be read.
    public static func fileSizeAndCRC(_ path: String) -> (Int, UInt32)? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        var crc: UInt32 = 0
        var size = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                return nil
            }
            if count == 0 { return (size, crc) }
            crc = buffer.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<count]), continuing: crc) }
            size += count
        }
    }
}
