import ArgumentParser
import Platform
import ZeroMQ

/// `actcluster keygen`: a CURVE key pair for securing a cluster.
struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a CURVE key pair: PREFIX.key (secret, mode 0600) and PREFIX.pub (public).",
        discussion: """
            Give the coordinator the secret key (--curve-secret-key PREFIX.key) and give every \
            worker the coordinator's public key (--curve-server-key PREFIX.pub). Peers without \
            the public key cannot reach the coordinator, and all traffic is encrypted.
            """
    )

    @Option(help: ArgumentHelp("Path prefix of the two key files.", valueName: "prefix"))
    var out: String

    @Flag(help: "Replace existing key files instead of refusing.")
    var force = false

    func validate() throws {
        guard !out.isEmpty, !out.hasSuffix("/") else {
            throw ValidationError("--out needs a file name prefix such as keys/cluster, not '\(out)'")
        }
    }

    var secretKeyPath: String { out + ".key" }
    var publicKeyPath: String { out + ".pub" }

    func run() throws {
        let pair: CurveKeyPair
        do {
            pair = try CurveKeyPair.generate()
        } catch {
            throw CommandFailure(error.description)
        }
        do {
            // Secret first: a crash between the two writes leaves no public key without its secret.
            try AtomicFile.write(pair.secretKey + "\n", to: secretKeyPath, mode: 0o600, replacing: force)
            try AtomicFile.write(pair.publicKey + "\n", to: publicKeyPath, mode: 0o644, replacing: force)
        } catch let error as FileError {
            throw CommandFailure(error.alreadyExists ? "\(error.description), or pass --force" : error.description)
        }
        print("secret key: \(secretKeyPath) (mode 0600; keep it on the coordinator)")
        print("public key: \(publicKeyPath) \(pair.publicKey)")
    }
}

/// A key file's text, with an error that names the file.
func readKeyFile(_ path: String) throws -> String {
    do {
        return String(decoding: try readFile(path), as: UTF8.self)
    } catch {
        throw CommandFailure("cannot read the key file \(path): \(error)")
    }
}

/// The public keys an allow-list file names (`--curve-allow`): one per line, as `keygen`
/// writes them. Z85 keys may contain '#', so only a line that starts with it is a comment;
/// anything after the key (past whitespace) is ignored.
func readAllowList(_ path: String) throws -> Set<String> {
    var keys = Set<String>()
    for (index, line) in try readKeyFile(path).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty, !trimmed.hasPrefix("#") else { continue }
        let text = String(trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "")
        do {
            keys.insert(try CurveKeyPair.parseKeyText(text, role: "public"))
        } catch {
            throw CommandFailure("\(path), line \(index + 1): \(error)")
        }
    }
    guard !keys.isEmpty else { throw CommandFailure("\(path) lists no public keys; add the workers' .pub keys, one per line") }
    return keys
}

/// A key pair as `keygen` writes it, checked to belong together (a mismatched pair would
/// fail every handshake without saying why).
func readKeyPair(secretFile: String, publicFile: String) throws -> CurveKeyPair {
    do {
        let secret = try CurveKeyPair.parseKeyText(try readKeyFile(secretFile), role: "secret (\(secretFile))")
        let publicKey = try CurveKeyPair.parseKeyText(try readKeyFile(publicFile), role: "public (\(publicFile))")
        guard try CurveKeyPair.publicKey(forSecretKey: secret) == publicKey else {
            throw CommandFailure("\(publicFile) is not the public key of \(secretFile); give the pair `actcluster keygen` wrote together, or make a new one")
        }
        return try CurveKeyPair(publicKey: publicKey, secretKey: secret)
    } catch let error as CurveKeyError {
        throw CommandFailure(error.description)
    }
}
