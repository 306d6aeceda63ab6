#!/bin/bash
# The agent image's entry point: on first start (no agent.json in the data
# directory) makes the agent's identity and registers it with the server,
# as a polling deployment target or worker; then runs it. Registration
# reads, from the environment (a Kubernetes Secret, say):
#
#   CUTTLE_SERVER        the server's URL (http://cuttle:8080)
#   CUTTLE_API_KEY       an API key allowed to register machines
#   CUTTLE_SPACE         the space [default: Default]
#   CUTTLE_AGENT_NAME    the machine's name [default: the host name]
#   CUTTLE_AGENT_ENVIRONMENTS, CUTTLE_AGENT_ROLES
#                        comma-separated, for a deployment target
#   CUTTLE_AGENT_WORKER_POOL
#                        a worker pool: register as a worker in it instead
#   CUTTLE_AGENT_COMMS_ADDRESS
#                        where the server accepts polling agents, HOST:PORT
#                        [default: the CUTTLE_SERVER host, the port it reports]
set -euo pipefail
dir="${CUTTLE_AGENT_DATA_DIR:-/data}"
if [ ! -f "$dir/agent.json" ]; then
  if [ ! -d "$dir/certs" ]; then
    cuttle agent init --data-dir "$dir"
  fi
  args=(--data-dir "$dir" --name "${CUTTLE_AGENT_NAME:-$(hostname)}" --polling)
  if [ -n "${CUTTLE_AGENT_COMMS_ADDRESS:-}" ]; then
    args+=(--server-comms-address "$CUTTLE_AGENT_COMMS_ADDRESS")
  fi
  if [ -n "${CUTTLE_AGENT_WORKER_POOL:-}" ]; then
    args+=(--worker --pool "$CUTTLE_AGENT_WORKER_POOL")
  else
    IFS=, read -r -a environments <<<"${CUTTLE_AGENT_ENVIRONMENTS:-}"
    IFS=, read -r -a roles <<<"${CUTTLE_AGENT_ROLES:-}"
    for e in "${environments[@]}"; do args+=(--environment "$e"); done
    for r in "${roles[@]}"; do args+=(--role "$r"); done
  fi
  # Registered for good once agent.json is written; a failure leaves none,
  # so the next start tries again.
  cuttle agent register "${args[@]}"
fi
exec cuttle agent run --data-dir "$dir"
