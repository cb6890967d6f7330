# proxylab — common tasks. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
RELEASE := target/release

.PHONY: help build run origin demo test check bench clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

build: ## Build every binary (release)
	$(CARGO) build --release --workspace --bins

run: build ## Run the proxy on 127.0.0.1:8080 in the foreground (Ctrl-C stops it)
	$(RELEASE)/proxy --listen 127.0.0.1:8080

origin: build ## Run origin-sim on 127.0.0.1:9000 in the foreground
	$(RELEASE)/origin-sim --http 127.0.0.1:9000

demo: build ## Start origin-sim and the proxy, fetch through it from several clients, stop both
	@bash docs/demo.sh $(RELEASE)

test: ## Run every test (unit, integration, CLI)
	$(CARGO) test --workspace

check: ## The CI gates: formatting, clippy -D warnings, tests
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(MAKE) test

bench: ## Criterion benchmark: N keep-alive clients through the proxy (see benches/forward.rs)
	$(CARGO) build --release -p proxy
	$(CARGO) bench --bench forward

clean: ## Remove build output
	$(CARGO) clean
