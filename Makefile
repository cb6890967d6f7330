# proxylab — common tasks. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
RELEASE := target/release

.PHONY: help build run proxy origin chat demo cluster test check bench bench-peers fuzz clean lab1 lab2 lab3 lab4 lab5 grade grader student-kit

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

cluster: build ## Three replicas sharing one cache through Redis (needs redis-server): origin fetches with and without
	@bash docs/cluster.sh $(RELEASE)

# The exports' tests ship the lab a course ships, built without the reference proxy: built
# first here (its own target folder), so the test that needs it finds it ready.
test: ## Run every test (unit, integration, CLI)
	$(CARGO) build -q -p labs --bin lab --no-default-features --target-dir target/student
	$(CARGO) test --workspace

check: ## The CI gates: formatting, clippy -D warnings, tests
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p labs --no-default-features -- -D warnings
	$(MAKE) test

bench: ## Criterion benchmark: N keep-alive clients through the proxy (see benches/forward.rs)
	$(CARGO) build --release -p proxy
	$(CARGO) bench --bench forward

bench-peers: ## Side by side with Squid, Tinyproxy and Privoxy in ../shared/bench (skips if they are missing)
	@bash benches/peers.sh

# Each target runs for FUZZ_SECONDS; new corpus entries go to proxy/fuzz/work/ (not kept),
# and an input that fails is copied to proxy/fuzz/regressions/, which `make test` replays.
FUZZ_SECONDS ?= 300
fuzz: ## Fuzz the request-head and chunked decoders, FUZZ_SECONDS each (nightly + cargo-fuzz)
	@command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install cargo-fuzz"; exit 1; }
	@rustup run nightly rustc --version >/dev/null 2>&1 || { echo "the nightly toolchain is missing: rustup toolchain install nightly"; exit 1; }
	cd proxy/fuzz && for t in request_head chunked; do \
	  mkdir -p work/$$t regressions/$$t; \
	  cargo +nightly fuzz run $$t work/$$t corpus/$$t -- -max_total_time=$(FUZZ_SECONDS) \
	    -max_len=8192 -rss_limit_mb=2048 -timeout=5 \
	    || { cp artifacts/$$t/* regressions/$$t/ 2>/dev/null; echo "$$t failed: the input is in proxy/fuzz/regressions/$$t"; exit 1; }; \
	done

# The labs grade the reference unless told otherwise:
#   make lab2 PROXY_CMD="python3 myproxy.py {port}"     any program; {port} is its port
#   make lab4 PROXY_ADDR=127.0.0.1:8080                 a proxy already running
#   make lab1 CHAT_CMD="./chat {port}"                  lab 1 grades a chat server
# The commands reach `lab` through the environment, so quotes inside them need no escaping:
#   make lab2 PROXY_CMD="python3 'my proxy.py' {port}"
export PROXY_CMD PROXY_ADDR CHAT_CMD POINTS
LAB := $(CARGO) run --release -q -p labs --bin lab --
SUBJECT = $(if $(PROXY_CMD),--cmd "$$PROXY_CMD",$(if $(PROXY_ADDR),--addr "$$PROXY_ADDR",))
CHAT_SUBJECT = $(if $(CHAT_CMD),--cmd "$$CHAT_CMD",$(SUBJECT))
POINTS_FLAG = $(if $(POINTS),--points "$$POINTS",)

lab1: ## Lab 1, sockets and many clients (a chat server; CHAT_CMD="… {port}" to grade yours)
	$(LAB) run 1 $(CHAT_SUBJECT) $(POINTS_FLAG)

lab2: ## Lab 2, forwarding (PROXY_CMD="… {port}" or PROXY_ADDR=… to grade yours)
	$(LAB) run 2 $(SUBJECT) $(POINTS_FLAG)

lab3: ## Lab 3, concurrency
	$(LAB) run 3 $(SUBJECT) $(POINTS_FLAG)

lab4: ## Lab 4, caching
	$(LAB) run 4 $(SUBJECT) $(POINTS_FLAG)

lab5: ## Lab 5, HTTPS tunnels and filtering
	$(LAB) run 5 $(SUBJECT) $(POINTS_FLAG)

# make grade PROXY_CMD="./myproxy {port}" CHAT_CMD="./chat {port}" [LABS=2,3] [POINTS=points.toml]
# A lab whose program is not given is "not submitted" (0), never graded as the reference.
LABS ?= 1,2,3,4,5
RESULTS ?= results.json
grade: ## Grade your programs (PROXY_CMD for labs 2-5, CHAT_CMD for lab 1; LABS=2,3); writes results.json
	$(LAB) grade --labs $(LABS) $(if $(PROXY_CMD),--cmd "$$PROXY_CMD",$(if $(PROXY_ADDR),--addr "$$PROXY_ADDR",)) $(if $(CHAT_CMD),--chat-cmd "$$CHAT_CMD",) $(POINTS_FLAG) --gradescope "$(RESULTS)"

# The lab a course ships (Gradescope, the student kit): built without the reference proxy,
# which a submission could otherwise relay its requests to. `lab export gradescope` refuses
# any other unless told --with-reference.
GRADER := target/student/release/lab
grader: ## The lab to ship to a course: no reference proxy inside, stripped ($(GRADER))
	$(CARGO) build --release -p labs --bin lab --no-default-features --target-dir target/student
	-strip $(GRADER)

student-kit: grader ## The student kit in student-kit/: handouts, starter, lab/origin-sim/client, no reference proxy
	$(CARGO) build --release -p origin-sim -p client
	rm -rf student-kit
	$(GRADER) export student-kit student-kit --bin-dir $(RELEASE)
	-strip student-kit/bin/lab student-kit/bin/origin-sim student-kit/bin/client

clean: ## Remove build output
	$(CARGO) clean
