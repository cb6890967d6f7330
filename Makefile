# proxylab — common tasks. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
RELEASE := target/release

.PHONY: help build run proxy origin chat demo test check bench clean

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s "$$(printf '\t')"

build: ## Build every binary (release)
	$(CARGO) build --release --workspace --bins

# The demo's fixed ports: origin-sim HTTP 9000, HTTPS 9443, echo 9007, chat 9009; proxy 8080.
ORIGIN_FLAGS := --http 127.0.0.1:9000 --tls 127.0.0.1:9443 --ca-out origin-sim-ca.pem --echo 127.0.0.1:9007 --chat 127.0.0.1:9009
PROXY_FLAGS := --listen 127.0.0.1:8080 --connect-ports 443,9443,9007,9009
NAME ?= $(USER)

run: build ## Run the proxy on 127.0.0.1:8080 in the foreground (Ctrl-C stops it)
	$(RELEASE)/proxy $(PROXY_FLAGS)

proxy: run ## Same as run

origin: build ## Run origin-sim: HTTP :9000, HTTPS :9443 (CA in origin-sim-ca.pem), echo :9007, chat :9009
	$(RELEASE)/origin-sim $(ORIGIN_FLAGS)

chat: build ## Join the chat room through the proxy: make chat NAME=alice
	$(RELEASE)/client chat --server 127.0.0.1:9009 --proxy 127.0.0.1:8080 --name "$(NAME)"

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
