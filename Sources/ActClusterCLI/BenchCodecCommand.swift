import ArgumentParser
import Collection
import Corpus
import Foundation
import Logging
import Platform
import SafeTensors
import Shards
import Tokenizers
import Transformers

/// `actcluster bench codec`: compression ratio and single-thread speed of the shard block
/// codec on real activations, per storage dtype.
struct BenchCodecCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "codec",
        abstract: "Compression ratio and MB/s per thread of the shard codec, per dtype (bf16, fp16, fp32).",
        discussion: """
            Runs the full shard block path on one thread. Compress: float32 rows -> stored dtype, \
            transpose to dimension-major, bitshuffle, LZ4 per stream, CRC-32C of the payload and of \
            the stored bytes, copy into the output. Decompress: CRC-32C check, LZ4, bitunshuffle, \
            payload CRC-32C check, back to float32 rows. Blocks carry the input's row metadata \
            (tokens, doc, window, pos; zeros when the input has none), so timings include it.

            ratio = activation bytes in the stored dtype / stored bytes of the activation streams \
            (their share of the stream table included, row metadata excluded). MB/s = 10^6 bytes of \
            activations in the stored dtype per second of the thread's CPU time (bf16 and fp16: 2 \
            bytes per value), the best of --repeat runs. Tests/Reference/bench_codec_blosc2.py reports Blosc2 the same way on \
            the same bytes.

            With --json the last line is {"bf16": {"ratio": …, "compress_mb_s": …, \
            "decompress_mb_s": …}, "fp16": {…}, "fp32": {…}}.
            """
    )

    @Option(help: ArgumentHelp(
        "An `actcluster export` safetensors file with `activations` float32 [rows, d] (and optionally tokens, doc, window, pos).",
        valueName: "file"))
    var input: String?

    @Option(help: ArgumentHelp("Without --input: collect activations with this model folder first.", valueName: "dir"))
    var model: String?

    @Option(parsing: .upToNextOption, help: ArgumentHelp(
        "Without --input: English text files to collect from, one document per paragraph line (default: Debian's /usr/share/common-licenses).",
        valueName: "path"))
    var corpus: [String] = []

    @Option(help: "Without --input: the hook to collect.")
    var hook = "blocks.3.hook_resid_post"

    @Option(help: "Without --input: stop collecting after about this many tokens.")
    var maxTokens = 60_000

    @Option(help: "Rows per block, as in a shard file.")
    var blockRows = ShardFileFormat.defaultBlockRows

    @Option(name: .customLong("repeat"), help: "Timed runs per dtype; the best one is reported.")
    var repeats = 5

    @Option(name: .customLong("dtype"), parsing: .singleValue, help: "Measure only this dtype (bf16, fp16 or fp32); repeat for several. Default: all three.")
    var dtypeNames: [String] = []

    @Flag(help: "End with one JSON line of the figures.")
    var json = false

    func validate() throws {
        guard blockRows >= 1, blockRows <= ShardFileFormat.maxBlockRows else {
            throw ValidationError("--block-rows must be between 1 and \(ShardFileFormat.maxBlockRows)")
        }
        guard repeats >= 1 else { throw ValidationError("--repeat must be at least 1") }
        for name in dtypeNames where ShardDType(name: name) == nil {
            throw ValidationError("--dtype must be bf16, fp16 or fp32, not '\(name)'")
        }
    }

    func run() throws {
        let data: CodecBenchInput
        let source: String
        if let input {
            data = try CodecBenchInput(path: input)
            source = input
        } else if let model {
            data = try CodecBenchInput(collectingWith: model, corpus: corpus, hook: hook, maxTokens: maxTokens)
            source = "\(hook) of \(model), collected now"
        } else {
            throw CommandFailure(
                "give --input F.safetensors (an `actcluster export` file) or --model DIR to collect real activations first")
        }
        var results: [(ShardDType, CodecBenchResult)] = []
        let dtypes = dtypeNames.isEmpty ? [ShardDType.bf16, .fp16, .fp32] : dtypeNames.compactMap { ShardDType(name: $0) }
        for dtype in dtypes {
            let result = try CodecBench.run(data, dtype: dtype, blockRows: blockRows, repeats: repeats)
            results.append((dtype, result))
            print(
                "\(dtype): ratio \(format(result.ratio, 3)) (\(result.activationBytes) -> \(result.activationStoredBytes) bytes; "
                    + "with row metadata \(format(result.blockRatio, 3))), compress \(format(result.compressMBs, 0)) MB/s, "
                    + "decompress \(format(result.decompressMBs, 0)) MB/s (into one array of all rows: "
                    + "\(format(result.decompressArrayMBs, 0)) MB/s) (1 thread, MB of \(dtype) activations)")
        }
        print("input: \(data.rows) rows × \(data.width) from \(source); block rows \(blockRows); best of \(repeats)")
        let kernels = KernelImplementation.Kernel.allCases.map { "\($0) \(KernelImplementation.automatic.resolved(for: $0))" }
        print("kernels: " + kernels.joined(separator: ", "))
        if json {
            let fields = results.map { dtype, result in
                "\"\(dtype)\": {\"ratio\": \(format(result.ratio, 4)), \"compress_mb_s\": \(format(result.compressMBs, 1)), "
                    + "\"decompress_mb_s\": \(format(result.decompressMBs, 1))}"
            }
            print("{" + fields.joined(separator: ", ") + "}")
        }
    }

    private func format(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
}

/// Activations and row metadata loaded from an export-format safetensors file.
struct CodecBenchInput {
    /// Collects real activations (fp32 shards in a temporary folder) and reads them back.
    init(collectingWith model: String, corpus: [String], hook: String, maxTokens: Int) throws {
        let paths = corpus.isEmpty
            ? ((try? FileManager.default.contentsOfDirectory(atPath: "/usr/share/common-licenses")) ?? []).sorted()
                .map { "/usr/share/common-licenses/" + $0 }.filter { !$0.hasSuffix("GPL") && !$0.hasSuffix("LGPL") }
            : corpus
        guard !paths.isEmpty else { throw CommandFailure("no corpus: pass --corpus with some English text files") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("bench-codec-\(getpid())").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let loaded = try TransformerModel(directory: model)
        loaded.threads = 2
        var settings = CollectionSettings(hooks: [hook])
        settings.dtype = .fp32
        settings.context = min(settings.context, loaded.config.maxPositions ?? settings.context)
        let collector = try ActivationCollector(
            model: loaded, tokenizer: try Tokenizer(contentsOfFile: model + "/tokenizer.json"), settings: settings,
            modelName: modelDisplayName(model), logger: Logger(label: "bench"))
        let reader = CorpusReader(paths: paths, format: .txt)
        var lines: [CorpusLine] = []
        var bytes = 0
        while bytes < maxTokens * 4, let line = try reader.next() {
            lines.append(line)
            bytes += Int(line.byteRange.upperBound - line.byteRange.lowerBound)
        }
        let result = try collector.collect(unit: 0, lines: lines, into: directory)
        let rows = try ShardReader(path: result.shards[0].path).readAll()
        self.rows = rows.count
        width = rows.width
        activations = rows.activations
        tokens = rows.tokens
        documents = rows.documents
        windows = rows.windows
        positions = rows.positions
    }

    let rows: Int
    let width: Int
    let activations: [Float]
    let tokens: [Int32]
    let documents: [Int64]
    let windows: [Int64]
    let positions: [Int32]

    init(path: String) throws {
        let file: SafeTensorsFile
        do {
            file = try SafeTensorsFile(path: path)
        } catch {
            throw CommandFailure("\(error)")
        }
        guard let info = try? file.info("activations"), info.dtype == .f32, info.shape.count == 2, info.shape[1] > 0 else {
            throw CommandFailure("\(path) has no float32 [rows, d] tensor named `activations`; make it with `actcluster export --format safetensors`")
        }
        rows = info.shape[0]
        width = info.shape[1]
        activations = try file.floats("activations")
        let count = rows
        func column<T: FixedWidthInteger>(_ name: String, _: T.Type) -> [T] {
            guard file.contains(name), let values = try? file.integers(name), values.count == count else {
                return [T](repeating: 0, count: count)
            }
            return values.map { T(truncatingIfNeeded: $0) }
        }
        tokens = column("tokens", Int32.self)
        documents = column("doc", Int64.self)
        windows = column("window", Int64.self)
        positions = column("pos", Int32.self)
    }
}

struct CodecBenchResult {
    var activationBytes = 0
    var activationStoredBytes = 0
    var blockBytes = 0
    var compressSeconds = Double.infinity
    var decompressSeconds = Double.infinity
    var decompressArraySeconds = Double.infinity

    var ratio: Double { Double(activationBytes) / Double(max(activationStoredBytes, 1)) }
    var blockRatio: Double { Double(activationBytes) / Double(max(blockBytes, 1)) }
    var compressMBs: Double { Double(activationBytes) / compressSeconds / 1e6 }
    var decompressMBs: Double { Double(activationBytes) / decompressSeconds / 1e6 }
    var decompressArrayMBs: Double { Double(activationBytes) / decompressArraySeconds / 1e6 }
}

enum CodecBench {
    static func run(_ input: CodecBenchInput, dtype: ShardDType, blockRows: Int, repeats: Int) throws -> CodecBenchResult {
        let width = input.width
        let header = ShardHeader(
            dtype: dtype, width: width, blockRows: blockRows, rowCount: input.rows, hook: "bench", model: ModelIdentity(name: "bench"),
            unitID: 0)
        let encoder = ShardBlockEncoder(dtype: dtype, width: width, blockRows: blockRows)
        let decoder = ShardBlockDecoder(header: header, path: "bench")
        var arena = [UInt8](repeating: 0, count: header.blockCount * header.maxStreamTableSize + input.rows * (width * dtype.elementSize + 24) + 64)
        var blocks: [ShardBlockInfo] = []
        var result = CodecBenchResult()
        result.activationBytes = input.rows * width * dtype.elementSize

        for _ in 0..<repeats {
            blocks.removeAll(keepingCapacity: true)
            var stored = 0
            var activationStored = 0
            let start = threadCPUSeconds()
            input.activations.withUnsafeBufferPointer { activations in
                input.tokens.withUnsafeBufferPointer { tokens in
                    input.documents.withUnsafeBufferPointer { documents in
                        input.windows.withUnsafeBufferPointer { windows in
                            input.positions.withUnsafeBufferPointer { positions in
                                arena.withUnsafeMutableBytes { output in
                                    var row = 0
                                    while row < input.rows {
                                        let rows = min(blockRows, input.rows - row)
                                        let encoded = encoder.encode(
                                            rows: rows, activations: UnsafeBufferPointer(rebasing: activations[(row * width)...]),
                                            tokens: UnsafeBufferPointer(rebasing: tokens[row...]),
                                            documents: UnsafeBufferPointer(rebasing: documents[row...]),
                                            windows: UnsafeBufferPointer(rebasing: windows[row...]),
                                            positions: UnsafeBufferPointer(rebasing: positions[row...]))
                                        UnsafeMutableRawBufferPointer(rebasing: output[stored..<(stored + encoded.bytes.count)]).copyMemory(from: encoded.bytes)
                                        blocks.append(
                                            ShardBlockInfo(
                                                offset: stored, firstRow: row, rows: rows, storedSize: encoded.bytes.count,
                                                uncompressedSize: encoded.uncompressedSize, storedCRC: encoded.storedCRC, dataCRC: encoded.dataCRC))
                                        stored += encoded.bytes.count
                                        activationStored += encoded.activationStoredSize
                                        row += rows
                                    }
                                }
                            }
                        }
                    }
                }
            }
            let seconds = threadCPUSeconds() - start
            result.compressSeconds = min(result.compressSeconds, seconds)
            result.blockBytes = stored
            result.activationStoredBytes = activationStored
        }

        // Streaming decode (how a reader or trainer consumes a shard): every block into the
        // same block-sized buffers; then once more into whole arrays, for the round-trip check
        // and the figure for decoding into one big array.
        var blockActivations = [Float](repeating: 0, count: blockRows * width)
        var blockTokens = [Int32](repeating: 0, count: blockRows)
        var blockDocuments = [Int64](repeating: 0, count: blockRows)
        var blockWindows = [Int64](repeating: 0, count: blockRows)
        var blockPositions = [Int32](repeating: 0, count: blockRows)
        for _ in 0..<repeats {
            let start = threadCPUSeconds()
            try decodeAll(blocks, from: arena, decoder: decoder, width: width, into: &blockActivations, &blockTokens, &blockDocuments, &blockWindows, &blockPositions, streaming: true)
            result.decompressSeconds = min(result.decompressSeconds, threadCPUSeconds() - start)
        }
        var activations = [Float](repeating: 0, count: input.rows * width)
        var tokens = [Int32](repeating: 0, count: input.rows)
        var documents = [Int64](repeating: 0, count: input.rows)
        var windows = [Int64](repeating: 0, count: input.rows)
        var positions = [Int32](repeating: 0, count: input.rows)
        for _ in 0..<repeats {
            let start = threadCPUSeconds()
            try decodeAll(blocks, from: arena, decoder: decoder, width: width, into: &activations, &tokens, &documents, &windows, &positions, streaming: false)
            result.decompressArraySeconds = min(result.decompressArraySeconds, threadCPUSeconds() - start)
        }
        // The round trip must be exact in the stored dtype.
        let expected: [Float]
        switch dtype {
        case .fp32: expected = input.activations
        case .bf16: expected = FloatConversion.floats(fromBFloat16: FloatConversion.bfloat16(input.activations))
        case .fp16: expected = FloatConversion.floats(fromFloat16: FloatConversion.float16(input.activations))
        }
        guard expected.elementsEqual(activations, by: { $0.bitPattern == $1.bitPattern }), tokens == input.tokens,
            documents == input.documents, windows == input.windows, positions == input.positions
        else { throw CommandFailure("\(dtype): the decoded rows differ from the input; the codec is broken") }
        return result
    }

    /// Decodes every block, into one block-sized set of buffers (`streaming`) or into arrays
    /// that hold all rows.
    static func decodeAll(
        _ blocks: [ShardBlockInfo], from arena: [UInt8], decoder: ShardBlockDecoder, width: Int, into activations: inout [Float],
        _ tokens: inout [Int32], _ documents: inout [Int64], _ windows: inout [Int64], _ positions: inout [Int32], streaming: Bool
    ) throws {
        try arena.withUnsafeBytes { arenaBytes in
            try activations.withUnsafeMutableBufferPointer { activations in
                try tokens.withUnsafeMutableBufferPointer { tokens in
                    try documents.withUnsafeMutableBufferPointer { documents in
                        try windows.withUnsafeMutableBufferPointer { windows in
                            try positions.withUnsafeMutableBufferPointer { positions in
                                for (number, block) in blocks.enumerated() {
                                    let row = streaming ? 0 : block.firstRow
                                    try decoder.decode(
                                        UnsafeRawBufferPointer(rebasing: arenaBytes[block.offset..<(block.offset + block.storedSize)]),
                                        block: number, info: block,
                                        activations: UnsafeMutableBufferPointer(rebasing: activations[(row * width)...]),
                                        tokens: UnsafeMutableBufferPointer(rebasing: tokens[row...]),
                                        documents: UnsafeMutableBufferPointer(rebasing: documents[row...]),
                                        windows: UnsafeMutableBufferPointer(rebasing: windows[row...]),
                                        positions: UnsafeMutableBufferPointer(rebasing: positions[row...]))
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// CPU time of the calling thread: steadier than wall time on a shared machine, and the
/// right measure of "per thread" (the Blosc2 reference script uses time.thread_time()).
func threadCPUSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}
