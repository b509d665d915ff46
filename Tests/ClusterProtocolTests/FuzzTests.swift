import ClusterProtocol
import Shards
import Testing

/// A decoder under fuzzing: it must either return a message that re-encodes to frames that
/// decode to the same message, or throw a ProtocolError (typed throws make any other error
/// impossible). A crash fails the whole run.
private struct Decoder: Sendable {
    let name: String
    /// Decodes, re-encodes and decodes again; true when the frames were accepted.
    let check: @Sendable ([[UInt8]]) throws(ProtocolError) -> Bool
}

private let decoders: [Decoder] = [
    Decoder(name: "worker") { frames throws(ProtocolError) in
        let message = try WorkerMessage.decode(frames: frames)
        let again = try WorkerMessage.decode(frames: message.encode())
        #expect(again == message)
        return true
    },
    Decoder(name: "coordinator") { frames throws(ProtocolError) in
        let message = try CoordinatorMessage.decode(frames: frames)
        let again = try CoordinatorMessage.decode(frames: message.encode())
        #expect(again == message)
        return true
    },
    Decoder(name: "status") { frames throws(ProtocolError) in
        let message = try StatusMessage.decode(frames: frames)
        let again = try StatusMessage.decode(frames: message.encode())
        #expect(again == message)
        return true
    },
    Decoder(name: "batch") { frames throws(ProtocolError) in
        let batch = try ActivationBatch.decode(frames: frames)
        let again = try ActivationBatch.decode(frames: batch.encode())
        #expect(again == batch)
        if let rows = try? batch.rows() { #expect(rows.count == batch.header.rows && rows.isConsistent) }
        return true
    },
]

/// Every sample's frames, for every decoder.
private func corpus() throws -> [[[UInt8]]] {
    var all = Samples.workerMessages.map { $0.encode() } + Samples.coordinatorMessages.map { $0.encode() }
    all += Samples.statusMessages.map { $0.encode() }
    for dtype in ShardDType.allCases { all.append(try Samples.batch(dtype: dtype, rows: 5, width: 3).encode()) }
    return all
}

/// Runs every decoder on `frames`; returns how many accepted them.
@discardableResult
private func feed(_ frames: [[UInt8]]) -> Int {
    var accepted = 0
    for decoder in decoders {
        do {
            if try decoder.check(frames) { accepted += 1 }
        } catch {
            #expect(!error.description.isEmpty)
        }
    }
    return accepted
}

@Suite struct Fuzz {
    @Test func everyTruncationOfEveryFrame() throws {
        var tried = 0
        for frames in try corpus() {
            // A worker's HEARTBEAT also passes as the coordinator's (whose body may be empty);
            // everything else decodes on exactly one decoder.
            let accepted = feed(frames)
            #expect(accepted == 1 || accepted == 2 && frames[1] == [ClusterWire.Command.heartbeat.rawValue])
            for index in frames.indices {
                for length in 0..<frames[index].count {
                    var cut = frames
                    cut[index] = Array(frames[index].prefix(length))
                    feed(cut)
                    tried += 1
                }
            }
            // Missing, repeated and extra frames.
            for index in frames.indices {
                var fewer = frames
                fewer.remove(at: index)
                feed(fewer)
                feed(frames + [frames[index]])
            }
        }
        #expect(tried > 4000)
    }

    @Test func randomByteFlips() throws {
        var generator = SeededGenerator(seed: 0xF1_1B)
        let samples = try corpus()
        var accepted = 0
        for _ in 0..<20_000 {
            var frames = samples[Int.random(in: 0..<samples.count, using: &generator)]
            for _ in 0..<Int.random(in: 1...4, using: &generator) {
                let index = Int.random(in: 0..<frames.count, using: &generator)
                guard !frames[index].isEmpty else { continue }
                let position = Int.random(in: 0..<frames[index].count, using: &generator)
                if Bool.random(using: &generator) {
                    frames[index][position] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &generator)
                } else {
                    frames[index][position] = UInt8.random(in: 0...255, using: &generator)
                }
            }
            accepted += feed(frames)
        }
        // Most flips land in text, names or numbers and still decode; many do not.
        #expect(accepted > 1000 && accepted < 20_000)
    }

    @Test func randomFrames() {
        var generator = SeededGenerator(seed: 0x5EED)
        let headers = ClusterWire.Channel.allCases.map(\.header)
        for round in 0..<20_000 {
            var frames: [[UInt8]] = []
            let count = Int.random(in: 0...6, using: &generator)
            for index in 0..<count {
                let length = Int.random(in: 0...(Bool.random(using: &generator) ? 8 : 200), using: &generator)
                frames.append((0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) })
                // Half the time, a real header and command, so the decoders reach the body.
                if round % 2 == 0 && index == 0 { frames[0] = headers[round / 2 % headers.count] }
                if round % 2 == 0 && index == 1 {
                    frames[1] = [ClusterWire.Command.allCases[Int.random(in: 0..<ClusterWire.Command.allCases.count, using: &generator)].rawValue]
                }
            }
            feed(frames)
        }
    }

    /// Bodies built from valid field headers with random tags, types and values: the parser
    /// sees well-formed framing and must still check every value.
    @Test func randomWellFramedBodies() {
        var generator = SeededGenerator(seed: 0xB0D1)
        for round in 0..<20_000 {
            var body: [UInt8] = []
            for _ in 0..<Int.random(in: 0...12, using: &generator) {
                let tag = ClusterWire.Tag.allCases[Int.random(in: 0..<ClusterWire.Tag.allCases.count, using: &generator)]
                let length: Int =
                    switch tag.type {
                    case .uint, .double: 8
                    case .bool: 1
                    case .doubles: 8 * Int.random(in: 0...4, using: &generator)
                    default: Int.random(in: 0...12, using: &generator)
                    }
                body += [tag.rawValue, tag.type.rawValue, UInt8(length), 0, 0, 0]
                body += (0..<length).map { _ in UInt8.random(in: 0...(tag.type == .bool ? 1 : 255), using: &generator) }
            }
            let command = ClusterWire.Command.allCases[round % ClusterWire.Command.allCases.count]
            let more: [[UInt8]] = command == .assign ? [[], []] : command == .batch ? [[]] : []
            feed([command.channel.header, [command.rawValue], body] + more)
        }
    }

    @Test func journalEventsUnderFlips() throws {
        var generator = SeededGenerator(seed: 0x10_0A)
        let payloads = Samples.events.map { $0.encoded() }
        for _ in 0..<20_000 {
            var payload = payloads[Int.random(in: 0..<payloads.count, using: &generator)]
            let position = Int.random(in: 0..<payload.count, using: &generator)
            payload[position] = UInt8.random(in: 0...255, using: &generator)
            if Bool.random(using: &generator) { payload = Array(payload.prefix(Int.random(in: 0...payload.count, using: &generator))) }
            if let event = try? CoordinatorEvent.decode(payload) {
                #expect(try CoordinatorEvent.decode(event.encoded()) == event)
            }
        }
    }
}

@Suite struct BatchPayloadStreaming {
    /// The LZ4 payload is the one streamed part of the protocol: fed byte by byte it must give
    /// exactly what it gives in bulk, and in pieces of every size in between.
    @Test(arguments: ShardDType.allCases)
    func byteByByteEqualsBulk(_ dtype: ShardDType) throws {
        let batch = try Samples.batch(dtype: dtype, rows: 200, width: 24)
        let bulk = try batch.rows()
        let byByte = try ActivationBatchPayloadDecoder(header: batch.header)
        for byte in batch.payload { try byByte.feed([byte]) }
        let single = try byByte.finish()
        #expect(single.activations == bulk.activations && single.tokens == bulk.tokens && single.documents == bulk.documents)
        #expect(single.windows == bulk.windows && single.positions == bulk.positions)
        var generator = SeededGenerator(seed: 7)
        for _ in 0..<20 {
            let decoder = try ActivationBatchPayloadDecoder(header: batch.header)
            var offset = 0
            while offset < batch.payload.count {
                let size = min(Int.random(in: 1...300, using: &generator), batch.payload.count - offset)
                try decoder.feed(Array(batch.payload[offset..<(offset + size)]))
                offset += size
            }
            #expect(try decoder.finish().activations == bulk.activations)
        }
    }

    @Test func everyTruncationIsRefused() throws {
        let batch = try Samples.batch(dtype: .bf16, rows: 20, width: 8)
        for length in 0..<batch.payload.count {
            let decoder = try ActivationBatchPayloadDecoder(header: batch.header)
            do {
                try decoder.feed(Array(batch.payload.prefix(length)))
                _ = try decoder.finish()
                Issue.record("a payload cut to \(length) of \(batch.payload.count) bytes decoded")
            } catch {
                #expect(error.kind == .payload)
            }
        }
    }
}
