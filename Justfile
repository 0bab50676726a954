# pgsurge — the recipes people type. `./just` installs `just` when it is missing.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list

# Build every binary (debug).
build:
    cargo build --workspace --bins

# Install the Debian packages the demo and tests need (as root; otherwise says what to install).
deps:
    bash infra/local/deps.sh

# The demo on the local provider (see README).
demo: deps build
    bash infra/local/demo.sh

# The whole test suite: formatting, lints, unit, property and integration tests (and the
# packages, whose glibc floor tests/tests/package.rs checks).
test: deps build
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -q -- -D warnings
    # A single-node Ceph OSD on a loaded 2-core box occasionally fails to come up: retry twice from scratch.
    trap 'bash tests/openstack/down.sh; bash infra/s3/rgw-down.sh --purge' EXIT; bash infra/s3/rgw-up.sh || bash infra/s3/rgw-up.sh --fresh || { sleep 5; bash infra/s3/rgw-up.sh --fresh; }; bash tests/openstack/up.sh; cargo test --workspace --no-fail-fast

# The random-kill soak, long (README "Crash safety"): `SOAK_ROUNDS=50 SOAK_SEED=<n> ./just soak`.
soak: deps build
    SOAK_ROUNDS=${SOAK_ROUNDS:-50} cargo test -p pgsurge-tests --test soak -- --nocapture

# The OpenStack provider's tests against a real OpenStack test cloud (Debian packages, as
# root; its RBD volumes live on the test Ceph): brings Ceph and the cloud up, runs the
# adapter tests and the end-to-end tests with real guests, brings both down even when
# they fail.
test-openstack: deps build
    trap 'bash tests/openstack/down.sh; bash infra/s3/rgw-down.sh --purge' EXIT; bash infra/s3/rgw-up.sh; bash tests/openstack/up.sh; cargo test -p pgsurge-tests --test openstack_cloud --test e2e_openstack

# Start / stop the OpenStack test cloud by hand (state in $PGSURGE_OS_DIR, default /tmp/pgsurge-openstack).
openstack-up:
    bash infra/s3/rgw-up.sh
    bash tests/openstack/up.sh

openstack-down:
    bash tests/openstack/down.sh

# FunctionGraph zips and HTTP-hosting files for the five functions, built against glibc 2.17
# (infra/package/README.md): target/package/fgs/<function>.zip, target/package/http/.
package:
    bash infra/package/package.sh

# Build the packages, then check them (zip contents, glibc floor, no failpoints, the HTTP
# front): a release cross-build, so it is not part of `test` (minutes on 2 cores).
test-package: package
    cargo test -p pgsurge-tests --test package -- --include-ignored

# Invoke a function once with an event file, e.g. `just invoke scale-up tests/events/alertmanager-firing.json`.
invoke function event config="":
    cargo build -q -p {{function}}
    target/debug/{{function}} {{ if config != "" { "--config " + config } else { "" } }} invoke --event {{event}}

# Serve a function over HTTP on a port (POST webhooks to it).
serve function port="8000":
    cargo build -q -p {{function}}
    target/debug/{{function}} serve --port {{port}}

# Start / stop the loopback Ceph RADOS Gateway (S3) the state-store tests use.
s3-up:
    bash infra/s3/rgw-up.sh

s3-down:
    bash infra/s3/rgw-down.sh --purge

# Dry-run a scaling decision: `just plan tests/events/alertmanager-firing.json state.json [config]`.
plan event state config="":
    cargo build -q -p pgsurge-cli
    target/debug/pgsurge plan --event {{event}} --state {{state}} {{ if config != "" { "--config " + config } else { "" } }}

# Reproducible benchmarks, each also alone below; results go in the README (as root; ~2 h
# at the defaults, half of it bench-clone's).
bench: build
    bash infra/bench/runtime.sh
    bash infra/bench/clone_vs_basebackup.sh
    bash infra/bench/catchup_vs_age.sh
    bash infra/bench/prewarm_latency.sh
    bash infra/bench/alarm_to_serving.sh
    cargo run -q -p pgsurge-tests --bin bench-plot

# The benches' CSVs (target/bench/*.csv) drawn as SVGs under docs/bench/ (the README's).
bench-plot:
    cargo run -q -p pgsurge-tests --bin bench-plot

# pgsurge-agent's idle cost (RSS, CPU per idle hour from a 5-minute run; state on the
# running Ceph RGW), e.g. `SECS=60 just bench-agent`.
bench-agent:
    cargo build --release -p pgsurge-agent
    cargo build -p pgsurge-tests --tests
    BENCH_AGENT_BIN="$PWD/target/release/pgsurge-agent" cargo test -p pgsurge-tests --test agent_bench -- --ignored --nocapture

# Alarm → N new replicas serving through the functions (the demo, N = 1, 3, 6; as root;
# ~20 min), e.g. `NS="1 3" RUNS=3 just bench-alarm`.
bench-alarm: deps build
    bash infra/bench/alarm_to_serving.sh
    cargo run -q -p pgsurge-tests --bin bench-plot alarm_to_serving

# Release binaries: size, CLI cold start, peak RSS, and the HTTP host's warm per-request
# latency, per function (~20 min with a cold release build), e.g. `N=41 REQUESTS=400 just bench-runtime`.
bench-runtime:
    bash infra/bench/runtime.sh

# Catch-up vs snapshot age under a steady write load (as root; ~20 min), e.g.
# `AGES="0 60 180" RUNS=3 RATE=100 just bench-catchup`.
bench-catchup:
    bash infra/bench/catchup_vs_age.sh
    cargo run -q -p pgsurge-tests --bin bench-plot catchup_vs_age

# A new replica's first-minute read latency through HAProxy, slowstart alone vs slowstart +
# pre-warm, page cache dropped before each (as root; ~15 min), e.g. `RUNS=3 HOT_TABLES=1500 just bench-prewarm`.
bench-prewarm:
    bash infra/bench/prewarm_latency.sh
    cargo run -q -p pgsurge-tests --bin bench-plot prewarm_latency

# Clone vs pg_basebackup only (as root; ~1 h at the defaults), e.g. `SIZES_MB=1024 RUNS=5 just bench-clone`.
bench-clone:
    bash infra/bench/clone_vs_basebackup.sh
    cargo run -q -p pgsurge-tests --bin bench-plot clone_vs_basebackup

# A copy-on-write (XFS reflink=1, loop-mounted) volume pool for the local provider (as root).
xfs-pool mountpoint size="20G":
    bash infra/local/pool-xfs.sh up {{mountpoint}} {{size}}

# Unmount and delete an XFS pool made by `xfs-pool`.
xfs-pool-down mountpoint:
    bash infra/local/pool-xfs.sh down {{mountpoint}}

# The catalog dataset on a primary, e.g. `just dataset "host=127.0.0.1 port=5432 user=postgres" 4500 1024`.
dataset conn tables="4500" size_mb="1024":
    bash infra/local/dataset/generate.sh --conn "{{conn}}" --tables {{tables}} --size-mb {{size_mb}}

# Format the code.
fmt:
    cargo fmt --all

# The HAProxy adapter tests alone (real HAProxy 2.6 + PostgreSQL 15; Data Plane API contract tests).
test-haproxy: deps
    cargo test -p pgsurge --lib balancer
    cargo test -p pgsurge-tests --test haproxy_runtime --test haproxy_fanout --test haproxy_drain --test haproxy_dataplane --test haproxy_zero_failed -- --nocapture
