import Logfmt
import Logging
import Testing

@Suite struct Quoting {
    @Test(arguments: [
        ("plain", "plain"),
        ("", "\"\""),
        ("two words", "\"two words\""),
        ("say \"hi\"", "\"say \\\"hi\\\"\""),
        ("a=b", "\"a=b\""),
        ("line1\nline2", "\"line1\\nline2\""),
        ("tab\there\r", "\"tab\\there\\r\""),
        ("back\\slash", "\"back\\\\slash\""),
        ("Zürich→東京🚀", "Zürich→東京🚀"),
        ("non\u{00A0}breaking", "\"non\u{00A0}breaking\""),
        ("bell\u{07}", "\"bell\\u{7}\""),
        ("sep\u{2028}", "\"sep\\u{2028}\""),
        ("3.25", "3.25"),
        ("/tmp/run/x.log", "/tmp/run/x.log"),
    ])
    func values(_ input: String, _ expected: String) {
        #expect(Logfmt.value(input) == expected)
    }

    @Test func keysNeverNeedQuotes() {
        #expect(Logfmt.key("unit.id") == "unit.id")
        #expect(Logfmt.key("bad key=\"x\"") == "bad_key__x_")
        #expect(Logfmt.key("") == "_")
        #expect(Logfmt.key("clé") == "cl_")
    }
}

@Suite struct Handler {
    private func logger(_ output: InMemoryLogOutput, level: Logger.Level = .info) -> Logger {
        let clock: @Sendable () -> Timestamp = { Timestamp(secondsSinceEpoch: 1_795_289_168, milliseconds: 7) }
        return Logger(label: "test") { _ in LogfmtLogHandler(role: "worker", output: output, level: level, now: clock) }
    }

    @Test func oneLinePerEventWithSortedMetadata() {
        let output = InMemoryLogOutput()
        var log = logger(output)
        log[metadataKey: "worker.id"] = "w3"
        log.info("unit_done", metadata: ["unit.id": "17", "tok_s": "9123", "path": "/data/my shards/u17.shard"])
        #expect(output.lines == [
            "ts=2026-11-21T19:26:08.007Z level=info role=worker event=unit_done path=\"/data/my shards/u17.shard\" tok_s=9123 unit.id=17 worker.id=w3"
        ])
    }

    @Test func levelFilteringAndTrickyEvents() {
        let output = InMemoryLogOutput()
        let log = logger(output, level: .warning)
        log.info("hidden")
        log.warning("bad input", metadata: ["line": "3", "text": "é \"q\"\n", "nested": ["a": ["1", "2"]]])
        #expect(output.lines.count == 1)
        #expect(output.lines.first?.hasSuffix(
            "level=warning role=worker event=\"bad input\" line=3 nested={a:[1,2]} text=\"é \\\"q\\\"\\n\"") == true)
    }

    @Test func timestampsAreRFC3339UTCWithMilliseconds() {
        #expect(Timestamp(secondsSinceEpoch: 0, milliseconds: 0).rfc3339 == "1970-01-01T00:00:00.000Z")
        #expect(Timestamp(secondsSinceEpoch: 951_782_400, milliseconds: 999).rfc3339 == "2000-02-29T00:00:00.999Z")
        let now = Timestamp.now()
        #expect(now.secondsSinceEpoch > 1_700_000_000)
        #expect((0..<1000).contains(now.milliseconds))
    }
}
