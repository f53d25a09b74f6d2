#!/usr/bin/env bash
# The benchmark: mock-idp vs oidc-provider vs oauth2-mock-server, with the same
# load generator (wrk -t2 -c32), in one run, on this machine.
#
#   bash bench/run.sh [DURATION]        DURATION of each measurement, default 10s
#
# Needs: wrk (Debian package `wrk`), node + npm, python3, openssl, cargo.
# Installs bench/node_modules from bench/package-lock.json (npm ci) if missing,
# builds the release mock-idp, then measures, per provider:
#   1. discovery        GET /.well-known/openid-configuration
#   2. userinfo         GET /userinfo with a user's bearer access token
#   3a. client creds    POST /token grant_type=client_credentials (RS256 JWT access token)
#   3b. refresh         POST /token grant_type=refresh_token, the same refresh token every
#                       time (no rotation): a new RS256 access token and RS256 ID token
#   4. signing capacity openssl speed rsa2048 (one core) vs the signatures each provider
#                       made per CPU-second it used during 3a/3b
#   5. start-up         exec -> ready line, exec -> first discovery answer (20 runs each)
# Before each wrk run one request is checked (200, expected JSON, RS256 JWTs); wrk's
# Lua hook counts non-200 answers, and a run with any is marked invalid.
#
# Everything listens on 127.0.0.1 on ports picked free at run time; every server
# started here is stopped on exit. Raw outputs go to bench/out/RUN/ (gitignored),
# and the summary (Markdown) is printed at the end and kept in bench/out/RUN/summary.md.
#
# Knobs (environment): BENCH_WARMUP (default 2s, an unreported wrk run before each
# measured one), BENCH_STARTUP_RUNS (default 20), BENCH_THREADS (2), BENCH_CONNS (32),
# BENCH_QUIET_MAX (default 180: before each measurement wait up to this many seconds for
# the machine to be under 10 % busy, since it may be shared; 0 = don't wait).

set -euo pipefail

DUR=${1:-10s}
if ! [[ $DUR =~ ^[1-9][0-9]*[sm]?$ ]]; then
  echo "usage: bash bench/run.sh [DURATION]   (e.g. 10s, 3s, 1m)" >&2
  exit 2
fi
WARMUP=${BENCH_WARMUP:-2s}
STARTUP_RUNS=${BENCH_STARTUP_RUNS:-20}
THREADS=${BENCH_THREADS:-2}
CONNS=${BENCH_CONNS:-32}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH=$ROOT/bench
cd "$ROOT"

for tool in wrk node npm python3 openssl cargo getconf; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (wrk: apt-get install wrk)" >&2; exit 1; }
done

OUT=$BENCH/out/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
RESULTS=$OUT/results.tsv
printf 'measurement\tprovider\treq_s\tp50\tp99\tnon200\tsocket_errors\tsigs_per_req\tserver_cpu_s\twall_s\tserver_cores\twrk_cores\tother_cores\tsteal_cores\tquiet_wait_s\n' >"$RESULTS"

log() { printf '[run.sh %s] %s\n' "$(date +%T)" "$*" >&2; }

# ---------------------------------------------------------------- processes
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'
}

# start_server NAME CMD...  -> sets SERVER_PID and SERVER_URL (from the ready line)
start_server() {
  local name=$1
  shift
  "$@" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  SERVER_URL=
  local i
  for ((i = 0; i < 200; i++)); do
    SERVER_URL=$(grep -m1 -o 'listening on http://127\.0\.0\.1:[0-9]*' "$OUT/$name.stdout" 2>/dev/null | sed 's/^listening on //' || true)
    [[ -n $SERVER_URL ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/$name.stderr" >&2; echo "run.sh: $name exited" >&2; exit 1; }
    sleep 0.05
  done
  [[ -n $SERVER_URL ]] || { echo "run.sh: $name printed no ready line in 10 s" >&2; exit 1; }
  log "$name (pid $SERVER_PID) at $SERVER_URL"
}

# CPU time (clock ticks, user + system) of a process, from /proc/PID/stat
cpu_ticks() {
  local stat
  stat=$(<"/proc/$1/stat")
  stat=${stat##*) }           # fields from 3 (state) on
  local -a f
  read -r -a f <<<"$stat"
  echo $((f[11] + f[12]))      # utime (14) + stime (15)
}
CLK_TCK=$(getconf CLK_TCK)

# Busy and steal time of the whole machine (clock ticks), from /proc/stat:
# prints "busy steal" (busy = user nice system irq softirq steal).
machine_ticks() {
  local cpu user nice system idle iowait irq softirq steal rest
  read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
  echo "$((user + nice + system + irq + softirq + steal)) $steal"
}

# wait_quiet: this machine is shared, and another job's build on 2 cores skews a
# measurement badly. Wait (at most BENCH_QUIET_MAX seconds, default 180; 0 turns
# it off) until the whole machine was under 10 % busy over 2 s. Sets WAITED (s).
wait_quiet() {
  local max=${BENCH_QUIET_MAX:-180} a b pct
  WAITED=0
  while ((WAITED < max)); do
    a=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep 2
    b=$(awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    pct=$(awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); print int(100 * (y[1] - x[1]) / (y[2] - x[2] + 1e-9)) }')
    ((pct < 10)) && return 0
    WAITED=$((WAITED + 2))
  done
  log "the machine is still busy (${pct} %) after ${max} s; measuring anyway"
}

# ---------------------------------------------------------------- build + deps
log "building the release mock-idp"
cargo build --release -p sessionkit-mock-idp 2>&1 | tail -n 3 >&2
MOCK=$ROOT/target/release/mock-idp
[[ -x $MOCK ]] || { echo "run.sh: $MOCK missing after the build" >&2; exit 1; }

if [[ ! -d $BENCH/node_modules/oidc-provider || ! -d $BENCH/node_modules/oauth2-mock-server ]]; then
  log "npm ci (bench/package-lock.json)"
  (cd "$BENCH" && npm ci --no-audit --no-fund >&2)
fi

# ---------------------------------------------------------------- environment
{
  echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "uptime_before=$(uptime)"
  echo "nproc=$(nproc)"
  echo "cpu_model=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')"
  echo "kernel=$(uname -r)"
  echo "rustc=$(rustc --version)"
  echo "node=$(node --version)"
  echo "wrk=$(wrk -v 2>&1 | head -n1 | awk '{print $1, $2}')"
  echo "openssl=$(openssl version)"
  echo "oidc_provider=$(node -p "require('$BENCH/node_modules/oidc-provider/package.json').version")"
  echo "oauth2_mock_server=$(node -p "require('$BENCH/node_modules/oauth2-mock-server/package.json').version")"
  echo "mock_idp=$("$MOCK" --version)"
  echo "git=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' + uncommitted changes')"
  echo "duration=$DUR warmup=$WARMUP threads=$THREADS conns=$CONNS"
  echo "command=bash bench/run.sh $DUR"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

# ---------------------------------------------------------------- 4a. signing capacity
wait_quiet
log "openssl speed -seconds 5 rsa2048 (one core)"
m0=$(machine_ticks)
t0=$(date +%s%N)
openssl speed -seconds 5 rsa2048 >"$OUT/openssl-speed.txt" 2>/dev/null
m1=$(machine_ticks)
t1=$(date +%s%N)
# besides openssl's one core, what did the rest of the machine do meanwhile?
echo "openssl_others_cores=$(awk -v a="$m0" -v b="$m1" -v t0="$t0" -v t1="$t1" -v tck="$CLK_TCK" 'BEGIN {
  split(a, x, " "); split(b, y, " "); o = (y[1] - x[1]) / tck / ((t1 - t0) / 1e9) - 1; if (o < 0) o = 0; printf "%.2f", o }')" >>"$OUT/env.txt"
SIGN_RATE=$(awk '/sign\/s/ { for (i = 1; i <= NF; i++) if ($i == "sign/s") col = i }
                 /^rsa 2048 bits/ && col { print $(col + 3); exit }' "$OUT/openssl-speed.txt")
# The data row starts with the 3 words "rsa 2048 bits", so header word k is data field k+3.
[[ -n $SIGN_RATE ]] || { echo "run.sh: cannot read sign/s from openssl speed" >&2; exit 1; }
echo "rs256_signs_per_core=$SIGN_RATE" >>"$OUT/env.txt"
log "one core signs $SIGN_RATE RS256/s"
# For context: both cores at once (the cores may share execution units).
NCPU=$(nproc)
wait_quiet
openssl speed -multi "$NCPU" -seconds 5 rsa2048 >"$OUT/openssl-speed-multi.txt" 2>/dev/null
SIGN_RATE_ALL=$(awk '/sign\/s/ { for (i = 1; i <= NF; i++) if ($i == "sign/s") col = i }
                     /^rsa 2048 bits/ && col { print $(col + 3); exit }' "$OUT/openssl-speed-multi.txt")
echo "rs256_signs_all_cores=$SIGN_RATE_ALL" >>"$OUT/env.txt"
log "all $NCPU cores sign $SIGN_RATE_ALL RS256/s together"

# ---------------------------------------------------------------- servers
MOCK_PORT=$(free_port)
start_server mock-idp "$MOCK" --bind "127.0.0.1:$MOCK_PORT" --auto-login alice --no-refresh-rotation --keys-file "$OUT/mock-idp-keys.json"
MOCK_URL=$SERVER_URL MOCK_PID=$SERVER_PID

OP_PORT=$(free_port)
start_server oidc-provider node "$BENCH/oidc-provider.mjs" "$OP_PORT"
OP_URL=$SERVER_URL OP_PID=$SERVER_PID

OMS_PORT=$(free_port)
start_server oauth2-mock-server node "$BENCH/oauth2-mock-server.mjs" "$OMS_PORT"
OMS_URL=$SERVER_URL OMS_PID=$SERVER_PID

TOKENS=$BENCH/tokens.py
basic() { printf 'Basic %s' "$(printf '%s:%s' "$1" "$2" | base64 -w0)"; }

# ---------------------------------------------------------------- tokens
log "getting tokens"
MOCK_AT=$(python3 "$TOKENS" mock-idp-code "$MOCK_URL" --scope "openid profile" --field access_token)
MOCK_RT=$(python3 "$TOKENS" mock-idp-code "$MOCK_URL" --scope "openid offline_access" --prompt consent --field refresh_token)
MOCK_SECRET=$(python3 - "$MOCK_URL" <<'PY'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/_control/clients/chat-server/secret", timeout=10) as r:
    print(json.load(r)["client_secret"])
PY
)
OP_AT=$(python3 "$TOKENS" oidc-provider-code "$OP_URL" --scope "openid profile" --field access_token)
OP_RT=$(python3 "$TOKENS" oidc-provider-code "$OP_URL" --scope "openid offline_access api:read" \
  --prompt consent --resource urn:bench:api --field refresh_token)

# ---------------------------------------------------------------- wrk
# measure MEASUREMENT PROVIDER PID URL SIGS EXPECT JWTS   (env: BENCH_METHOD, BENCH_AUTH, BENCH_BODY)
measure() {
  local what=$1 who=$2 pid=$3 url=$4 sigs=$5 expect=$6 jwts=$7
  local tag="$what.$who"
  local -a check=(python3 "$TOKENS" check "${BENCH_METHOD:-GET}" "$url" --expect "$expect")
  [[ -n ${BENCH_AUTH:-} ]] && check+=(--header "Authorization: $BENCH_AUTH")
  [[ -n ${BENCH_BODY:-} ]] && check+=(--data "$BENCH_BODY")
  [[ -n $jwts ]] && check+=(--jwt "$jwts")
  log "$what / $who: check"
  "${check[@]}" | tee "$OUT/$tag.check" >&2
  export BENCH_METHOD BENCH_AUTH BENCH_BODY
  wait_quiet
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$BENCH/wrk/request.lua" "$url" >"$OUT/$tag.warmup" 2>&1
  "${check[@]}" >/dev/null   # still 200 after the warm-up
  log "$what / $who: wrk -t$THREADS -c$CONNS -d$DUR (waited ${WAITED} s for a quiet machine)"
  local c0 c1 t0 t1 m0 m1 wrk_cpu
  m0=$(machine_ticks)
  c0=$(cpu_ticks "$pid")
  t0=$(date +%s%N)
  local TIMEFORMAT='%3U %3S'
  { time wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency -s "$BENCH/wrk/request.lua" "$url" >"$OUT/$tag.wrk" 2>&1; } 2>"$OUT/$tag.wrk-cpu"
  t1=$(date +%s%N)
  c1=$(cpu_ticks "$pid")
  m1=$(machine_ticks)
  "${check[@]}" >/dev/null   # and after
  wrk_cpu=$(awk '{ print $1 + $2 }' "$OUT/$tag.wrk-cpu")
  awk -v what="$what" -v who="$who" -v sigs="$sigs" -v c0="$c0" -v c1="$c1" -v tck="$CLK_TCK" \
      -v t0="$t0" -v t1="$t1" -v wcpu="$wrk_cpu" -v m0="$m0" -v m1="$m1" -v waited="$WAITED" '
    /^Requests\/sec:/ { rps = $2 }
    /^ +50%/ { p50 = $2 }
    /^ +99%/ { p99 = $2 }
    /^non-200 responses:/ { non200 = $3 }
    /^socket errors:/ { gsub(",", ""); errs = $4 + $6 + $8 + $10 }
    END {
      wall = (t1 - t0) / 1e9; cpu = (c1 - c0) / tck
      split(m0, a, " "); split(m1, b, " ")
      busy = (b[1] - a[1]) / tck; steal = (b[2] - a[2]) / tck
      other = busy - cpu - wcpu; if (other < 0) other = 0
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%d\n", what, who, rps, p50, p99, non200, errs, sigs, cpu, wall, cpu / wall, wcpu / wall, other / wall, steal / wall, waited
    }' "$OUT/$tag.wrk" >>"$RESULTS"
  tail -n 1 "$RESULTS" >&2
}

run_get() { # what who pid url expect [auth]
  BENCH_METHOD=GET BENCH_AUTH=${6:-} BENCH_BODY='' measure "$1" "$2" "$3" "$4" 0 "$5" ''
}
run_post() { # what who pid url sigs expect jwts auth body
  BENCH_METHOD=POST BENCH_AUTH=$8 BENCH_BODY=$9 measure "$1" "$2" "$3" "$4" "$5" "$6" "$7"
}

D=/.well-known/openid-configuration
run_get discovery mock-idp "$MOCK_PID" "$MOCK_URL$D" issuer,jwks_uri
run_get discovery oidc-provider "$OP_PID" "$OP_URL$D" issuer,jwks_uri
run_get discovery oauth2-mock-server "$OMS_PID" "$OMS_URL$D" issuer,jwks_uri

run_get userinfo mock-idp "$MOCK_PID" "$MOCK_URL/userinfo" sub "Bearer $MOCK_AT"
run_get userinfo oidc-provider "$OP_PID" "$OP_URL/userinfo" sub "Bearer $OP_AT"
run_get userinfo oauth2-mock-server "$OMS_PID" "$OMS_URL/userinfo" sub "Bearer any-token"

run_post client_credentials mock-idp "$MOCK_PID" "$MOCK_URL/token" 1 access_token access_token \
  "$(basic chat-server "$MOCK_SECRET")" "grant_type=client_credentials"
run_post client_credentials oidc-provider "$OP_PID" "$OP_URL/token" 1 access_token access_token \
  "$(basic bench-cc bench-cc-secret)" "grant_type=client_credentials&scope=api%3Aread&resource=urn%3Abench%3Aapi"
run_post client_credentials oauth2-mock-server "$OMS_PID" "$OMS_URL/token" 1 access_token access_token \
  "$(basic bench-cc bench-cc-secret)" "grant_type=client_credentials"

run_post refresh mock-idp "$MOCK_PID" "$MOCK_URL/token" 2 access_token,id_token access_token,id_token \
  '' "grant_type=refresh_token&refresh_token=$MOCK_RT&client_id=chat-example"
run_post refresh oidc-provider "$OP_PID" "$OP_URL/token" 2 access_token,id_token access_token,id_token \
  '' "grant_type=refresh_token&refresh_token=$OP_RT&client_id=bench-app"
run_post refresh oauth2-mock-server "$OMS_PID" "$OMS_URL/token" 2 access_token,id_token access_token,id_token \
  '' "grant_type=refresh_token&refresh_token=any-refresh-token&client_id=bench-app"

cleanup
PIDS=()

# ---------------------------------------------------------------- 5. start-up
log "start-up, $STARTUP_RUNS runs each"
wait_quiet
# With the key file the server above wrote (the default: later runs load their keys).
python3 "$BENCH/startup.py" --runs "$STARTUP_RUNS" --label mock-idp -- "$MOCK" --bind 127.0.0.1:0 --keys-file "$OUT/mock-idp-keys.json" >"$OUT/startup.mock-idp.json"
wait_quiet
python3 "$BENCH/startup.py" --runs "$STARTUP_RUNS" --label oidc-provider -- node "$BENCH/oidc-provider.mjs" '{port}' >"$OUT/startup.oidc-provider.json"
wait_quiet
python3 "$BENCH/startup.py" --runs "$STARTUP_RUNS" --label oauth2-mock-server -- node "$BENCH/oauth2-mock-server.mjs" '{port}' >"$OUT/startup.oauth2-mock-server.json"
echo "uptime_after=$(uptime)" >>"$OUT/env.txt"

# ---------------------------------------------------------------- summary
python3 "$BENCH/summarize.py" "$OUT" | tee "$OUT/summary.md"
log "raw outputs in ${OUT#"$ROOT"/}"
