import BLAS
import Testing

/// Row-major element (row, column) of a matrix stored with leading dimension `ld`,
/// read through an optional transpose: the plain reference the fast path is checked against.
private func element(_ m: [Float], _ transpose: BLAS.Transpose, _ ld: Int, _ row: Int, _ column: Int) -> Float {
    transpose == .none ? m[row * ld + column] : m[column * ld + row]
}

private func seeded(_ count: Int, seed: UInt32) -> [Float] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 1_664_525 &+ 1_013_904_223
        return Float(Int32(bitPattern: state >> 8) % 2001 - 1000) / 500
    }
}

private struct Shape: CustomTestStringConvertible, Sendable {
    let m, n, k: Int
    let transposeA, transposeB: BLAS.Transpose
    var testDescription: String { "\(m)×\(n)×\(k) \(transposeA)/\(transposeB)" }
}

private let shapes: [Shape] = [(7, 13, 5), (1, 1, 1), (16, 16, 16), (33, 3, 65), (64, 17, 1)].flatMap { m, n, k in
    [BLAS.Transpose.none, .transpose].flatMap { a in
        [BLAS.Transpose.none, .transpose].map { b in Shape(m: m, n: n, k: k, transposeA: a, transposeB: b) }
    }
}

@Suite struct GEMM {
    @Test(arguments: shapes)
    fileprivate func sgemmMatchesTheTripleLoop(_ shape: Shape) {
        let (m, n, k) = (shape.m, shape.n, shape.k)
        // Padded leading dimensions catch stride mistakes.
        let lda = (shape.transposeA == .none ? k : m) + 3
        let ldb = (shape.transposeB == .none ? n : k) + 2
        let ldc = n + 1
        let a = seeded((shape.transposeA == .none ? m : k) * lda, seed: 1)
        let b = seeded((shape.transposeB == .none ? k : n) * ldb, seed: 2)
        let c0 = seeded(m * ldc, seed: 3)
        let alpha: Float = 0.75, beta: Float = -0.5

        var expected = c0
        for row in 0..<m {
            for column in 0..<n {
                var sum: Double = 0
                for inner in 0..<k {
                    sum += Double(element(a, shape.transposeA, lda, row, inner)) * Double(element(b, shape.transposeB, ldb, inner, column))
                }
                expected[row * ldc + column] = Float(Double(alpha) * sum + Double(beta) * Double(c0[row * ldc + column]))
            }
        }

        var c = c0
        a.withUnsafeBufferPointer { a in
            b.withUnsafeBufferPointer { b in
                c.withUnsafeMutableBufferPointer { c in
                    BLAS.sgemm(
                        shape.transposeA, shape.transposeB, m: m, n: n, k: k, alpha: alpha,
                        a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
                }
            }
        }
        var worst: Float = 0
        for row in 0..<m {
            for column in 0..<n { worst = max(worst, abs(c[row * ldc + column] - expected[row * ldc + column])) }
            // Padding columns must be untouched.
            #expect(c[row * ldc + n] == c0[row * ldc + n])
        }
        #expect(worst <= 1e-4 * Float(k), "max |difference| \(worst)")
    }

    @Test(arguments: [BLAS.Transpose.none, .transpose])
    func sgemvMatchesTheDoubleLoop(_ transpose: BLAS.Transpose) {
        let rows = 9, columns = 14, lda = 16
        let a = seeded(rows * lda, seed: 4)
        let inputs = transpose == .none ? columns : rows
        let outputs = transpose == .none ? rows : columns
        let x = seeded(inputs, seed: 5)
        let y0 = seeded(outputs, seed: 6)
        var y = y0
        a.withUnsafeBufferPointer { a in
            x.withUnsafeBufferPointer { x in
                y.withUnsafeMutableBufferPointer { y in
                    BLAS.sgemv(transpose, rows: rows, columns: columns, alpha: 2, a: a, lda: lda, x: x, beta: 1, y: y)
                }
            }
        }
        for out in 0..<outputs {
            var sum: Float = 0
            for index in 0..<inputs {
                sum += (transpose == .none ? a[out * lda + index] : a[index * lda + out]) * x[index]
            }
            #expect(abs(y[out] - (2 * sum + y0[out])) <= 1e-4)
        }
    }
}

@Suite(.serialized) struct Configuration {
    @Test func threadCountIsSetAndRead() {
        let original = BLAS.threadCount
        defer { BLAS.threadCount = original }
        BLAS.threadCount = 1
        #expect(BLAS.threadCount == 1)
        BLAS.threadCount = 2
        #expect(BLAS.threadCount == 2)
    }

    @Test func configurationNamesOpenBLASAndACore() {
        #expect(BLAS.configuration.contains("OpenBLAS"))
        #expect(!BLAS.coreName.isEmpty)
    }
}
