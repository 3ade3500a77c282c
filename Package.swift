// swift-tools-version:6.1
import PackageDescription

// Settings shared by every Swift target (Swift 6 language mode is the default for tools 6.x).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility")
]

let package = Package(
    name: "postman-retry",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "postman-retry", targets: ["postman-retry"]),
        .executable(name: "postman-sim", targets: ["postman-sim"]),
        .library(name: "LibPQ", targets: ["LibPQ"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.0"),  // LogHandler.log(event:)
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.81.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.24.0"),
        // TLS settings of the Postman client (extra trust roots) and its certificate check; already
        // a dependency of async-http-client.
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.27.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.10.0"),
        // SIGTERM/SIGINT as a graceful shutdown of the run (already a dependency of Hummingbird).
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.0.0"),
        // Metrics of a run (issue 9): swift-metrics API, Prometheus text format from the maintained backend.
        // 2.13.0 is the release checked here; its metric initialisers take `factory:`, so no global bootstrap.
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.0"),  // MetricNameDescriptor
        // Property-based tests of the message lifecycle (random event sequences, crashes at every step).
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.0")
    ],
    targets: [
        // The system libpq (apt: libpq-dev), included by name through pkg-config.
        .systemLibrary(
            name: "CLibPQ",
            pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"]), .brew(["libpq"])]
        ),
        // prctl(PR_SET_DUMPABLE, 0) for the job's executable: prctl is variadic, which Swift cannot call.
        .target(name: "CProcessHardening"),
        // Calendar arithmetic and the ISO 8601 parser and writers, shared by the libpq layer, the
        // Postman client and the simulator. Depends on nothing (Foundation's Date aside).
        .target(name: "CivilTime", swiftSettings: swiftSettings),
        // A small libpq wrapper: knows SQL and libpq, nothing of Postman.
        .target(
            name: "LibPQ",
            dependencies: [
                "CLibPQ", "CivilTime",
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: swiftSettings
        ),
        // Pure domain rules: selection, statuses, masking, pacing. No I/O.
        .target(
            name: "RetryCore",
            swiftSettings: swiftSettings
        ),
        // Typed Postman v2 client over async-http-client.
        .target(
            name: "PostmanAPI",
            dependencies: [
                "CivilTime",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: swiftSettings
        ),
        // The Postman v2 simulator (Hummingbird), used by tests, demo and benchmarks.
        .target(
            name: "PostmanSimulator",
            dependencies: [
                "CivilTime",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio")
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "postman-sim",
            dependencies: [
                "PostmanSimulator",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: swiftSettings
        ),
        // What a run is told: its settings and their defaults (written once), the agency table's
        // mapping, API keys, and the job's errors with their exit codes. Below both the config
        // reader and the job, so neither imports the other.
        .target(
            name: "RetrySettings",
            dependencies: ["LibPQ", "RetryCore", "PostmanAPI"],
            swiftSettings: swiftSettings
        ),
        // The job's own schema (postman_retry) and every statement on it: migrations, the stores the run
        // writes through, and the read models of the report, metrics, `runs` and the summary.
        .target(
            name: "RetryJournal",
            dependencies: [
                "LibPQ", "RetryCore", "RetrySettings",
                .product(name: "Logging", package: "swift-log")
            ],
            resources: [
                .embedInCode("Migrations/V001__bookkeeping.sql"),
                .embedInCode("Migrations/V002__quiet_hours.sql"),
                .embedInCode("Migrations/V003__request_timeline.sql"),
                .embedInCode("Migrations/V004__campaign_leases.sql"),
                .embedInCode("Migrations/V005__engine2_witness.sql"),
                .embedInCode("Migrations/V006__whole_batch_calls.sql"),
                .embedInCode("Migrations/V007__run_holders.sql"),
                .embedInCode("Migrations/V008__write_refused.sql"),
                .embedInCode("Migrations/V009__never_final_run.sql"),
                .embedInCode("Migrations/V010__batch_call_sent.sql"),
                .embedInCode("Migrations/V011__takeover_stamp.sql")
            ],
            swiftSettings: swiftSettings
        ),
        // Orchestration: selection, the run engine, the run's hold; bookkeeping through RetryJournal.
        .target(
            name: "RetryJob",
            dependencies: [
                "LibPQ", "RetryCore", "PostmanAPI", "RetrySettings", "RetryJournal",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio")
            ],
            // The crash hook (POSTMAN_RETRY_CRASH_AT) is compiled into debug builds only, the ones the tests
            // run; `swift build -c release` has none (issue 14).
            swiftSettings: swiftSettings + [.define("POSTMAN_RETRY_TEST_HOOKS", .when(configuration: .debug))]
        ),
        // The config file (TOML): table mapping, OTP rule, keys, quiet hours, error policy; the
        // precedence of flags, environment and file; checks of the mapping against a live database.
        .target(
            name: "RetryConfig",
            dependencies: [
                "RetrySettings", "RetryCore", "LibPQ", "PostmanAPI",
                .product(name: "TOMLKit", package: "TOMLKit"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: swiftSettings
        ),
        // Reports of a run (summary.html/.md/.json, failures.csv) and the run history, read from the journal.
        .target(
            name: "RetryReport",
            dependencies: [
                "RetryJournal", "RetrySettings", "LibPQ", "RetryCore",
                .product(name: "Mustache", package: "swift-mustache")
            ],
            swiftSettings: swiftSettings
        ),
        // The metrics of one run: Prometheus text for node_exporter's textfile collector, or a push
        // to a Pushgateway.
        .target(
            name: "RetryMetrics",
            dependencies: [
                "RetryJob", "RetryJournal", "RetrySettings", "RetryCore", "LibPQ",
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "postman-retry",
            dependencies: [
                "CProcessHardening", "RetryJob", "RetryJournal", "RetrySettings", "RetryCore", "LibPQ", "RetryConfig",
                "RetryReport", "RetryMetrics", "PostmanAPI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle")
            ],
            swiftSettings: swiftSettings
        ),
        // Sample agency rows plus matching simulator data, for tests, the demo and the benchmarks.
        .target(name: "SampleData", dependencies: ["PostmanSimulator", "CivilTime"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "postman-demo-data",
            dependencies: ["SampleData", "PostmanSimulator", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings
        ),
        // Micro-benchmarks of the wrapper (driven by bench/*.sh).
        .executableTarget(
            name: "retry-bench",
            dependencies: [
                "LibPQ", "PostmanAPI", .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: swiftSettings
        ),
        // Test helpers shared by the test targets: fresh databases on the throwaway server.
        .target(
            name: "PostgresTestSupport",
            dependencies: ["LibPQ", .product(name: "Logging", package: "swift-log")],
            swiftSettings: swiftSettings
        ),
        // The engine tests' world (database with sample rows, simulator), shared by the job, report and
        // metrics tests.
        .target(
            name: "EngineTestSupport",
            dependencies: [
                "RetryJob", "RetryJournal", "RetrySettings", "RetryCore", "LibPQ", "PostmanSimulator", "PostgresTestSupport",
                "SampleData",
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(name: "CivilTimeTests", dependencies: ["CivilTime"], swiftSettings: swiftSettings),
        .testTarget(name: "LibPQTests", dependencies: ["LibPQ", "PostgresTestSupport"], swiftSettings: swiftSettings),
        .testTarget(
            name: "RetryReportTests",
            dependencies: [
                "RetryReport", "RetryJob", "RetryJournal", "RetrySettings", "LibPQ", "RetryCore", "PostmanSimulator",
                "PostgresTestSupport", "SampleData",
                "EngineTestSupport", .product(name: "Mustache", package: "swift-mustache")
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RetryCoreTests",
            dependencies: ["RetryCore", .product(name: "PropertyBased", package: "swift-property-based")],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostmanSimulatorTests",
            dependencies: [
                "PostmanSimulator", "PostmanAPI",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client")
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RetryConfigTests",
            dependencies: ["RetryConfig", "RetrySettings", "RetryJob", "RetryCore", "LibPQ", "PostgresTestSupport"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "RetryMetricsTests",
            dependencies: [
                "RetryMetrics", "RetryJob", "RetryJournal", "RetrySettings", "RetryCore", "LibPQ", "PostmanSimulator",
                "PostgresTestSupport", "SampleData",
                "EngineTestSupport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log")
            ],
            swiftSettings: swiftSettings
        ),
        // deploy/ (systemd units, Kubernetes manifests, Dockerfile) checked by systemd and the linters.
        .testTarget(name: "DeployTests", exclude: ["check_deploy.py"], swiftSettings: swiftSettings),
        .testTarget(
            name: "RetryJobTests",
            dependencies: [
                "RetryJob", "RetryJournal", "RetrySettings", "LibPQ", "RetryCore", "PostmanAPI", "PostmanSimulator",
                "PostgresTestSupport",
                "SampleData", "RetryConfig", "EngineTestSupport",
                .product(name: "Hummingbird", package: "hummingbird")
            ],
            swiftSettings: swiftSettings
        )
    ]
)
