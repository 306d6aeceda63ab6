#!/usr/bin/env bash
# Makes the upgrade test's fixture: an installation written by an earlier
# Cuttle, on SQLite (its data directory) and on PostgreSQL (a dump of its
# database and its data directory), with resources of every kind the test
# reads back and a deployment that has run. The upgrade test
# (crates/cuttle/tests/it/upgrade.rs) starts the current binary on a copy.
#
# Usage: tests/upgrade/make-fixture.sh COMMIT [POSTGRES_URL]
#   COMMIT        the earlier Cuttle to build (from this repository)
#   POSTGRES_URL  a server where a scratch database may be made
#                 [default: postgres://postgres@127.0.0.1:5432/test]
# Writes tests/upgrade/fixture/ (replacing it). Needs cargo, curl, psql,
# pg_dump and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
commit="$(git rev-parse "${1:?usage: make-fixture.sh COMMIT [POSTGRES_URL]}")"
pg="${2:-postgres://postgres@127.0.0.1:5432/test}"
out="$PWD/tests/upgrade/fixture"
key="API-CUTTLETESTSERVERKEY00000000000000001"
work="$(mktemp -d)"
# As root, steps run as uids of their own, which must reach the data directory.
chmod 0711 "$work"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  psql "$pg" -qc 'DROP DATABASE IF EXISTS cuttle_upgrade_fixture' >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "building cuttle at $commit"
# A fixed place per commit, so running the script again rebuilds nothing.
src="${TMPDIR:-/var/tmp}/cuttle-fixture-${commit:0:12}"
if [ ! -d "$src" ]; then
  mkdir -p "$src.part" && git archive "$commit" | tar -x -C "$src.part" && mv "$src.part" "$src"
fi
(cd "$src" && cargo build -q -p cuttle --bin cuttle)
# Kept apart: a later build in the same target directory replaces it.
cp "${CARGO_TARGET_DIR:-$src/target}/debug/cuttle" "$work/cuttle"
bin="$work/cuttle"
version="$("$bin" --version | awk '{print $2}')"

# Starts the earlier server on DATA_DIR [DATABASE_URL]; sets $url.
start() {
  local data="$1" db="${2:-}" log="$work/server.log" port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  env -u CUTTLE_DATABASE_URL -u CUTTLE_MASTER_KEY CUTTLE_ADMIN_API_KEY="$key" \
    CUTTLE_BUILTIN_WORKER_UNISOLATED=true CUTTLE_NODE_NAME=fixture-node \
    "$bin" server --listen "127.0.0.1:$port" --polling-listen off --data-dir "$data" \
    ${db:+--database-url "$db"} >"$log" 2>&1 &
  server_pid=$!
  url="http://127.0.0.1:$port"
  for _ in $(seq 1 300); do
    curl -fsS "$url/api" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  cat "$log" >&2
  exit 1
}

stop() {
  kill -TERM "$server_pid"
  wait "$server_pid" || true
  server_pid=""
}

call() { # METHOD PATH [JSON]
  curl -fsS -X "$1" -H "X-Octopus-ApiKey: $key" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$url$2"
}
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# The resources the upgrade test expects, made through the API.
populate() {
  call POST /api/environments '{"Name":"Production"}' >/dev/null
  local project pid set task
  project="$(call POST /api/projects '{"Name":"Upgrade Web","ProjectGroupId":"ProjectGroups-1","LifecycleId":"Lifecycles-1"}')"
  pid="$(field "['Id']" <<<"$project")"
  set="$(field "['VariableSetId']" <<<"$project")"
  call PUT "/api/projects/$pid/deploymentprocesses" '{"Version":0,"Steps":[{"Name":"Check","Actions":[{"ActionType":"Octopus.Script","Properties":{"Octopus.Action.Script.Syntax":"Bash","Octopus.Action.Script.ScriptBody":"[ \"#{Upgrade.Secret}\" = \"fixture-secret-1\" ] || { echo wrong secret; exit 1; }\necho \"deployed #{Upgrade.Greeting} #{Octopus.Release.Number}\""}}]}]}' >/dev/null
  call PUT "/api/variables/$set" '{"Version":0,"Variables":[{"Name":"Upgrade.Greeting","Value":"hello"},{"Name":"Upgrade.Secret","Value":"fixture-secret-1","IsSensitive":true}]}' >/dev/null
  call POST /api/Spaces-1/releases/create/v1 '{"ProjectName":"Upgrade Web","ReleaseVersion":"1.0.0"}' >/dev/null
  task="$(call POST /api/Spaces-1/deployments/create/untenanted/v1 '{"ProjectName":"Upgrade Web","ReleaseVersion":"1.0.0","EnvironmentNames":["Production"]}' | field "['DeploymentServerTasks'][0]['ServerTaskId']")"
  for _ in $(seq 1 600); do
    state="$(call GET "/api/tasks/$task" | field "['State']")"
    case "$state" in
      Success) return 0 ;;
      Failed|Canceled|TimedOut)
        echo "fixture deployment: $state" >&2
        call GET "/api/tasks/$task/raw" >&2
        exit 1 ;;
    esac
    sleep 0.1
  done
  echo "the fixture's deployment did not finish" >&2
  exit 1
}

rm -rf "$out"
mkdir -p "$out"

echo "SQLite installation"
start "$work/sqlite"
populate
stop
mkdir -p "$out/sqlite"
# The installation, without the steps' scratch directories.
(cd "$work/sqlite" && tar --exclude=./work -cf - .) | tar -x -C "$out/sqlite"

echo "PostgreSQL installation"
psql "$pg" -qc 'DROP DATABASE IF EXISTS cuttle_upgrade_fixture' >/dev/null
psql "$pg" -qc 'CREATE DATABASE cuttle_upgrade_fixture' >/dev/null
db="$(python3 -c 'import sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/cuttle_upgrade_fixture")))' "$pg")"
start "$work/postgres" "$db"
populate
stop
mkdir -p "$out/postgres"
(cd "$work/postgres" && tar --exclude=./work -cf - .) | tar -x -C "$out/postgres"
pg_dump --no-owner --no-privileges "$db" >"$out/postgres.sql"

schema="$(python3 - "$out/sqlite/cuttle.db" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT MAX(version) FROM _sqlx_migrations").fetchone()[0])
PY
)"
cat >"$out/fixture.json" <<JSON
{
  "Commit": "$commit",
  "CuttleVersion": "$version",
  "SchemaVersion": $schema,
  "ApiKey": "$key"
}
JSON
echo "fixture written to $out (Cuttle $version at ${commit:0:10}, schema $schema)"
