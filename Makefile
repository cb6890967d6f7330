# proxylab — common tasks. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
RELEASE := target/release

.PHONY: help build run proxy origin chat demo test check bench clean lab1 lab2 lab3 lab4 lab5 grade

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

# The labs grade the reference proxy unless told otherwise:
#   make lab2 PROXY_CMD="python3 myproxy.py {port}"     any program; {port} is its port
#   make lab4 PROXY_ADDR=127.0.0.1:8080                 a proxy already running
LAB_SUBJECT := $(if $(PROXY_CMD),--cmd '$(PROXY_CMD)',$(if $(PROXY_ADDR),--addr $(PROXY_ADDR),))

lab1: ## Lab 1, sockets and many clients (a chat server; PROXY_CMD to grade yours)
	$(CARGO) run --release -q -p labs --bin lab -- run 1 $(LAB_SUBJECT)

lab2: ## Lab 2, forwarding (PROXY_CMD="… {port}" or PROXY_ADDR=… to grade yours)
	$(CARGO) run --release -q -p labs --bin lab -- run 2 $(LAB_SUBJECT)

lab3: ## Lab 3, concurrency
	$(CARGO) run --release -q -p labs --bin lab -- run 3 $(LAB_SUBJECT)

lab4: ## Lab 4, caching
	$(CARGO) run --release -q -p labs --bin lab -- run 4 $(LAB_SUBJECT)

lab5: ## Lab 5, HTTPS tunnels and filtering
	$(CARGO) run --release -q -p labs --bin lab -- run 5 $(LAB_SUBJECT)

grade: ## Every lab; writes results.json (Gradescope's format)
	$(CARGO) run --release -q -p labs --bin lab -- grade $(LAB_SUBJECT) --gradescope results.json

clean: ## Remove build output
	$(CARGO) clean
