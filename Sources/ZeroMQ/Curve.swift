import CZeroMQ

/// A CURVE key pair in Z85 text (40 characters per key), as `zmq_curve_keypair` makes them.
public struct CurveKeyPair: Sendable, Equatable {
    public let publicKey: String
    public let secretKey: String

    public init(publicKey: String, secretKey: String) throws(CurveKeyError) {
        try CurveKeyPair.validate(publicKey, role: "public")
        try CurveKeyPair.validate(secretKey, role: "secret")
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh random key pair. Needs libzmq built with CURVE.
    public static func generate() throws(CurveKeyError) -> CurveKeyPair {
        guard ZeroMQLibrary.hasCurve else { throw .curveUnavailable }
        var publicKey = [CChar](repeating: 0, count: 41)
        var secretKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicKey, &secretKey) == 0 else {
            throw .libraryFailure(ZeroMQError.last("zmq_curve_keypair").description)
        }
        return try CurveKeyPair(publicKey: string(fromZeroTerminated: publicKey), secretKey: string(fromZeroTerminated: secretKey))
    }

    /// The public key that belongs to a secret key (`zmq_curve_public`).
    public static func publicKey(forSecretKey secretKey: String) throws(CurveKeyError) -> String {
        try validate(secretKey, role: "secret")
        var publicKey = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicKey, secretKey) == 0 else {
            throw .libraryFailure(ZeroMQError.last("zmq_curve_public").description)
        }
        return string(fromZeroTerminated: publicKey)
    }

    /// The key in a key file's text: surrounding whitespace and newlines are ignored.
    public static func parseKeyText(_ text: String, role: String) throws(CurveKeyError) -> String {
        let key = String(text.unicodeScalars.filter { !$0.properties.isWhitespace })
        try validate(key, role: role)
        return key
    }

    /// Checks that `key` is 40 Z85 characters that decode to 32 bytes.
    public static func validate(_ key: String, role: String) throws(CurveKeyError) {
        guard key.utf8.count == 40 else { throw .malformed(role: role, reason: "it has \(key.utf8.count) characters, not 40") }
        var decoded = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&decoded, key) != nil else {
            throw .malformed(role: role, reason: "it is not valid Z85 text")
        }
    }
}

/// Why a CURVE key could not be made, read or used.
public enum CurveKeyError: Error, Equatable, CustomStringConvertible {
    case curveUnavailable
    case malformed(role: String, reason: String)
    case libraryFailure(String)

    public var description: String {
        switch self {
        case .curveUnavailable:
            "this libzmq was built without CURVE security; install Debian's libzmq5 (built with libsodium)"
        case .malformed(let role, let reason):
            "the CURVE \(role) key is malformed: \(reason); make a key pair with `actcluster keygen --out PREFIX`"
        case .libraryFailure(let message):
            message
        }
    }
}

extension ZeroMQSocket {
    /// Makes this socket a CURVE server: peers must know our public key to connect, and all
    /// traffic is encrypted. (Client keys are not checked without a ZAP handler.)
    public func makeCurveServer(secretKey: String) throws(ZeroMQError) {
        try setInt32(ZMQ_CURVE_SERVER, name: "ZMQ_CURVE_SERVER", 1)
        try setBytesOption(ZMQ_CURVE_SECRETKEY, name: "ZMQ_CURVE_SECRETKEY", Array(secretKey.utf8))
    }

    /// Makes this socket a CURVE client of the server whose public key is `serverPublicKey`.
    /// A wrong server key makes the handshake fail silently: nothing gets through.
    public func makeCurveClient(serverPublicKey: String, keyPair: CurveKeyPair) throws(ZeroMQError) {
        try setBytesOption(ZMQ_CURVE_SERVERKEY, name: "ZMQ_CURVE_SERVERKEY", Array(serverPublicKey.utf8))
        try setBytesOption(ZMQ_CURVE_PUBLICKEY, name: "ZMQ_CURVE_PUBLICKEY", Array(keyPair.publicKey.utf8))
        try setBytesOption(ZMQ_CURVE_SECRETKEY, name: "ZMQ_CURVE_SECRETKEY", Array(keyPair.secretKey.utf8))
    }
}

private func string(fromZeroTerminated buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
