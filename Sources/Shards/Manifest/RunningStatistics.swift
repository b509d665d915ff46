/// Count, per-dimension mean and variance, and mean L2 norm of a stream of activation rows,
/// accumulated in Float64. Batches are reduced with two passes and joined with the pairwise
/// update of Chan, Golub and LeVeque, so merging the statistics of many workers loses no
/// precision: for counts a and b, δ = mean_b − mean_a,
/// `mean = mean_a + δ·b/n` and `M2 = M2_a + M2_b + δ²·a·b/n`.
public struct RunningStatistics: Equatable, Sendable {
    public let width: Int
    public private(set) var count: Int = 0
    public private(set) var mean: [Double]
    /// Sum of squared deviations from the mean, per dimension.
    public private(set) var m2: [Double]
    /// Mean of the rows' L2 norms.
    public private(set) var meanNorm: Double = 0

    public init(width: Int) {
        precondition(width > 0, "statistics need a positive width")
        self.width = width
        mean = [Double](repeating: 0, count: width)
        m2 = [Double](repeating: 0, count: width)
    }

    /// Statistics as stored in a manifest (variance is the population variance, M2 / count).
    public init(width: Int, count: Int, mean: [Double], variance: [Double], meanNorm: Double) {
        precondition(mean.count == width && variance.count == width && count >= 0, "statistics of the wrong shape")
        self.width = width
        self.count = count
        self.mean = mean
        self.m2 = variance.map { $0 * Double(count) }
        self.meanNorm = meanNorm
    }

    /// Population variance per dimension (numpy's `var` with ddof 0); zeros before any row.
    public var variance: [Double] { count == 0 ? m2.map { _ in 0 } : m2.map { $0 / Double(count) } }

    /// Adds rows given row-major, `values.count / width` of them.
    public mutating func add(_ values: UnsafeBufferPointer<Float>) {
        precondition(values.count % width == 0, "\(values.count) values are not whole rows of width \(width)")
        let rows = values.count / width
        guard rows > 0 else { return }
        var batch = RunningStatistics(width: width)
        batch.count = rows
        var normSum = 0.0
        for row in 0..<rows {
            var squares = 0.0
            for dimension in 0..<width {
                let value = Double(values[row * width + dimension])
                batch.mean[dimension] += value
                squares += value * value
            }
            normSum += squares.squareRoot()
        }
        for dimension in 0..<width { batch.mean[dimension] /= Double(rows) }
        for row in 0..<rows {
            for dimension in 0..<width {
                let deviation = Double(values[row * width + dimension]) - batch.mean[dimension]
                batch.m2[dimension] += deviation * deviation
            }
        }
        batch.meanNorm = normSum / Double(rows)
        merge(batch)
    }

    public mutating func add(_ values: [Float]) {
        values.withUnsafeBufferPointer { add($0) }
    }

    /// Joins the statistics of another set of rows of the same width.
    public mutating func merge(_ other: RunningStatistics) {
        precondition(other.width == width, "cannot merge statistics of width \(other.width) into width \(width)")
        guard other.count > 0 else { return }
        guard count > 0 else {
            self = other
            return
        }
        merge(count: other.count, mean: other.mean, meanNorm: other.meanNorm) { other.m2[$0] }
    }

    /// ``merge(_:)`` with the other rows' population variance, as reports carry it: no
    /// second statistics value (and array) per report.
    public mutating func merge(count otherCount: Int, mean otherMean: [Double], variance: [Double], meanNorm otherNorm: Double) {
        precondition(otherMean.count == width && variance.count == width && otherCount >= 0, "statistics of the wrong shape")
        guard otherCount > 0 else { return }
        guard count > 0 else {
            self = RunningStatistics(width: width, count: otherCount, mean: otherMean, variance: variance, meanNorm: otherNorm)
            return
        }
        let b = Double(otherCount)
        merge(count: otherCount, mean: otherMean, meanNorm: otherNorm) { variance[$0] * b }
    }

    private mutating func merge(count otherCount: Int, mean otherMean: [Double], meanNorm otherNorm: Double, m2 otherM2: (Int) -> Double) {
        let a = Double(count), b = Double(otherCount), n = a + b
        for dimension in 0..<width {
            let delta = otherMean[dimension] - mean[dimension]
            mean[dimension] += delta * b / n
            m2[dimension] += otherM2(dimension) + delta * delta * a * b / n
        }
        meanNorm = (meanNorm * a + otherNorm * b) / n
        count += otherCount
    }
}
