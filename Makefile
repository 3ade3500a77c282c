# postman-retry: build, test, demo, bench. Every target that needs PostgreSQL starts a throwaway
# cluster in a temp dir (scripts/pg-throwaway.sh) and removes it afterwards, even on failure.
SWIFT ?= swift
PG := scripts/pg-throwaway.sh run --

.PHONY: build release test test-unit demo bench clean report-screenshot

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

# Runs the demo, then photographs its HTML report in a real browser (Debian's chromium, headless):
# docs/report-screenshot.png (laptop width) and docs/report-screenshot-phone.png.
report-screenshot: demo
	bash scripts/report-screenshot.sh out/demo/report/summary.html docs

bench: release
	$(PG) bash bench/run-all.sh

clean:
	rm -rf .build out
