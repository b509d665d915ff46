import Foundation
import Platform

/// Element types of the safetensors format.
public enum TensorDType: String, Sendable, CaseIterable {
    case f64 = "F64", f32 = "F32", f16 = "F16", bf16 = "BF16"
    case i64 = "I64", i32 = "I32", i16 = "I16", i8 = "I8", u8 = "U8", bool = "BOOL"

    public var byteSize: Int {
        switch self {
        case .f64, .i64: 8
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool: 1
        }
    }
}

/// Where one tensor lives in a file.
public struct TensorInfo: Sendable, Equatable {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    /// Byte range inside the data section (after the header).
    public let dataRange: Range<Int>

    public var elementCount: Int { shape.reduce(1, *) }
}

/// Why a safetensors file could not be read or a tensor could not be served.
public struct SafeTensorsError: Error, Equatable, CustomStringConvertible {
    public let path: String
    public let problem: String

    public var description: String { "\(path): \(problem)" }
}

/// A safetensors file, memory-mapped read-only. Every tensor's dtype, shape and byte range
/// are validated when the file opens, so later reads cannot go out of bounds.
public final class SafeTensorsFile: @unchecked Sendable {
    public let path: String
    /// Tensors in file order.
    public let tensors: [TensorInfo]
    public let metadata: [String: String]
    private let byName: [String: Int]
    private let mapping: UnsafeRawBufferPointer
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        func fail(_ problem: String) -> SafeTensorsError { SafeTensorsError(path: path, problem: problem) }

        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw fail("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(descriptor) }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw fail("cannot stat: \(String(cString: strerror(errno)))") }
        let size = Int(info.st_size)
        guard size >= 8 else { throw fail("file is \(size) bytes, too short for a safetensors header") }
        guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, descriptor, 0), base != MAP_FAILED else {
            throw fail("cannot mmap: \(String(cString: strerror(errno)))")
        }
        mapping = UnsafeRawBufferPointer(start: base, count: size)
        do {
            let headerSize = Int(UInt64(littleEndian: mapping.loadUnaligned(as: UInt64.self)))
            guard headerSize <= min(size - 8, 100 << 20) else {
                throw fail("header length \(headerSize) does not fit in a \(size)-byte file; is this a safetensors file?")
            }
            dataStart = 8 + headerSize
            let headerBytes = Data(mapping[8..<dataStart])
            guard let header = try? JSONSerialization.jsonObject(with: headerBytes) as? [String: Any] else {
                throw fail("header is not a JSON object")
            }
            var parsedMetadata: [String: String] = [:]
            var parsed: [TensorInfo] = []
            for (name, value) in header {
                if name == "__metadata__" {
                    guard let entries = value as? [String: Any] else { throw fail("__metadata__ is not an object") }
                    for (key, entry) in entries {
                        guard let text = entry as? String else { throw fail("__metadata__.\(key) is not a string") }
                        parsedMetadata[key] = text
                    }
                    continue
                }
                parsed.append(try Self.parseEntry(name: name, value: value, dataSize: size - dataStart, fail: fail))
            }
            parsed.sort { $0.dataRange.lowerBound < $1.dataRange.lowerBound }
            for (previous, next) in zip(parsed, parsed.dropFirst()) where previous.dataRange.upperBound > next.dataRange.lowerBound {
                throw fail("tensors \(previous.name) and \(next.name) overlap")
            }
            tensors = parsed
            metadata = parsedMetadata
            byName = Dictionary(uniqueKeysWithValues: parsed.enumerated().map { ($1.name, $0) })
        } catch {
            munmap(base, size)
            throw error
        }
    }

    private static func parseEntry(
        name: String, value: Any, dataSize: Int, fail: (String) -> SafeTensorsError
    ) throws -> TensorInfo {
        guard let entry = value as? [String: Any] else { throw fail("entry \(name) is not an object") }
        guard let dtypeName = entry["dtype"] as? String, let dtype = TensorDType(rawValue: dtypeName) else {
            throw fail("tensor \(name) has unsupported dtype \(entry["dtype"] ?? "nil")")
        }
        guard let shape = (entry["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
            shape.count == (entry["shape"] as? [Any])?.count, shape.allSatisfy({ $0 >= 0 })
        else { throw fail("tensor \(name) has a malformed shape") }
        guard let offsets = (entry["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
            offsets.count == 2, offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataSize
        else { throw fail("tensor \(name) has data_offsets outside the \(dataSize)-byte data section") }
        var elements = 1
        for dimension in shape {
            let (product, overflow) = elements.multipliedReportingOverflow(by: dimension)
            guard !overflow else { throw fail("tensor \(name) shape \(shape) overflows") }
            elements = product
        }
        guard offsets[1] - offsets[0] == elements * dtype.byteSize else {
            throw fail("tensor \(name) \(dtype.rawValue)\(shape) needs \(elements * dtype.byteSize) bytes but has \(offsets[1] - offsets[0])")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataRange: offsets[0]..<offsets[1])
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: mapping.baseAddress), mapping.count) }

    public func contains(_ name: String) -> Bool { byName[name] != nil }

    public func info(_ name: String) throws -> TensorInfo {
        guard let index = byName[name] else {
            throw SafeTensorsError(path: path, problem: "has no tensor named \(name)")
        }
        return tensors[index]
    }

    /// The tensor's raw little-endian bytes, valid while this file object lives.
    public func rawBytes(_ name: String) throws -> UnsafeRawBufferPointer {
        let range = try info(name).dataRange
        return UnsafeRawBufferPointer(rebasing: mapping[(dataStart + range.lowerBound)..<(dataStart + range.upperBound)])
    }

    /// A floating-point tensor converted to Float (F32, F16, BF16 and F64 are accepted).
    public func floats(_ name: String) throws -> [Float] {
        let info = try self.info(name)
        let raw = try rawBytes(name)
        let count = info.elementCount
        switch info.dtype {
        case .f32: return (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        case .f16: return (0..<count).map { Float(Float16(bitPattern: UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)))) }
        case .bf16: return (0..<count).map { Float(bitPattern: UInt32(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self))) << 16) }
        case .f64: return (0..<count).map { Float(Double(bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self)))) }
        default: throw SafeTensorsError(path: path, problem: "tensor \(name) is \(info.dtype.rawValue), expected a float type")
        }
    }

    /// An integer tensor as Int64 (I64, I32, I16, I8, U8 and BOOL are accepted).
    public func integers(_ name: String) throws -> [Int64] {
        let info = try self.info(name)
        let raw = try rawBytes(name)
        let count = info.elementCount
        switch info.dtype {
        case .i64: return (0..<count).map { Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
        case .i32: return (0..<count).map { Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
        case .i16: return (0..<count).map { Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self))) }
        case .i8: return (0..<count).map { Int64(Int8(bitPattern: raw[$0])) }
        case .u8, .bool: return (0..<count).map { Int64(raw[$0]) }
        default: throw SafeTensorsError(path: path, problem: "tensor \(name) is \(info.dtype.rawValue), expected an integer type")
        }
    }
}

/// One tensor to write: its bytes are produced on demand, so large outputs stream.
public struct OutputTensor {
    public let name: String
    public let dtype: TensorDType
    public let shape: [Int]
    /// Called once with the file writer; must write exactly `shape.product × dtype.byteSize` bytes.
    public let writeData: (DurableFileWriter) throws -> Void

    public init(name: String, dtype: TensorDType, shape: [Int], writeData: @escaping (DurableFileWriter) throws -> Void) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.writeData = writeData
    }

    public init(name: String, shape: [Int], floats: [Float]) {
        precondition(floats.count == shape.reduce(1, *), "\(name): \(floats.count) floats for shape \(shape)")
        self.init(name: name, dtype: .f32, shape: shape) { writer in
            try floats.withUnsafeBytes { try writer.write($0) }  // little-endian host
        }
    }

    public init(name: String, shape: [Int], int32s: [Int32]) {
        precondition(int32s.count == shape.reduce(1, *), "\(name): \(int32s.count) ints for shape \(shape)")
        self.init(name: name, dtype: .i32, shape: shape) { writer in
            try int32s.withUnsafeBytes { try writer.write($0) }
        }
    }

    public init(name: String, shape: [Int], int64s: [Int64]) {
        precondition(int64s.count == shape.reduce(1, *), "\(name): \(int64s.count) ints for shape \(shape)")
        self.init(name: name, dtype: .i64, shape: shape) { writer in
            try int64s.withUnsafeBytes { try writer.write($0) }
        }
    }

    var byteCount: Int { shape.reduce(1, *) * dtype.byteSize }
}

public enum SafeTensorsWriter {
    /// Writes tensors in the given order, durably (temporary name, fsync, rename).
    public static func write(_ tensors: [OutputTensor], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        var offset = 0
        for tensor in tensors {
            precondition(header[tensor.name] == nil && tensor.name != "__metadata__", "duplicate tensor name \(tensor.name)")
            header[tensor.name] = ["dtype": tensor.dtype.rawValue, "shape": tensor.shape, "data_offsets": [offset, offset + tensor.byteCount]]
            offset += tensor.byteCount
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var headerBytes = [UInt8](try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
        // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
        while headerBytes.count % 8 != 0 { headerBytes.append(UInt8(ascii: " ")) }

        let writer = try DurableFileWriter(path: path)
        var length = UInt64(headerBytes.count).littleEndian
        try withUnsafeBytes(of: &length) { try writer.write($0) }
        try writer.write(headerBytes)
        for tensor in tensors {
            let before = writer.bytesWritten
            try tensor.writeData(writer)
            guard writer.bytesWritten - before == tensor.byteCount else {
                writer.abandon()
                throw SafeTensorsError(
                    path: path, problem: "tensor \(tensor.name) wrote \(writer.bytesWritten - before) bytes, expected \(tensor.byteCount)")
            }
        }
        try writer.commit()
    }
}
