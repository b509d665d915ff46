/// The `post_processor` section, reduced to what a single sequence needs: the special ids put
/// before and after it when special tokens are added. Every supported processor (and any
/// Sequence of them) has that shape for one sequence.
struct PostProcessor: Sendable {
    var prefix: [Int32] = []
    var suffix: [Int32] = []

    static let supportedTypes = "post-processors TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel and Sequence"

    init() {}

    init(json: JSONObject) throws(TokenizerError) {
        guard let type = json.typeName else {
            throw TokenizerError.invalid("a post-processor has no \"type\" field")
        }
        let component = "post-processor \"\(type)\""
        self.init()
        switch type {
        case "TemplateProcessing":
            self = try PostProcessor(template: json, component: component)
        case "BertProcessing", "RobertaProcessing":
            // Single sequence: cls $A sep. Roberta's trim_offsets/add_prefix_space only move offsets.
            prefix = [try Self.tokenID(json, "cls", in: component)]
            suffix = [try Self.tokenID(json, "sep", in: component)]
        case "ByteLevel":
            break  // only trims offsets
        case "Sequence":
            // Each processor wraps the result of the previous one.
            for item in try json.array("processors", in: component) {
                let inner = try PostProcessor(json: try item.requireObject("an entry of a Sequence post-processor"))
                prefix = inner.prefix + prefix
                suffix = suffix + inner.suffix
            }
        default:
            throw TokenizerError.unsupported("post-processor type \"\(type)\"", supported: Self.supportedTypes)
        }
    }

    /// `single` lists pieces such as `{"SpecialToken": {"id": "[CLS]"}}` and
    /// `{"Sequence": {"id": "A"}}`; the ids of each special token come from `special_tokens`.
    private init(template json: JSONObject, component: String) throws(TokenizerError) {
        self.init()
        let specials = try json.object("special_tokens", in: component)
        var seenSequence = false
        for piece in try json.array("single", in: component) {
            let piece = try piece.requireObject("a piece of the \(component) single template")
            if piece.value("Sequence") != nil {
                guard !seenSequence else {
                    throw TokenizerError.unsupported(
                        "\(component) single template with more than one sequence", supported: "templates with one $A")
                }
                seenSequence = true
            } else if let special = piece.value("SpecialToken")?.object {
                let name = try special.string("id", in: "a SpecialToken of \(component)")
                guard let entry = specials.value(name)?.object else {
                    throw TokenizerError.invalid("\(component) uses the special token \"\(name)\" but special_tokens does not define it")
                }
                var ids: [Int32] = []
                for value in try entry.array("ids", in: "special token \"\(name)\" of \(component)") {
                    guard let id = value.integer, id >= 0, id <= Int(Int32.max) else {
                        throw TokenizerError.invalid("special token \"\(name)\" of \(component) has an invalid id")
                    }
                    ids.append(Int32(id))
                }
                if seenSequence { suffix += ids } else { prefix += ids }
            } else {
                throw TokenizerError.invalid("\(component) single template has a piece that is neither SpecialToken nor Sequence")
            }
        }
    }

    /// A `["[CLS]", 101]` pair's id.
    private static func tokenID(_ json: JSONObject, _ key: String, in component: String) throws(TokenizerError) -> Int32 {
        guard let pair = json.value(key)?.array, pair.count == 2, let id = pair[1].integer, id >= 0, id <= Int(Int32.max) else {
            throw TokenizerError.invalid("\(component) field \"\(key)\" should be a [token, id] pair")
        }
        return Int32(id)
    }
}
