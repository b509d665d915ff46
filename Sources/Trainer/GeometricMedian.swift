/// Centres of a sample of rows, in Float64.
public enum GeometricMedian {
    public static func mean(_ rows: [Float], rows count: Int, width: Int) -> [Double] {
        var center = [Double](repeating: 0, count: width)
        guard count > 0 else { return center }
        for r in 0..<count { for c in 0..<width { center[c] += Double(rows[r * width + c]) } }
        return center.map { $0 / Double(count) }
    }

    /// The point minimising the sum of Euclidean distances to the rows, by Weiszfeld's
    /// iteration from the mean (as sparsify's `geometric_median`).
    public static func compute(_ rows: [Float], rows count: Int, width: Int, iterations: Int = 50, tolerance: Double = 1e-6) -> [Double] {
        var center = mean(rows, rows: count, width: width)
        guard count > 1 else { return center }
        for _ in 0..<iterations {
            var next = [Double](repeating: 0, count: width)
            var weightSum = 0.0
            for r in 0..<count {
                var distance = 0.0
                for c in 0..<width {
                    let delta = Double(rows[r * width + c]) - center[c]
                    distance += delta * delta
                }
                let weight = 1 / max(distance.squareRoot(), 1e-12)
                weightSum += weight
                for c in 0..<width { next[c] += weight * Double(rows[r * width + c]) }
            }
            var moved = 0.0, size = 0.0
            for c in 0..<width {
                next[c] /= weightSum
                moved += (next[c] - center[c]) * (next[c] - center[c])
                size += next[c] * next[c]
            }
            center = next
            if moved.squareRoot() <= tolerance * max(1, size.squareRoot()) { break }
        }
        return center
    }
}
