/// A TransformerLens-style capture point: `blocks.L.hook_resid_pre`, `blocks.L.hook_attn_out`,
/// `blocks.L.mlp.hook_post`, `blocks.L.hook_mlp_out`, `blocks.L.hook_resid_post`.
public struct HookPoint: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The sites in the order a block computes them.
    public enum Site: Int, Sendable, CaseIterable {
        case residPre, attnOut, mlpPost, mlpOut, residPost

        var suffix: String {
            switch self {
            case .residPre: "hook_resid_pre"
            case .attnOut: "hook_attn_out"
            case .mlpPost: "mlp.hook_post"
            case .mlpOut: "hook_mlp_out"
            case .residPost: "hook_resid_post"
            }
        }
    }

    public let layer: Int
    public let site: Site

    public init(layer: Int, site: Site) {
        self.layer = layer
        self.site = site
    }

    /// Parses a hook name for a model with `layers` blocks.
    public init(_ name: String, layers: Int) throws {
        let valid = HookPoint.all(layers: layers)
        guard let match = valid.first(where: { $0.description == name }) else {
            throw ModelError.unknownHook(name: name, valid: HookPoint.namesSummary(layers: layers))
        }
        self = match
    }

    public var description: String { "blocks.\(layer).\(site.suffix)" }

    public static func < (a: HookPoint, b: HookPoint) -> Bool {
        (a.layer, a.site.rawValue) < (b.layer, b.site.rawValue)
    }

    public static func all(layers: Int) -> [HookPoint] {
        (0..<layers).flatMap { layer in Site.allCases.map { HookPoint(layer: layer, site: $0) } }
    }

    /// The valid names, compressed to a readable list.
    static func namesSummary(layers: Int) -> [String] {
        Site.allCases.map { "blocks.{0..\(layers - 1)}.\($0.suffix)" }
    }
}

/// Which hooks a forward pass captures, and where it may stop.
public struct HookSet: Sendable {
    public let points: [HookPoint]
    private let wanted: Set<HookPoint>
    /// The deepest requested hook: nothing after it is computed.
    public let last: HookPoint

    public init(_ points: [HookPoint]) throws {
        guard let last = points.max() else { throw ModelError.emptyRequest("no hook was requested") }
        self.points = points
        self.wanted = Set(points)
        self.last = last
    }

    public func contains(_ point: HookPoint) -> Bool { wanted.contains(point) }
}

/// Replaces the activation at one hook during a forward pass: `body` gets the whole batch's
/// `[rows, width]` row-major activation and rewrites it in place, and everything after the
/// hook reads the new values. This is how a dictionary's reconstruction is spliced in.
public struct Splice {
    public let point: HookPoint
    public let body: (_ activation: UnsafeMutableBufferPointer<Float>, _ rows: Int) -> Void

    public init(at point: HookPoint, _ body: @escaping (_ activation: UnsafeMutableBufferPointer<Float>, _ rows: Int) -> Void) {
        self.point = point
        self.body = body
    }

    /// Sets the activation to zero: the baseline of CE loss recovered.
    public static func zeroAblation(at point: HookPoint) -> Splice {
        Splice(at: point) { activation, _ in activation.update(repeating: 0) }
    }
}
