#!/usr/bin/env bash
# Loads the "Customer instances" project (process.json, variables.json) into
# a Cuttle server through its API, and creates its first release. Run it
# once per server; deploy the release to the "Hosting" environment to
# provision the customer instance on the host.
#
#   CUTTLE_SERVER=http://127.0.0.1:8080 CUTTLE_API_KEY=API-… \
#   CUTTLE_HOST_CONTROL_TOKEN=… CUSTOMER=acme ./load.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${CUTTLE_SERVER:?the Cuttle server to load the project into, e.g. http://127.0.0.1:8080}"
: "${CUTTLE_API_KEY:?an API key of that server}"
: "${CUTTLE_HOST_CONTROL_TOKEN:?the control-plane token of the host}"
control=${HOSTING_CONTROL_URL:-http://127.0.0.1:8090}
public=${HOSTING_PUBLIC_URL:-http://127.0.0.1:8080}
domain=${HOSTING_DOMAIN:-cuttle.localhost}
customer=${CUSTOMER:-acme}
project="Customer instances"

api() {
  local method=$1 path=$2
  shift 2
  curl -sS --fail-with-body -X "$method" "${CUTTLE_SERVER%/}$path" \
    -H "X-Octopus-ApiKey: $CUTTLE_API_KEY" -H 'Content-Type: application/json' "$@"
}
field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }

api POST /api/environments -d '{"Name": "Hosting"}' >/dev/null
api POST /api/projects \
  -d "{\"Name\": \"$project\", \"ProjectGroupId\": \"ProjectGroups-1\", \"LifecycleId\": \"Lifecycles-1\"}" >/dev/null
created=$(api GET "/api/projects/Customer%20instances")
id=$(printf '%s' "$created" | sed -n 's/.*"Id":"\(Projects-[0-9]*\)".*/\1/p')
set_id=$(printf '%s' "$created" | field VariableSetId)
api PUT "/api/projects/$id/deploymentprocesses" --data-binary @"$here/process.json" >/dev/null
# The values go in as JSON strings: '|' never occurs in a URL, a DNS name
# or a token, and '\' and '"' are escaped.
escape() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g'; }
sed -e "s|__CONTROL_URL__|$(escape "$control")|" \
    -e "s|__CONTROL_TOKEN__|$(escape "$CUTTLE_HOST_CONTROL_TOKEN")|" \
    -e "s|__PUBLIC_URL__|$(escape "$public")|" \
    -e "s|__DOMAIN__|$(escape "$domain")|" \
    -e "s|__CUSTOMER__|$(escape "$customer")|" \
    "$here/variables.json" | api PUT "/api/Spaces-1/variables/$set_id" --data-binary @- >/dev/null
api POST /api/Spaces-1/releases/create/v1 \
  -d "{\"ProjectName\": \"$project\", \"ReleaseVersion\": \"1.0.0\"}" >/dev/null
echo "Loaded '$project' ($id) with release 1.0.0, for the customer '$customer'. Deploy it with:"
echo "  curl -X POST ${CUTTLE_SERVER%/}/api/Spaces-1/deployments/create/untenanted/v1 -H 'X-Octopus-ApiKey: …' \\"
echo "    -d '{\"ProjectName\": \"$project\", \"ReleaseVersion\": \"1.0.0\", \"EnvironmentNames\": [\"Hosting\"]}'"
