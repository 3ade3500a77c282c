import EngineTestSupport

/// The engine tests' world: the shared `EngineWorld` (Sources/EngineTestSupport).
typealias EngineFixture = EngineWorld
