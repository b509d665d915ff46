import Corpus
import Foundation
import Logging
import Platform
import Shards
import Tokenizers
import Transformers

/// What a collection captures and how it stores it.
public struct CollectionSettings: Sendable {
    /// Hook names, e.g. `blocks.3.hook_resid_post`.
    public var hooks: [String]
    /// Tokens per window, special tokens included.
    public var context = 128
    /// Storage type of activations in shards.
    public var dtype: ShardDType = .bf16
    /// Windows per forward batch.
    public var batchWindows = 32
    /// Drop the rows of special tokens (BOS/CLS/SEP and separators).
    public var skipSpecial = false
    public var blockRows = ShardFileFormat.defaultBlockRows

    public init(hooks: [String]) { self.hooks = hooks }
}

/// What one unit produced.
public struct UnitResult: Sendable {
    public var unit: UInt64
    public var shards: [ShardFileSummary] = []
    public var statistics: [String: RunningStatistics] = [:]
    public var skipped: [SkipReason: Int] = [:]
    public var documents = 0
    public var windows = 0
    /// Rows captured per hook.
    public var rows = 0
    /// Tokens run through the model (including dropped special tokens).
    public var tokens = 0
    public var tokenizeSeconds = 0.0
    public var forwardSeconds = 0.0
    public var encodeSeconds = 0.0

    public init(unit: UInt64) { self.unit = unit }

    /// Adds another unit's shards, statistics, skip counts, counts and timings to these,
    /// for totals over a whole collection.
    public mutating func absorb(_ other: UnitResult) {
        shards += other.shards
        for (hook, running) in other.statistics { statistics[hook, default: RunningStatistics(width: running.width)].merge(running) }
        skipped.merge(other.skipped, uniquingKeysWith: +)
        documents += other.documents
        windows += other.windows
        rows += other.rows
        tokens += other.tokens
        tokenizeSeconds += other.tokenizeSeconds
        forwardSeconds += other.forwardSeconds
        encodeSeconds += other.encodeSeconds
    }
}

/// The rows of one forward batch, as a collection observer sees them: per hook, in hook
/// order, the kept rows with float32 activations (before rounding to the storage dtype).
public struct CollectedBatch {
    /// The unit's tokens run through the model so far, this batch included.
    public var tokensSoFar: Int
    /// Windows of the unit so far, this batch included.
    public var windowsSoFar: Int
    /// One entry per hook, in the order of the collector's hooks.
    public var hooks: [(hook: String, rows: ShardRows)]
}

/// Watches a collection batch by batch: progress, the rows for streaming, and a cooperative
/// stop. Called on the collecting thread after each forward batch is written; returning
/// false stops the collection, which then throws ``CollectionCancelled`` and leaves no files.
public typealias CollectionObserver = (CollectedBatch) throws -> Bool

/// A collection stopped because its observer asked it to.
public struct CollectionCancelled: Error, CustomStringConvertible {
    public let unit: UInt64
    public init(unit: UInt64) { self.unit = unit }
    public var description: String { "the collection of unit \(unit) was stopped before it finished" }
}

/// Turns documents into shard files: tokenize, pack into windows, run the model, write one
/// shard per hook. Both `actcluster collect` and cluster workers run units through it.
///
/// Windows never span units, and a window's id is `unit << 32 | index in unit`, so units can
/// be collected on any machine, in any order, and still give collection-wide unique ids.
public final class ActivationCollector {
    public let model: TransformerModel
    public let tokenizer: Tokenizer
    public let settings: CollectionSettings
    public let identity: ModelIdentity
    private let hooks: HookSet
    private let separator: [Int32]
    private let logger: Logger

    public init(model: TransformerModel, tokenizer: Tokenizer, settings: CollectionSettings, modelName: String, logger: Logger) throws {
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.logger = logger
        hooks = try model.hooks(settings.hooks)
        identity = ModelIdentity(name: modelName, configJSON: model.configJSON)
        let prefix = tokenizer.singleSequencePrefix, suffix = tokenizer.singleSequenceSuffix
        guard settings.context > prefix.count + suffix.count else {
            throw CollectionError("--context \(settings.context) leaves no room for text between the model's \(prefix.count + suffix.count) special tokens")
        }
        if let maximum = model.config.maxPositions, settings.context > maximum {
            throw CollectionError("--context \(settings.context) exceeds the model's \(maximum) positions")
        }
        // BERT closes windows with [SEP] and separates documents with it too; models without a
        // closing token separate documents with end-of-text (GPT-2, Llama), else with BOS.
        separator = !suffix.isEmpty ? suffix : model.endOfTextTokenID.map { [$0] } ?? prefix
    }

    /// Collects one unit into `directory`. `lines` are the unit's corpus lines in order; bad
    /// lines are counted (and logged) but do not stop the unit. `fileName` names each hook's
    /// shard (cluster workers put the lease in it, so two attempts never share a file).
    /// `observer`, if given, sees every forward batch (progress, rows) and can stop the unit;
    /// it never changes what the shards hold.
    public func collect(
        unit: UInt64, lines: [CorpusLine], into directory: String,
        fileName: ((String) -> String)? = nil, observer: CollectionObserver? = nil
    ) throws -> UnitResult {
        var result = UnitResult(unit: unit)
        let clock = ContinuousClock()
        var writers: [(HookPoint, ShardWriter)] = []
        var completed = false
        defer { if !completed { for (_, writer) in writers { writer.abandon() } } }
        for point in hooks.points {
            let header = ShardHeader(
                dtype: settings.dtype, width: model.width(of: point), blockRows: settings.blockRows,
                hook: point.description, model: identity, unitID: unit)
            let name = fileName?(point.description) ?? ShardManifest.shardFileName(unit: unit, hook: point.description)
            let path = directory + "/" + name
            writers.append((point, try ShardWriter(path: path, header: header)))
            result.statistics[point.description] = RunningStatistics(width: header.width)
        }

        var packer = WindowPacker(
            context: settings.context, prefix: tokenizer.singleSequencePrefix, suffix: tokenizer.singleSequenceSuffix,
            separator: separator, firstWindowID: Int64(unit) << 32)
        var pending: [PackedWindow] = []
        for line in lines {
            switch line.content {
            case .failure(let reason):
                result.skipped[reason, default: 0] += 1
                logger.warning(
                    "input_skipped",
                    metadata: ["file": "\(line.file)", "line": "\(line.line)", "reason": "\(reason.rawValue)", "unit": "\(unit)"])
            case .success(let text):
                let start = clock.now
                let tokens = tokenizer.encode(text, addSpecialTokens: false)
                result.tokenizeSeconds += (clock.now - start).seconds
                guard !tokens.isEmpty else {
                    result.skipped[.emptyDocument, default: 0] += 1
                    logger.warning(
                        "input_skipped", metadata: ["file": "\(line.file)", "line": "\(line.line)", "reason": "no_tokens", "unit": "\(unit)"])
                    continue
                }
                result.documents += 1
                pending += packer.add(document: line.documentID, tokens: tokens)
                if pending.count >= settings.batchWindows {
                    try run(pending, writers: writers, result: &result, unit: unit, observer: observer)
                    pending.removeAll(keepingCapacity: true)
                }
            }
        }
        if let last = packer.finish() { pending.append(last) }
        if !pending.isEmpty { try run(pending, writers: writers, result: &result, unit: unit, observer: observer) }

        let start = clock.now
        for (_, writer) in writers { result.shards.append(try writer.finish()) }
        result.encodeSeconds += (clock.now - start).seconds
        completed = true
        return result
    }

    private func run(
        _ windows: [PackedWindow], writers: [(HookPoint, ShardWriter)], result: inout UnitResult, unit: UInt64, observer: CollectionObserver?
    ) throws {
        let clock = ContinuousClock()
        let start = clock.now
        let activations = try model.forward(windows.map(\.tokens), hooks: hooks)
        result.forwardSeconds += (clock.now - start).seconds
        let encodeStart = clock.now

        // Row metadata, and which rows to keep.
        var keep: [Bool] = [], tokens: [Int32] = [], documents: [Int64] = [], windowIDs: [Int64] = [], positions: [Int32] = []
        for window in windows {
            for index in window.tokens.indices {
                let kept = !(settings.skipSpecial && window.special[index])
                keep.append(kept)
                guard kept else { continue }
                tokens.append(window.tokens[index])
                documents.append(window.documents[index])
                windowIDs.append(window.id)
                positions.append(Int32(index))
            }
        }
        result.windows += windows.count
        result.tokens += keep.count
        result.rows += tokens.count

        var observed: [(hook: String, rows: ShardRows)] = []
        for (point, writer) in writers {
            let width = writer.header.width
            var values = activations[point] ?? []
            if tokens.count != keep.count {
                var kept: [Float] = []
                kept.reserveCapacity(tokens.count * width)
                for (row, isKept) in keep.enumerated() where isKept { kept += values[(row * width)..<((row + 1) * width)] }
                values = kept
            }
            try values.withUnsafeBufferPointer { activations in
                try tokens.withUnsafeBufferPointer { tokens in
                    try documents.withUnsafeBufferPointer { documents in
                        try windowIDs.withUnsafeBufferPointer { windowIDs in
                            try positions.withUnsafeBufferPointer { positions in
                                try writer.append(
                                    activations: activations, tokens: tokens, documents: documents, windows: windowIDs,
                                    positions: positions)
                            }
                        }
                    }
                }
                result.statistics[point.description]?.add(activations)
            }
            if observer != nil {
                observed.append(
                    (point.description, ShardRows(width: width, activations: values, tokens: tokens, documents: documents, windows: windowIDs, positions: positions)))
            }
        }
        result.encodeSeconds += (clock.now - encodeStart).seconds
        if let observer {
            let batch = CollectedBatch(tokensSoFar: result.tokens, windowsSoFar: result.windows, hooks: observed)
            guard try observer(batch) else { throw CollectionCancelled(unit: unit) }
        }
    }
}

/// A collection setting that cannot work, in a sentence.
public struct CollectionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

