#!/usr/bin/env bash
# Fuzzes the REST API with Schemathesis, driven by the server's own
# /api/openapi.json: every operation, with generated and mutated inputs and
# the stateful links between them, within a time budget. It fails on any 5xx,
# any answer the document does not describe (status, media type or body), a
# dropped connection, or a panic in the server's log.
#
#   tests/schemathesis/run.sh [CUTTLE_BINARY] [SECONDS]
#
# Needs `pip install schemathesis`. The server listens on 127.0.0.1 only, on
# SQLite in a temporary data directory that is removed afterwards.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
binary="${1:-$here/../../target/debug/cuttle}"
budget="${2:-150}"
work="$(mktemp -d)"
key="API-FUZZFUZZFUZZFUZZFUZZFUZZFUZZFUZZ01"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
server_pid=""

finish() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap finish EXIT

CUTTLE_ADMIN_API_KEY="$key" CUTTLE_BUILTIN_WORKER_UNISOLATED=true \
    "$binary" server --listen "127.0.0.1:$port" --polling-listen off \
    --data-dir "$work/data" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/api" >/dev/null 2>&1 && break
    sleep 0.1
done

(cd "$work" && st --config-file "$here/schemathesis.toml" run \
    "http://127.0.0.1:$port/api/openapi.json" \
    -H "X-Octopus-ApiKey: $key" \
    --max-examples 5 --request-timeout 10 --workers 2 --no-shrink \
    --max-time "$budget" --report json --report-dir "$work/report") || true

# The verdict comes from the report, not Schemathesis's exit code: it also
# exits non-zero on errors inside itself (Hypothesis describing a strategy
# can fail on this Python), which say nothing about the API. Network errors
# do: the server dropped a connection. No report, or a run that generated
# hardly anything, is a failure too.
status=0
python3 - "$work/report" <<'PY' || status=1
import json, os, sys
d = sys.argv[1]
report = json.load(open(os.path.join(d, next(f for f in os.listdir(d) if f.endswith(".json")))))
failures = report["failures"]
# Only an error inside the tool itself is forgiven; any other (a network
# error, a schema that does not load) fails the run.
forgiven = [e for e in report["errors"] if e.get("title") == "Runtime Error"]
errors = [e for e in report["errors"] if e not in forgiven]
for e in forgiven:
    print("schemathesis: an error inside the tool, not counted against the API:", json.dumps(e)[:300])
cases = report["test_cases"]
print(f"schemathesis: {len(failures)} failed, {len(errors)} errors; test cases {cases}")
sys.exit(1 if failures or errors or cases.get("generated", 0) < 1000 else 0)
PY

if grep -q "panicked" "$work/server.log"; then
    echo "schemathesis: the server panicked:" >&2
    grep -A3 "panicked" "$work/server.log" >&2
    status=1
fi
exit "$status"
