import Foundation
import Glibc
import Platform
import Synchronization

/// Why the metrics endpoint cannot listen, as a sentence.
public struct MetricsServerError: Error, CustomStringConvertible {
    public let description: String
}

/// A minimal HTTP/1.1 server for Prometheus scrapes: `GET /metrics` answers the registry's
/// text; anything else gets 404 or 400. One background thread, one short connection at a
/// time (a scrape every few seconds is all it serves), every read bounded in size and time.
public final class MetricsServer: Sendable {
    /// `host:port` actually bound (port 0 is resolved).
    public let address: String
    private let descriptor: Int32
    private let registry: MetricsRegistry
    private let running = Atomic<Bool>(true)

    /// Listens on `bind` (`HOST:PORT`, IPv4; `*` or an empty host means every interface)
    /// and starts serving.
    public init(bind: String, registry: MetricsRegistry) throws {
        self.registry = registry
        guard let colon = bind.lastIndex(of: ":"), let port = UInt16(bind[bind.index(after: colon)...]) else {
            throw MetricsServerError(description: "--metrics-bind \(bind) is not HOST:PORT, e.g. 0.0.0.0:9464")
        }
        let host = String(bind[..<colon])
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        if host.isEmpty || host == "*" || host == "0.0.0.0" {
            address.sin_addr.s_addr = INADDR_ANY.bigEndian
        } else {
            let name = host == "localhost" ? "127.0.0.1" : host
            guard inet_pton(AF_INET, name, &address.sin_addr) == 1 else {
                throw MetricsServerError(description: "--metrics-bind host \(host) is not an IPv4 address")
            }
        }
        let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socket >= 0 else { throw MetricsServerError(description: "cannot open a socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(socket, 16) == 0 else {
            let reason = String(cString: strerror(errno))
            close(socket)
            throw MetricsServerError(description: "cannot listen for metrics on \(bind): \(reason); choose another --metrics-bind")
        }
        var actual = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) } }
        descriptor = socket
        self.address = "\(host.isEmpty ? "0.0.0.0" : host):\(UInt16(bigEndian: actual.sin_port))"
        Thread { [self] in
            nameCurrentThread("metrics-http")
            serve()
        }.start()
    }

    /// Stops accepting connections (the thread notices within 200 ms).
    public func stop() { running.store(false, ordering: .relaxed) }

    private func serve() {
        defer { close(descriptor) }
        while running.load(ordering: .relaxed) {
            var pollItem = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&pollItem, 1, 200) > 0 else { continue }
            let connection = accept(descriptor, nil, nil)
            guard connection >= 0 else { continue }
            answer(connection)
            close(connection)
        }
    }

    private func answer(_ connection: Int32) {
        // A slow or silent client must not hold the thread.
        var timeout = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var request: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 2048)
        while request.count < 8192, !request.ends(with: [13, 10, 13, 10]), !request.ends(with: [10, 10]) {
            let count = buffer.withUnsafeMutableBytes { recv(connection, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { break }
            request += buffer[0..<count]
        }
        let line = String(decoding: request.prefix { $0 != 13 && $0 != 10 }, as: UTF8.self).split(separator: " ")
        let status: String, body: String, type: String
        if line.count >= 2, line[0] == "GET" || line[0] == "HEAD" {
            let path = line[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            if path == "/metrics" {
                (status, body, type) = ("200 OK", registry.exposition(), "text/plain; version=0.0.4; charset=utf-8")
            } else {
                (status, body, type) = ("404 Not Found", "metrics are at /metrics\n", "text/plain; charset=utf-8")
            }
        } else {
            (status, body, type) = ("400 Bad Request", "send GET /metrics\n", "text/plain; charset=utf-8")
        }
        let head = line.first == "HEAD"
        let payload = Array(body.utf8)
        let response = Array("HTTP/1.1 \(status)\r\nContent-Type: \(type)\r\nContent-Length: \(payload.count)\r\nConnection: close\r\n\r\n".utf8) + (head ? [] : payload)
        var sent = 0
        while sent < response.count {
            let count = response.withUnsafeBytes { send(connection, $0.baseAddress! + sent, response.count - sent, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { return }
            sent += count
        }
    }
}

extension Array where Element == UInt8 {
    fileprivate func ends(with suffix: [UInt8]) -> Bool { count >= suffix.count && Array(self[(count - suffix.count)...]) == suffix }
}
