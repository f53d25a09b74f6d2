#!/usr/bin/env bash
# Start-up of the mock-idp binary (issue 10: first discovery answer ≤ 20 ms
# after the listening line), 20 runs each (after one uncounted warm-up run):
#   1. with a key file, as by default from the second run on (the warm-up run
#      creates it in a temporary directory; the user's cache is not touched);
#   2. the same, polling /jwks instead of discovery: the moment the provider
#      has its keys (discovery is answered before that);
#   3. with --ephemeral-keys (new keys at every start: the old behaviour).
# Prints one JSON line per case (bench/startup.py). Run from anywhere:
#   bash bench/startup-mock-idp.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q -p sessionkit-mock-idp)
MOCK=$TARGET/release/mock-idp
KEYS_DIR=$(mktemp -d)
trap 'rm -rf "$KEYS_DIR"' EXIT
python3 "$ROOT/bench/startup.py" --runs 20 --label mock-idp-key-file -- \
  "$MOCK" --bind 127.0.0.1:0 --keys-file "$KEYS_DIR/signing-keys.json"
python3 "$ROOT/bench/startup.py" --runs 20 --label mock-idp-key-file-jwks --path /jwks --expect '"keys"' -- \
  "$MOCK" --bind 127.0.0.1:0 --keys-file "$KEYS_DIR/signing-keys.json"
python3 "$ROOT/bench/startup.py" --runs 20 --label mock-idp-ephemeral-keys -- \
  "$MOCK" --bind 127.0.0.1:0 --ephemeral-keys
