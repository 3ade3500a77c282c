# postman-retry: build, test, demo, bench. Every target that needs PostgreSQL starts a throwaway
# cluster in a temp dir (scripts/pg-throwaway.sh) and removes it afterwards, even on failure.
SWIFT ?= swift
PG := scripts/pg-throwaway.sh run --

.PHONY: build release test test-unit demo bench clean

build:
	$(SWIFT) build

release:
	$(SWIFT) build -c release

# Builds the executables too: the crash tests run the real postman-retry binary.
test: build
	$(PG) $(SWIFT) test

# Pure logic only (no database, no simulator).
test-unit:
	$(SWIFT) test --filter 'RetryCoreTests|PGQueryTests'

demo: release
	$(PG) bash scripts/demo.sh

bench: release
	$(PG) bash bench/run-all.sh

clean:
	rm -rf .build out
