# turbo_ws — the two commands that matter: `make demo` and `make test`.
# Both install what is missing (Debian packages), build, then run.

CARGO      ?= cargo
BUILD_DIR  := build
SO         := $(BUILD_DIR)/turbo_ws.so
SO54       := $(BUILD_DIR)/lua54/turbo_ws.so
LUAJIT     := luajit
export LUA_CPATH := $(CURDIR)/$(BUILD_DIR)/?.so;;

.PHONY: all deps build build54 rock demo test conformance bench soak fuzz clean

all: build

# Debian packages the build and the tests need; installed only when missing.
deps:
	@bash scripts/deps.sh

build: deps
	$(CARGO) build --release --locked
	@mkdir -p $(BUILD_DIR)
	cp target/release/libturbo_ws.so $(SO).tmp && mv $(SO).tmp $(SO)

# The same crate built for the Lua 5.4 ABI.
build54: deps
	$(CARGO) build --release --locked --no-default-features --features lua54 --target-dir target/lua54
	@mkdir -p $(BUILD_DIR)/lua54
	cp target/lua54/release/libturbo_ws.so $(SO54).tmp && mv $(SO54).tmp $(SO54)

# The release tarball turbo_ws-<version>.tar.gz and the source rock
# turbo_ws-<version>-1.src.rock (here): `luarocks install ./turbo_ws-<version>-1.src.rock`.
rock: deps
	bash scripts/make-rock.sh

# A real server and client talking over WebSocket.
demo: build
	$(LUAJIT) examples/chat/chat.lua

# Every suite; ends with one line "N passed, M failed".
test: build build54
	@bash scripts/deps.sh test
	@bash scripts/test-all.sh

# The full Autobahn|Testsuite run, both ways; writes tests/conformance/RESULTS.md.
conformance: build
	@bash scripts/conformance.sh full

# Throughput, latency, CPU and memory against anchor servers (uWebSockets
# from UWS_SRC/USOCKETS_SRC, Node ws, fastwebsockets, tokio-tungstenite);
# anchors that cannot be built are reported missing. Writes
# bench/RESULTS.md and bench/msgs_per_sec.png. BENCH_ARGS are passed on
# (e.g. BENCH_ARGS="--seconds 2 --skip memory").
bench: build
	cd bench && $(CARGO) build --release --locked
	@test -x bench/.venv/bin/python || python3 -m venv bench/.venv
	@bench/.venv/bin/python -c 'import matplotlib' 2>/dev/null || bench/.venv/bin/pip install -q matplotlib==3.9.2
	bench/.venv/bin/python bench/bench.py $(BENCH_ARGS)

# Mixed traffic against one server for SOAK_SECONDS (600); writes bench/SOAK.md.
soak: build
	cd bench && $(CARGO) build --release --locked
	python3 bench/soak.py

# Every cargo-fuzz target for FUZZ_SECONDS (120) each; corpus in fuzz/corpus/.
fuzz:
	bash scripts/fuzz.sh

clean:
	$(CARGO) clean
	rm -rf $(BUILD_DIR)
