import COpenBLAS

/// Single-precision BLAS on row-major Swift-owned buffers, through OpenBLAS.
public enum BLAS {
    public enum Transpose: Sendable {
        case none, transpose
        var cblas: CBLAS_TRANSPOSE { self == .none ? CblasNoTrans : CblasTrans }
    }

    /// `C = alpha · op(A) · op(B) + beta · C`, row-major, with op(A) `[m, k]`, op(B) `[k, n]`
    /// and C `[m, n]`. Leading dimensions are row strides in elements.
    public static func sgemm(
        _ transposeA: Transpose = .none, _ transposeB: Transpose = .none,
        m: Int, n: Int, k: Int, alpha: Float = 1,
        a: UnsafeBufferPointer<Float>, lda: Int,
        b: UnsafeBufferPointer<Float>, ldb: Int,
        beta: Float = 0,
        c: UnsafeMutableBufferPointer<Float>, ldc: Int
    ) {
        let (rowsA, columnsA) = transposeA == .none ? (m, k) : (k, m)
        let (rowsB, columnsB) = transposeB == .none ? (k, n) : (n, k)
        checkMatrix("A", a.count, rows: rowsA, columns: columnsA, leading: lda)
        checkMatrix("B", b.count, rows: rowsB, columns: columnsB, leading: ldb)
        checkMatrix("C", c.count, rows: m, columns: n, leading: ldc)
        guard m > 0, n > 0 else { return }
        cblas_sgemm(
            CblasRowMajor, transposeA.cblas, transposeB.cblas, blasint(m), blasint(n), blasint(k),
            alpha, a.baseAddress, blasint(lda), b.baseAddress, blasint(ldb), beta, c.baseAddress, blasint(ldc))
    }

    /// `y = alpha · op(A) · x + beta · y`, row-major A `[rows, columns]`.
    public static func sgemv(
        _ transposeA: Transpose = .none, rows: Int, columns: Int, alpha: Float = 1,
        a: UnsafeBufferPointer<Float>, lda: Int,
        x: UnsafeBufferPointer<Float>, beta: Float = 0, y: UnsafeMutableBufferPointer<Float>
    ) {
        checkMatrix("A", a.count, rows: rows, columns: columns, leading: lda)
        let (inputs, outputs) = transposeA == .none ? (columns, rows) : (rows, columns)
        precondition(x.count >= inputs, "sgemv: x holds \(x.count) floats, needs \(inputs)")
        precondition(y.count >= outputs, "sgemv: y holds \(y.count) floats, needs \(outputs)")
        guard rows > 0, columns > 0 else { return }
        cblas_sgemv(
            CblasRowMajor, transposeA.cblas, blasint(rows), blasint(columns), alpha, a.baseAddress, blasint(lda),
            x.baseAddress, 1, beta, y.baseAddress, 1)
    }

    /// Threads OpenBLAS uses for one call. Set it explicitly so that several workers on one
    /// host do not oversubscribe its cores.
    public static var threadCount: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }

    /// Build configuration, e.g. "OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY SkylakeX MAX_THREADS=64".
    public static var configuration: String { String(cString: openblas_get_config()) }

    /// The kernel set chosen for this CPU at run time, e.g. "SkylakeX" or "Cooperlake".
    public static var coreName: String { String(cString: openblas_get_corename()) }

    private static func checkMatrix(_ name: String, _ count: Int, rows: Int, columns: Int, leading: Int) {
        precondition(rows >= 0 && columns >= 0, "BLAS: \(name) has negative dimensions \(rows)×\(columns)")
        precondition(leading >= max(1, columns), "BLAS: leading dimension of \(name) is \(leading), below its \(columns) columns")
        let needed = rows == 0 ? 0 : (rows - 1) * leading + columns
        precondition(count >= needed, "BLAS: \(name) holds \(count) floats, needs \(needed) for \(rows)×\(columns)")
    }
}
