import ArgumentParser

/// Checks an endpoint option before anything starts: a typo in `--trainer` would otherwise
/// surface only on the workers, as units that fail until they are given up.
func checkEndpoint(_ value: String, option: String, example: String) throws {
    let fail = ValidationError("\(option) needs a ZeroMQ endpoint such as \(example) (tcp://HOST:PORT or ipc://PATH), not '\(value)'")
    if value.hasPrefix("ipc://") {
        guard value.count > "ipc://".count else { throw fail }
        return
    }
    guard value.hasPrefix("tcp://") else { throw fail }
    let address = value.dropFirst("tcp://".count)
    // The port is after the last colon (an IPv6 host is bracketed); * lets a bind pick.
    guard let colon = address.lastIndex(of: ":"), colon != address.startIndex else { throw fail }
    let port = address[address.index(after: colon)...]
    guard port == "*" || UInt16(port) != nil else { throw fail }
}
