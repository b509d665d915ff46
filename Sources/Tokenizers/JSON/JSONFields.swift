/// Typed field access for the component readers. `component` names the section in errors, e.g.
/// `normalizer "BertNormalizer"`, so a bad field points at where it lives.
extension JSONObject {
    var typeName: String? { self["type"]?.string }

    func bool(_ key: String, default fallback: Bool, in component: String) throws(TokenizerError) -> Bool {
        guard let value = value(key) else { return fallback }
        guard let flag = value.bool else { throw wrongKind(key, expected: "a boolean", found: value, in: component) }
        return flag
    }

    func optionalBool(_ key: String, in component: String) throws(TokenizerError) -> Bool? {
        guard let value = value(key) else { return nil }
        guard let flag = value.bool else { throw wrongKind(key, expected: "a boolean", found: value, in: component) }
        return flag
    }

    func optionalString(_ key: String, in component: String) throws(TokenizerError) -> String? {
        guard let value = value(key) else { return nil }
        guard let text = value.string else { throw wrongKind(key, expected: "a string", found: value, in: component) }
        return text
    }

    func string(_ key: String, in component: String) throws(TokenizerError) -> String {
        guard let text = try optionalString(key, in: component) else { throw missing(key, in: component) }
        return text
    }

    func optionalInteger(_ key: String, in component: String) throws(TokenizerError) -> Int? {
        guard let value = value(key) else { return nil }
        guard let number = value.integer else { throw wrongKind(key, expected: "an integer", found: value, in: component) }
        return number
    }

    func integer(_ key: String, in component: String) throws(TokenizerError) -> Int {
        guard let number = try optionalInteger(key, in: component) else { throw missing(key, in: component) }
        return number
    }

    func array(_ key: String, in component: String) throws(TokenizerError) -> [JSONValue] {
        guard let value = value(key) else { throw missing(key, in: component) }
        guard let items = value.array else { throw wrongKind(key, expected: "an array", found: value, in: component) }
        return items
    }

    func object(_ key: String, in component: String) throws(TokenizerError) -> JSONObject {
        guard let value = value(key) else { throw missing(key, in: component) }
        guard let object = value.object else { throw wrongKind(key, expected: "an object", found: value, in: component) }
        return object
    }

    /// A field holding exactly one character, such as Metaspace's `replacement`.
    func character(_ key: String, default fallback: Unicode.Scalar, in component: String) throws(TokenizerError) -> Unicode.Scalar {
        guard let text = try optionalString(key, in: component) else { return fallback }
        let scalars = Array(text.unicodeScalars)
        guard scalars.count == 1 else {
            throw TokenizerError.invalid("\(component) field \"\(key)\" must be one character, found \"\(text)\"")
        }
        return scalars[0]
    }

    private func missing(_ key: String, in component: String) -> TokenizerError {
        TokenizerError.invalid("\(component) has no field \"\(key)\"")
    }

    private func wrongKind(_ key: String, expected: String, found: JSONValue, in component: String) -> TokenizerError {
        TokenizerError.invalid("\(component) field \"\(key)\" should be \(expected), found \(found.kindName)")
    }
}

extension JSONValue {
    /// The value as an object, or an error naming where an object was expected.
    func requireObject(_ what: String) throws(TokenizerError) -> JSONObject {
        guard let object else { throw TokenizerError.invalid("\(what) should be an object, found \(kindName)") }
        return object
    }
}
