#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing (Rust
# components, a Python venv with real readers and servers), starts the real
# services the tests talk to on 127.0.0.1, runs fmt, clippy, every cargo test
# (unit, integration incl. the server-backed ones and a Ballista scheduler +
# two executors started as processes, sqllogictest, doctests) and the checks with Python readers, then stops the services.
#
# Leaves: .venv/ (Python readers and servers), .venv-loaders/ (torch,
# mosaicml-streaming, wids, webdataset), .tools/node (Azurite), target/ (build, or
# $CARGO_TARGET_DIR), target/test-work/ (demo store, server data, logs, the
# Python package's debug wheel under wheels/ and its pytest files under pytest/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WORK=${NUSOMI_TEST_WORK:-$TARGET/test-work}
VENV=${NUSOMI_VENV:-$ROOT/.venv}
step() { printf '\n==> %s  (%ss)\n' "$*" "$SECONDS"; }

step "toolchain"
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
cargo --version

step "python venv with readers and servers ($VENV)"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements.txt
# The model code the presets are checked against (scripts/requirements-upstream.txt).
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -r scripts/requirements-upstream.txt
# DuckDB's delta extension is published on PyPI only for DuckDB 1.5.5 (and
# DuckDB cannot download it offline): a side install, on PYTHONPATH for that check.
DUCKDB_DELTA=$VENV/duckdb-delta
[ -d "$DUCKDB_DELTA/duckdb_extension_delta" ] || "$VENV/bin/pip" install -q --disable-pip-version-check \
  --target "$DUCKDB_DELTA" duckdb==1.5.5 duckdb-extension-delta==1.5.5

# The streaming loaders (torch + mosaicml-streaming + wids) get a venv of
# their own: streaming's dependencies would break `datasets` in the main one.
LOADERS_VENV=${NUSOMI_LOADERS_VENV:-$ROOT/.venv-loaders}
step "python venv with the streaming loaders ($LOADERS_VENV; torch makes it ≈ 6 GB, ≈ 5 min cold)"
[ -x "$LOADERS_VENV/bin/python" ] || python3 -m venv "$LOADERS_VENV"
"$LOADERS_VENV/bin/pip" install -q --disable-pip-version-check -r scripts/requirements-loaders.txt

step "a real browser for the viewer checks (Debian chromium + chromium-driver)"
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium chromium-driver >/dev/null; } \
    || { echo "could not install chromium and chromium-driver with apt-get" >&2; exit 1; }
fi
chromium --version

rm -rf "$WORK" && mkdir -p "$WORK"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

wait_port() { # host port name seconds
  for _ in $(seq 1 $(( $4 * 10 ))); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$3 did not start on $1:$2; its log:" >&2; cat "$WORK/$3.log" >&2 || true; exit 1
}

step "Azurite (Azure Blob emulator) from npm"
NODE_TOOLS=${NUSOMI_NODE_TOOLS:-$ROOT/.tools/node}
if [ ! -x "$NODE_TOOLS/node_modules/.bin/azurite-blob" ]; then
  command -v npm >/dev/null || { echo "npm not found: install Node.js (Debian: apt-get install nodejs npm)" >&2; exit 1; }
  mkdir -p "$NODE_TOOLS"
  npm install --silent --no-audit --no-fund --prefix "$NODE_TOOLS" azurite@3.35.0 >/dev/null
fi

step "SeaweedFS (S3 + STS) on 127.0.0.1:8333"
S3_KEY=nusomi-ci; S3_SECRET=nusomi-ci-secret-0123456789
READ_KEY=nusomi-reader; READ_SECRET=nusomi-reader-secret-0123456789
mkdir -p "$WORK/seaweed"
cat > "$WORK/seaweed/s3.json" <<JSON
{"identities":[
  {"name":"ci","credentials":[{"accessKey":"$S3_KEY","secretKey":"$S3_SECRET"}],
   "actions":["Admin","Read","Write","List","Tagging"]},
  {"name":"reader","credentials":[{"accessKey":"$READ_KEY","secretKey":"$READ_SECRET"}],
   "actions":["Read","List"]}]}
JSON
cat > "$WORK/seaweed/iam.json" <<JSON
{"sts":{"tokenDuration":3600000000000,"maxSessionLength":43200000000000,"issuer":"seaweedfs-sts",
        "signingKey":"$(printf 'nusomi-test-sts-signing-key-0123456789' | base64 -w0)"},
 "policy":{"defaultEffect":"Deny","storeType":"memory"},
 "roles":[{"roleName":"exporter","roleArn":"arn:aws:iam::000000000000:role/exporter",
   "trustPolicy":{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},
     "Action":["sts:AssumeRole"]}]},
   "attachedPolicies":["S3Write"]},
  {"roleName":"stranger","roleArn":"arn:aws:iam::000000000000:role/stranger",
   "trustPolicy":{"Version":"2012-10-17","Statement":[{"Effect":"Allow",
     "Principal":{"AWS":"arn:aws:iam::111122223333:user/someone-else"},"Action":["sts:AssumeRole"]}]},
   "attachedPolicies":["S3Write"]}],
 "policies":[{"name":"S3Write","document":{"Version":"2012-10-17","Statement":[
   {"Effect":"Allow","Action":"s3:*","Resource":"*"},
   {"Effect":"Allow","Action":"sts:ValidateSession","Resource":"*"}]}}]}
JSON
"$VENV/bin/weed" mini -dir="$WORK/seaweed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
  -admin.ui=false -webdav=false -s3.config="$WORK/seaweed/s3.json" -s3.iam.config="$WORK/seaweed/iam.json" \
  -bucket=nusomi-test > "$WORK/seaweed.log" 2>&1 &
PIDS+=($!)

step "moto (S3 + STS) on 127.0.0.1:5000"
"$VENV/bin/moto_server" -H 127.0.0.1 -p 5000 > "$WORK/moto.log" 2>&1 &
PIDS+=($!)

step "Azurite (Azure Blob) on 127.0.0.1:10000"
mkdir -p "$WORK/azurite"
"$NODE_TOOLS/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort 10000 --location "$WORK/azurite" \
  --silent --skipApiVersionCheck > "$WORK/azurite.log" 2>&1 &
PIDS+=($!)

wait_port 127.0.0.1 8333 seaweed 60
wait_port 127.0.0.1 5000 moto 60
wait_port 127.0.0.1 10000 azurite 60
export AWS_ACCESS_KEY_ID=$S3_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET AWS_REGION=us-east-1 \
  AWS_ENDPOINT=http://127.0.0.1:8333 AWS_ALLOW_HTTP=true AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false
export NUSOMI_TEST_S3_URL=s3://nusomi-test NUSOMI_TEST_S3_ENDPOINT=http://127.0.0.1:8333 \
  NUSOMI_TEST_S3_READER="$READ_KEY:$READ_SECRET" NUSOMI_TEST_MOTO=http://127.0.0.1:5000 \
  NUSOMI_TEST_AZURITE=http://127.0.0.1:10000/devstoreaccount1 AZURE_STORAGE_USE_EMULATOR=true
# The bucket is created asynchronously after the port opens.
for _ in $(seq 1 100); do
  "$VENV/bin/python" - <<'PY' && break || sleep 0.2
import os, urllib.request, sys
try:
    urllib.request.urlopen(os.environ["AWS_ENDPOINT"] + "/nusomi-test", timeout=2)
except urllib.error.HTTPError as e:
    sys.exit(0 if e.code in (200, 403) else 1)
except Exception:
    sys.exit(1)
PY
done
# Azurite's container, created through its REST API (shared-key signed by
# scripts/azurite_container.py with the emulator's well-known key).
"$VENV/bin/python" scripts/azurite_container.py http://127.0.0.1:10000/devstoreaccount1 nusomi-test

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings (default features, incl. cluster; then the library and binary without Ballista)"
cargo clippy --all-targets -- -D warnings
cargo clippy --lib --bins --no-default-features -- -D warnings
PYO3_PYTHON="$VENV/bin/python" cargo clippy -p nusomi-export-python -- -D warnings

step "cargo test (unit, integration incl. server-backed and the Ballista cluster, sqllogictest, doctests)"
cargo test -- --include-ignored

step "Delta Lake readers (deltalake, Polars, DuckDB delta) and generic ones (pyarrow, DuckDB) on a demo store"
"$TARGET/debug/nusomi" demo --dir "$WORK/demo" --sessions 6 > "$WORK/demo.log"
tail -n 3 "$WORK/demo.log"
"$VENV/bin/python" scripts/check_store.py "$TARGET/debug/nusomi" "$WORK/demo/store" "$WORK/demo/bundles" "$DUCKDB_DELTA"

step "the same readers on a store after \`store optimize\` and a vacuum (packed frames files)"
"$TARGET/debug/nusomi" demo --dir "$WORK/demo-packed" --sessions 30 > "$WORK/demo-packed.log"
"$TARGET/debug/nusomi" store optimize "$WORK/demo-packed/store" | tee "$WORK/optimize.log"
grep -Eq '^[1-9][0-9]* sessions packed into [1-9]' "$WORK/optimize.log"
"$TARGET/debug/nusomi" store vacuum --retain-hours 0 "$WORK/demo-packed/store" | tail -n 1
"$VENV/bin/python" scripts/check_store.py "$TARGET/debug/nusomi" "$WORK/demo-packed/store" "$WORK/demo-packed/bundles" "$DUCKDB_DELTA"

step "real readers on exports of every format (pyarrow, DuckDB, Polars, datasets, webdataset)"
"$VENV/bin/python" scripts/check_exports.py "$TARGET/debug/nusomi" "$WORK/demo/store" "$WORK/demo/bundles" "$WORK"

step "streaming loaders on exports (MosaicML Streaming on MDS, wids on WebDataset)"
"$LOADERS_VENV/bin/python" scripts/check_loaders.py "$TARGET/debug/nusomi" "$WORK/demo/store" "$WORK/demo/bundles" "$WORK"

step "step exports for trainers (datasets, LLaMA-Factory sharegpt rules, Qwen-VL shape, webdataset)"
"$VENV/bin/python" scripts/check_steps.py "$TARGET/debug/nusomi" "$WORK/demo/store" "$WORK"

step "model presets against the models' own code (qwen-vl-utils, ui-tars; OpenCUA code run)"
"$VENV/bin/python" scripts/check_presets.py "$TARGET/debug/nusomi" "$WORK/demo/store" "$WORK"

step "the guide's examples: console blocks and export specs of README.md and docs/*.md"
"$VENV/bin/python" scripts/check_docs.py "$TARGET/debug/nusomi" "$WORK/demo" "$WORK"

step "the viewer in a real browser (nusomi view; headless chromium via selenium; screenshots in $WORK/viewer)"
"$VENV/bin/python" scripts/check_viewer.py "$TARGET/debug/nusomi" "$WORK/demo/store" "$WORK"

step "Python package (python/): a debug wheel by maturin, installed into both venvs, and its pytest suite"
# The pyo3 cdylib shares this target; on a warm target it adds one crate
# and a second build of the ones whose features differ (≈ 3.5 min).
PYO3_PYTHON="$VENV/bin/python" cargo test -p nusomi-export-python --lib
"$VENV/bin/maturin" build --quiet -m python/Cargo.toml --profile dev --interpreter "$VENV/bin/python" \
  --out "$WORK/wheels"
WHEEL=$(ls "$WORK"/wheels/nusomi_export-*.whl)
"$VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
"$LOADERS_VENV/bin/pip" install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
NUSOMI_BIN="$TARGET/debug/nusomi" NUSOMI_DEMO_STORE="$WORK/demo/store" \
  NUSOMI_DEMO_BUNDLES="$WORK/demo/bundles" NUSOMI_LOADERS_PYTHON="$LOADERS_VENV/bin/python" \
  "$VENV/bin/python" -m pytest -q -p no:cacheprovider --basetemp="$WORK/pytest" python/tests

step "OpenAPI document validates (openapi-spec-validator)"
"$TARGET/debug/nusomi" serve --print-openapi > "$WORK/openapi.json"
"$VENV/bin/python" -c "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('openapi.json: valid OpenAPI', json.load(open(sys.argv[1]))['openapi'])" "$WORK/openapi.json"

step "all tests passed"
