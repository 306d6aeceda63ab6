#!/usr/bin/env bash
# Builds the server and agent images around a cuttle binary built on this
# host and runs them as users would:
#
# - the server container starts (read-only root file system, uid 10001) on
#   127.0.0.1 and answers /api;
# - an agent container registers itself as a polling agent, and a
#   deployment's step runs on it;
# - SIGTERM during a deployment: the step finishes, the server stops
#   cleanly within its shutdown timeout, nothing is left half-written;
# - the server starts again on the same /data with everything still there,
#   and the agent reconnects;
# - faults: a read-only /data, a /data the image's user cannot write, and
#   an existing database whose master key is missing are each refused with a
#   clear message and a non-zero exit.
#
# Prints figures: image sizes, container start to a ready /api, idle memory.
#
# Usage: tests/container/smoke.sh [CUTTLE_BINARY]  (default target/debug/cuttle)
# Needs root, podman, buildah, runc, catatonit, debootstrap (see base-image.sh),
# curl and python3. PODMAN_STORE overrides the podman store options.
set -euo pipefail
# Output is searched as a whole (grep <<<"$(…)"), never through a pipe into
# `grep -q`: grep stops at the first match, and under pipefail the writer's
# SIGPIPE would fail the check whenever it was still writing.
cd "$(dirname "$0")/../.."
binary="$(realpath "${1:-target/debug/cuttle}")"
export PODMAN_STORE="${PODMAN_STORE:---root /var/tmp/cuttle-ci/storage --runroot /var/tmp/cuttle-ci/run --storage-driver overlay}"
read -r -a store <<<"$PODMAN_STORE"
key="API-CUTTLECONTAINERSMOKE0000000000000001"
tag="smoke"
work="$(mktemp -d /var/tmp/cuttle-smoke.XXXXXX)"
containers=()
cleanup() {
  for c in "${containers[@]}"; do podman "${store[@]}" rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { echo "== $*"; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
run() { # NAME ARGS… : a detached container on the host's network
  local name="$1"; shift
  containers+=("$name")
  podman "${store[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  podman "${store[@]}" run -d --name "$name" --runtime runc --network host --init \
    --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --read-only "$@" >/dev/null
}
run_to_end() { # ARGS…: a container run to its end; its output, and its status in $status
  status=0
  output="$(podman "${store[@]}" run --rm --runtime runc --network host --init \
    --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --read-only "$@" 2>&1)" || status=$?
}
logs() { podman "${store[@]}" logs "$1" 2>&1; }

step "base image"
tests/container/base-image.sh

step "images"
context="$work/context"
mkdir -p "$context/deploy/container"
cp "$binary" "$context/cuttle"
cp deploy/container/agent-entrypoint.sh "$context/deploy/container/"
# A layer cached from an earlier build keeps that build's revision label
# (buildah reuses it whatever REVISION is), so each image is labelled again.
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
relabel() { # IMAGE
  local c
  c="$(buildah "${store[@]}" from --pull=never "$1")"
  buildah "${store[@]}" config --label "org.opencontainers.image.revision=$revision" "$c"
  buildah "${store[@]}" commit --quiet --rm "$c" "$1" >/dev/null
}
for target in server agent; do
  start=$(now_ms)
  buildah "${store[@]}" bud --quiet --layers --isolation chroot --network host --pull=never \
    --target "$target-prebuilt" --build-arg CUTTLE_BINARY=cuttle \
    --build-arg REVISION="$revision" \
    -t "localhost/cuttle-$target:$tag" -f deploy/container/Containerfile "$context" >/dev/null
  relabel "localhost/cuttle-$target:$tag"
  echo "built localhost/cuttle-$target:$tag in $(( $(now_ms) - start )) ms"
  labelled="$(podman "${store[@]}" image inspect \
    --format '{{index .Labels "org.opencontainers.image.revision"}}' "localhost/cuttle-$target:$tag")"
  [ "$labelled" = "$revision" ] || fail "the $target image is labelled revision $labelled, not $revision"
done

port=$(free_port)
polling=$(free_port)
url="http://127.0.0.1:$port"
server_env=(-e "CUTTLE_LISTEN=127.0.0.1:$port" -e "CUTTLE_POLLING_LISTEN=127.0.0.1:$polling"
  -e "CUTTLE_ADMIN_API_KEY=$key" -e "CUTTLE_SHUTDOWN_TIMEOUT=20")
data="$work/data"
mkdir -p "$data" && chown 10001:10001 "$data"

call() { # METHOD PATH [JSON]
  curl -fsS -X "$1" -H "X-Octopus-ApiKey: $key" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "$url$2"
}
field() { python3 -c "import json,sys; v=json.load(sys.stdin)$1; print(v)"; }
wait_ready() { # the time it took, in ms, in $ready_ms
  local start=$1
  for _ in $(seq 1 600); do
    if curl -fsS "$url/api" >/dev/null 2>&1; then
      ready_ms=$(( $(now_ms) - start ))
      return 0
    fi
    sleep 0.02
  done
  logs cuttle-smoke-server >&2
  fail "the server did not answer /api"
}
wait_task() { # TASK → its final state
  for _ in $(seq 1 900); do
    local t; t="$(call GET "/api/tasks/$1")"
    if [ "$(field "['IsCompleted']" <<<"$t")" = True ]; then
      field "['State']" <<<"$t"
      return 0
    fi
    sleep 0.1
  done
  fail "task $1 did not finish"
}

step "server starts on 127.0.0.1 and answers /api"
start=$(now_ms)
run cuttle-smoke-server -v "$data:/data" "${server_env[@]}" "localhost/cuttle-server:$tag"
wait_ready "$start"
echo "container start to ready /api: $ready_ms ms"
grep -q '"Application"' <<<"$(call GET /api)" || fail "/api does not describe the server"

step "an agent container registers as a polling agent"
agent_data="$work/agent"
mkdir -p "$agent_data" && chown 10001:10001 "$agent_data"
call POST /api/environments '{"Name":"Production"}' >/dev/null
run cuttle-smoke-agent -v "$agent_data:/data" -e "CUTTLE_SERVER=$url" -e "CUTTLE_API_KEY=$key" \
  -e CUTTLE_AGENT_NAME=smoke-agent -e CUTTLE_AGENT_ENVIRONMENTS=Production \
  -e CUTTLE_AGENT_ROLES=smoke "localhost/cuttle-agent:$tag"
machine=""
for _ in $(seq 1 300); do
  machine="$(call GET '/api/machines?name=smoke-agent' |
    python3 -c 'import json,sys; i=json.load(sys.stdin)["Items"]; print(i[0]["Id"] if i else "")' || true)"
  [ -n "$machine" ] && break
  sleep 0.1
done
[ -n "$machine" ] || { logs cuttle-smoke-agent >&2; fail "the agent did not register"; }

step "a deployment's step runs on the agent"
project="$(call POST /api/projects '{"Name":"Smoke","ProjectGroupId":"ProjectGroups-1","LifecycleId":"Lifecycles-1"}')"
pid="$(field "['Id']" <<<"$project")"
script='echo \"on the agent as uid $(id -u)\"; if [ -n \"#{Smoke.Sleep}\" ]; then sleep #{Smoke.Sleep}; fi; echo \"step finished\"'
call PUT "/api/projects/$pid/deploymentprocesses" "{\"Version\":0,\"Steps\":[{\"Name\":\"Run\",\"Properties\":{\"Octopus.Action.TargetRoles\":\"smoke\"},\"Actions\":[{\"Name\":\"Run\",\"ActionType\":\"Octopus.Script\",\"Properties\":{\"Octopus.Action.Script.Syntax\":\"Bash\",\"Octopus.Action.Script.ScriptBody\":\"$script\"}}]}]}" >/dev/null
set_id="$(field "['VariableSetId']" <<<"$project")"
call PUT "/api/variables/$set_id" '{"Version":0,"Variables":[{"Name":"Smoke.Sleep","Value":"","Scope":{}}]}' >/dev/null
deploy() { # VERSION → the task id
  call POST /api/Spaces-1/releases/create/v1 "{\"ProjectName\":\"Smoke\",\"ReleaseVersion\":\"$1\"}" >/dev/null
  call POST /api/Spaces-1/deployments/create/untenanted/v1 \
    "{\"ProjectName\":\"Smoke\",\"ReleaseVersion\":\"$1\",\"EnvironmentNames\":[\"Production\"]}" |
    field "['DeploymentServerTasks'][0]['ServerTaskId']"
}
task="$(deploy 1.0.0)"
state="$(wait_task "$task")"
[ "$state" = Success ] || { call GET "/api/tasks/$task/raw" >&2 || true; fail "the deployment ended $state"; }
grep -q "on the agent as uid 10001" <<<"$(call GET "/api/tasks/$task/raw")" || fail "the step did not run on the agent container"

step "idle memory"
sleep 1
server_pid="$(podman "${store[@]}" inspect --format '{{.State.Pid}}' cuttle-smoke-server)"
cuttle_pid="$(pgrep -P "$server_pid" -x cuttle || echo "$server_pid")"
echo "idle server memory (RSS): $(awk '/VmRSS/ {print $2, $3}' "/proc/$cuttle_pid/status")"

step "SIGTERM during a deployment: the step finishes, the server stops cleanly"
call PUT "/api/variables/$set_id" "$(call GET "/api/variables/$set_id" |
  python3 -c 'import json,sys; v=json.load(sys.stdin); v["Variables"][0]["Value"]="3"; print(json.dumps(v))')" >/dev/null
busy="$(deploy 1.0.1)"
for _ in $(seq 1 100); do
  grep -q "on the agent" <<<"$(call GET "/api/tasks/$busy/raw" 2>/dev/null)" && break
  sleep 0.1
done
start=$(now_ms)
podman "${store[@]}" stop -t 40 cuttle-smoke-server >/dev/null
stopped_ms=$(( $(now_ms) - start ))
code="$(podman "${store[@]}" inspect --format '{{.State.ExitCode}}' cuttle-smoke-server)"
[ "$code" = 0 ] || { logs cuttle-smoke-server >&2; fail "the server exited $code on SIGTERM"; }
grep -q "letting running tasks finish" <<<"$(logs cuttle-smoke-server)" || fail "no orderly shutdown in the log"
echo "stopped on SIGTERM in $stopped_ms ms (shutdown timeout 20 s), exit code 0"

step "started again on the same /data: everything still there"
start=$(now_ms)
run cuttle-smoke-server -v "$data:/data" "${server_env[@]}" "localhost/cuttle-server:$tag"
wait_ready "$start"
echo "restart to ready /api: $ready_ms ms"
state="$(wait_task "$busy")"
[ "$state" = Success ] || fail "the deployment cut by SIGTERM ended $state"
grep -q "step finished" <<<"$(call GET "/api/tasks/$busy/raw")" || fail "the step cut by SIGTERM did not finish"
[ "$(call GET '/api/projects?name=Smoke' | field "['TotalResults']")" = 1 ] || fail "the project is gone"
[ "$(call GET "/api/machines/$machine" | field "['Name']")" = smoke-agent ] || fail "the agent is gone"
again="$(deploy 1.0.2)"
state="$(wait_task "$again")"
[ "$state" = Success ] || fail "a deployment after the restart ended $state"
podman "${store[@]}" stop -t 40 cuttle-smoke-server >/dev/null
podman "${store[@]}" stop -t 10 cuttle-smoke-agent >/dev/null
code="$(podman "${store[@]}" inspect --format '{{.State.ExitCode}}' cuttle-smoke-agent)"
[ "$code" = 0 ] || fail "the agent exited $code on SIGTERM"

step "fault: a read-only /data"
run_to_end -v "$data:/data:ro" "${server_env[@]}" "localhost/cuttle-server:$tag"
[ "$status" != 0 ] || fail "the server started on a read-only /data"
grep -q "read-only file system" <<<"$output" || fail "no clear message for a read-only /data: $output"
echo "refused (exit $status): $(grep -o 'the data directory.*' <<<"$output" | head -1)"

step "fault: /data not writable by the image's user"
root_owned="$work/root-owned"
mkdir -p "$root_owned" && chmod 0755 "$root_owned"
run_to_end -v "$root_owned:/data" "${server_env[@]}" "localhost/cuttle-server:$tag"
[ "$status" != 0 ] || fail "the server started on a /data it cannot write"
grep -q "not writable by this process (uid 10001" <<<"$output" || fail "no clear message: $output"
echo "refused (exit $status): $(grep -o 'the data directory.*' <<<"$output" | head -1)"

step "fault: an existing database whose master key is missing"
rm "$data/master.key"
run_to_end -v "$data:/data" "${server_env[@]}" "localhost/cuttle-server:$tag"
[ "$status" != 0 ] || fail "the server started without its master key"
grep -q "master_key_check" <<<"$output" || fail "the key check is not named: $output"
[ ! -e "$data/master.key" ] || fail "a new master key was made"
echo "refused (exit $status)"

step "image sizes"
for target in server agent; do
  image="localhost/cuttle-$target:$tag"
  disk="$(podman "${store[@]}" image inspect --format '{{.Size}}' "$image")"
  compressed="$(podman "${store[@]}" save --format oci-archive "$image" 2>/dev/null | gzip -c | wc -c)"
  echo "$image: $(( disk / 1000000 )) MB on disk, $(( compressed / 1000000 )) MB compressed"
done
echo "smoke test passed"
