# postman-retry: build, test, demo, bench. Every target that needs PostgreSQL starts a throwaway
# cluster in a temp dir (scripts/pg-throwaway.sh) and removes it afterwards, even on failure.
SWIFT ?= swift
PG := scripts/pg-throwaway.sh run --

.PHONY: build release test test-deps test-unit test-reliability demo bench clean report-screenshot format lint

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

# Installs what the suite needs when it is missing (Debian packages, PyPI), then builds the executables
# too: the crash tests run the real postman-retry binary.
test: test-deps lint build
	$(PG) $(SWIFT) test

# swift-format (part of the Swift 6 toolchain) with the settings in .swift-format: `make format` rewrites,
# `make lint` (run by `make test`) fails on any difference or rule warning.
FORMATTED := Package.swift Sources Tests
format:
	$(SWIFT) format format --in-place --recursive --parallel $(FORMATTED)

lint:
	@$(SWIFT) format --version >/dev/null 2>&1 || { echo "lint: swift-format is missing from this toolchain (Swift 6 ships it)"; exit 1; }
	$(SWIFT) format lint --strict --recursive --parallel $(FORMATTED)

test-deps:
	bash scripts/install-test-deps.sh

# The reliability suite at full scale (50+ SIGKILLs over 5,000 messages, database and API faults,
# signals, concurrency, secrets); figures go to out/reliability.log (docs/reliability.md).
test-reliability: test-deps build
	mkdir -p out && rm -f out/reliability.log
	RELIABILITY=full RELIABILITY_LOG=$(CURDIR)/out/reliability.log $(PG) $(SWIFT) test --filter 'ReliabilityTests|CrashResumeTests|WorkerTests'
	cat out/reliability.log

# Pure logic only (no database, no simulator).
test-unit:
	$(SWIFT) test --filter 'RetryCoreTests|PGQueryTests'

demo: release
	$(PG) bash scripts/demo.sh

# Runs the demo, then photographs its HTML report in a real browser (Debian's chromium, headless):
# docs/report-screenshot.png (laptop width) and docs/report-screenshot-phone.png.
report-screenshot: demo
	bash scripts/report-screenshot.sh out/demo/report/summary.html docs

bench: release
	$(PG) bash bench/run-all.sh

clean:
	rm -rf .build out
