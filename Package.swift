// swift-tools-version:6.1
// actcluster: distributed activation collection for sparse-dictionary research.
//
// Layers (each depends only on the ones below it):
//   actcluster (executable) -> ActClusterCLI (commands)
//   -> roles and domain libraries (Shards; more added by later milestones)
//   -> ZeroMQ, LZ4, BLAS, Platform, Logfmt (thin Swift wrappers, Swift types only)
//   -> CZeroMQ, CLZ4, COpenBLAS (system-library targets), CShardKernels (C kernels);
//      C names stop at the wrappers
import PackageDescription

// The coordinator's loop reads and writes class properties (its own, the journal's, the
// socket's) many times per message, and in release each access was checked at run time for
// overlap: a tenth of the loop's instructions (counted with callgrind, `bench dispatch`).
// Release builds of those modules skip the run-time check; debug builds keep it, and
// deploy/test.sh runs the cluster suites in a debug build too, so an overlapping access
// still fails a test. The compile-time checks stay on everywhere.
let loopSettings: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "actcluster",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "actcluster", targets: ["actcluster"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.0"),
    ],
    targets: [
        // C libraries from Debian. libzmq has no pkgConfig on purpose: Debian's libzmq.pc
        // drags in krb5 include flags that SwiftPM rejects; zmq.h is on the default path.
        .systemLibrary(
            name: "CZeroMQ", path: "Sources/CZeroMQ",
            providers: [.apt(["libzmq3-dev"])]),
        .systemLibrary(
            name: "CLZ4", path: "Sources/CLZ4", pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"])]),
        // Debian keeps cblas.h under openblas-pthread/; the "openblas" .pc file points there.
        .systemLibrary(
            name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]),

        // Thin wrappers: the only modules that import the C targets.
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"], swiftSettings: loopSettings),
        .target(name: "LZ4", dependencies: ["CLZ4"]),
        .target(name: "BLAS", dependencies: ["COpenBLAS"]),
        // The system calls Glibc's module lacks (sched_setattr).
        .target(name: "CPlatform"),
        .target(name: "Platform", dependencies: ["CPlatform"]),
        // Shard codec kernels (CRC-32C, bitshuffle, float conversions). Fast paths use
        // per-function target attributes and run-time dispatch, never -march flags.
        .target(
            name: "CShardKernels",
            cSettings: [.unsafeFlags(["-Wall", "-Wextra"])]),

        // File formats and domain libraries: no processes, sockets or CLI.
        .target(name: "SafeTensors", dependencies: ["Platform"]),
        // Forward-pass kernels (dense layers on packed weights, attention, norms), built for
        // AVX-512, AVX2 and baseline (target_clones).
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=fast"])]),
        .target(name: "Transformers", dependencies: ["CKernels", "Platform", "SafeTensors"]),
        .target(name: "Corpus"),
        // Sparse-dictionary training: selection, sparse decode and backward, Adam (C, target_clones).
        .target(name: "CSparseKernels", cSettings: [.unsafeFlags(["-O3", "-ffp-contract=fast"])]),
        // Transformers only for eval's downstream fidelity (the reconstruction spliced into the model).
        .target(
            name: "Trainer",
            dependencies: ["BLAS", "CSparseKernels", "Shards", "SafeTensors", "Platform", "Transformers", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "Collection",
            dependencies: ["Corpus", "Platform", "Shards", "Tokenizers", "Transformers", .product(name: "Logging", package: "swift-log")]),
        .target(name: "Shards", dependencies: ["CShardKernels", "LZ4", "Platform", "SafeTensors"]),
        // The cluster's wire protocol (message codec), the coordinator's journal and state
        // machine, and the unit planner: no sockets or processes, testable in-process.
        .target(name: "ClusterProtocol", dependencies: ["Corpus", "Shards", "LZ4", "Platform"], swiftSettings: loopSettings),
        // Roles: each runs one process's loop and talks to the others only through
        // ClusterProtocol messages; roles never import each other.
        .target(
            name: "Coordinator",
            dependencies: ["ClusterProtocol", "Corpus", "Monitoring", "Platform", "Shards", "ZeroMQ", .product(name: "Logging", package: "swift-log")],
            swiftSettings: loopSettings),
        // Prometheus text and a minimal HTTP endpoint for it (`--metrics-bind`).
        .target(name: "Monitoring", dependencies: ["Platform"]),
        // The worker role: a DEALER that leases units from a coordinator, collects them on a
        // compute thread and PUSHes batches to a trainer. Talks to other roles only through
        // ClusterProtocol; never imports a coordinator or trainer module.
        .target(
            name: "Worker",
            dependencies: [
                "ClusterProtocol", "ZeroMQ", "Collection", "Corpus", "Transformers", "Tokenizers", "Shards", "LZ4", "Platform",
                .product(name: "Logging", package: "swift-log"),
            ]),
        // The live trainer's receiving side: BATCH over PULL into the Trainer engine.
        .target(
            name: "TrainerService",
            dependencies: ["ClusterProtocol", "LZ4", "Platform", "Shards", "Trainer", "ZeroMQ", .product(name: "Logging", package: "swift-log")]),
        .target(
            name: "Logfmt",
            dependencies: [.product(name: "Logging", package: "swift-log")]),

        // Command line: the only place that bootstraps logging or parses arguments.
        .target(
            name: "ActClusterCLI",
            dependencies: [
                "ZeroMQ", "LZ4", "BLAS", "Platform", "Logfmt", "Shards", "SafeTensors", "Tokenizers", "Transformers", "Corpus", "Collection", "ClusterProtocol",
                "Coordinator", "Monitoring", "Trainer", "TrainerService", "Worker",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]),
        .executableTarget(name: "actcluster", dependencies: ["ActClusterCLI", "Platform"]),

        // Hugging Face tokenizer.json encoding, id-for-id with the Rust tokenizers library.
        .target(name: "Tokenizers"),

        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ"]),
        .testTarget(name: "LZ4Tests", dependencies: ["LZ4"]),
        .testTarget(name: "BLASTests", dependencies: ["BLAS"]),
        .testTarget(
            name: "LogfmtTests",
            dependencies: ["Logfmt", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "PlatformTests", dependencies: ["Platform"]),
        .testTarget(name: "SafeTensorsTests", dependencies: ["SafeTensors", "Platform"]),
        .testTarget(name: "CorpusTests", dependencies: ["Corpus"]),
        .testTarget(name: "TransformersTests", dependencies: ["Transformers", "SafeTensors", "CKernels"]),
        .testTarget(name: "TokenizersTests", dependencies: ["Tokenizers"]),
        .testTarget(name: "ClusterProtocolTests", dependencies: ["ClusterProtocol", "Corpus", "Shards", "ZeroMQ", "Platform"]),
        .testTarget(
            name: "CoordinatorTests",
            dependencies: ["Coordinator", "Monitoring", "ClusterProtocol", "Corpus", "Shards", "ZeroMQ", "Platform", "Logfmt", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "TrainerTests",
            dependencies: ["Trainer", "Shards", "SafeTensors", "Platform", "Transformers", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "TrainerServiceTests",
            dependencies: ["TrainerService", "Trainer", "ClusterProtocol", "Shards", "ZeroMQ", "Platform", .product(name: "Logging", package: "swift-log")]),
        .testTarget(
            name: "ShardsTests", dependencies: ["Shards", "Platform", "SafeTensors"]),
        .testTarget(
            name: "WorkerTests",
            dependencies: [
                "Worker", "ClusterProtocol", "Collection", "Corpus", "ZeroMQ", "Shards", "Platform", "Tokenizers", "Transformers",
                .product(name: "Logging", package: "swift-log"),
            ]),
        .testTarget(
            name: "ActClusterCLITests",
            dependencies: ["ActClusterCLI", "ClusterProtocol", "ZeroMQ", "Shards", "SafeTensors", "Platform", "Tokenizers", "Transformers"]),
    ]
)
