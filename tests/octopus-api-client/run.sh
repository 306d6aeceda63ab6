#!/usr/bin/env bash
# Runs the integration tests of a checkout of the official Octopus TypeScript
# client (github.com/OctopusDeploy/api-client.ts) against a fresh Cuttle
# server, one test file at a time, and prints which passed. For runs by hand:
#
#   tests/octopus-api-client/run.sh /path/to/api-client.ts [test-file-pattern...]
#
# CUTTLE_BIN names the server binary (default: built here with cargo), PORT
# its port (default 18080), RESULTS where the logs go (default: a temp dir).
set -euo pipefail

client=$(cd "${1:?usage: $0 API_CLIENT_CHECKOUT [PATTERN...]}" && pwd)
shift
repo=$(cd "$(dirname "$0")/../.." && pwd)
port=${PORT:-18080}
url=http://127.0.0.1:$port
results=${RESULTS:-$(mktemp -d)}
data=$(mktemp -d)
mkdir -p "$results"

if [ -z "${CUTTLE_BIN:-}" ]; then
    cargo build --release -p cuttle --manifest-path "$repo/Cargo.toml"
    CUTTLE_BIN=$(cargo metadata --format-version 1 --no-deps --manifest-path "$repo/Cargo.toml" |
        node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0)).target_directory)')/release/cuttle
fi
[ -d "$client/node_modules" ] || (cd "$client" && npm ci --no-audit --no-fund)

# A key only for setting up: the tests get one made through the API.
bootstrap=API-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
CUTTLE_ADMIN_API_KEY=$bootstrap "$CUTTLE_BIN" server --listen "127.0.0.1:$port" \
    --polling-listen off --data-dir "$data" >"$results/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -rf "$data"' EXIT

for _ in $(seq 100); do curl -sf "$url/api" >/dev/null && break; sleep 0.2; done
api() { curl -sf -H "X-Octopus-ApiKey: $bootstrap" -H 'Content-Type: application/json' "$@"; }
field() { node -e 'process.stdout.write(JSON.parse(require("fs").readFileSync(0))[process.argv[1]])' "$1"; }
user=$(api "$url/api/users/me" | field Id)
key=$(api -X POST -d '{"Purpose":"api-client tests"}' "$url/api/users/$user/apikeys" | field ApiKey)

cd "$client"
pattern=$(IFS='|'; echo "${*:-.}")
mapfile -t files < <(find src -name '*.test.ts' | sort | grep -E "$pattern" || true)
[ "${#files[@]}" -gt 0 ] || { echo "no test files match" >&2; exit 2; }
passed=0 failed=0
for f in "${files[@]}"; do
    name=$(basename "$f" .test.ts)
    rm -f "$results/$name.json"
    if OCTOPUS_TEST_URL=$url OCTOPUS_TEST_API_KEY=$key NO_PROXY='*' no_proxy='*' \
        npx jest --config=jest.config.js --ci --runInBand --json --outputFile="$results/$name.json" "$f" \
        >"$results/$name.log" 2>&1; then
        echo "PASS $f"
        passed=$((passed + 1))
    else
        echo "FAIL $f"
        failed=$((failed + 1))
    fi
    node -e 'for (const s of JSON.parse(require("fs").readFileSync(process.argv[1])).testResults)
        for (const t of s.assertionResults) console.log(`  ${t.status.padEnd(7)} ${t.fullName}`)' \
        "$results/$name.json" 2>/dev/null ||
        grep -E '^\s+(✓|✕)' "$results/$name.log" || true # jest could not write its JSON
done
echo "$passed test files passed, $failed failed; logs in $results"
[ "$failed" -eq 0 ]
