#!/usr/bin/env bash
# `make compose-test`: the stack of compose/docker-compose.yml really up on this machine, in
# podman, with the `monitoring` profile, and checked end to end (scripts/compose_check.py prints
# one line per check with its time; any failed check fails the run).
#
#   1. the engine and a local Debian 12 base image (scripts/compose-engine.sh; cached);
#   2. the project's images from compose/Dockerfile on that base, and the third-party ones from
#      Debian's packages (compose/Dockerfile.no-registry); layers and pip's cache are kept, so a
#      second run rebuilds nothing that did not change;
#   3. up, checks, `down -v` (scripts/compose_check.py).
#
# Builds use the host's network (no image registry, but PyPI and Debian's mirror are reached)
# and the host's certificate bundle (pip fails without it here).
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPOSE_BASE_IMAGE=${COMPOSE_BASE_IMAGE:-localhost/engagement-debian:12}
export COMPOSE_TOOLS_DIR=${COMPOSE_TOOLS_DIR:-/var/cache/engagement-compose/tools}
TAG=${ENGAGEMENT_TAG:-latest}
CA=/etc/ssl/certs/ca-certificates.crt

./scripts/compose-engine.sh
read -r NOFILE NPROC <"$COMPOSE_TOOLS_DIR.ulimits"  # what containers.conf says (compose-engine.sh)

build() {  # build LABEL podman-build-arguments...: one line with the time it took
  local label=$1 start=$SECONDS log
  shift
  log=$(mktemp /tmp/compose-build.XXXXXX)
  # --format docker: the OCI format drops SHELL (the Dockerfile's pipefail). The build's own
  # containers ask for more processes than the host allows unless told the host's hard limits.
  if ! podman build --format docker --network host --volume "$CA:$CA:ro" \
       --ulimit "nofile=$NOFILE:$NOFILE" --ulimit "nproc=$NPROC:$NPROC" \
       --build-arg BASE_IMAGE="$COMPOSE_BASE_IMAGE" "$@" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "compose-test: FAILED to build $label (log $log)" >&2
    exit 1
  fi
  rm -f "$log"
  echo "compose-test: image $label ($((SECONDS - start)) s)"
}

# The project's images: edge first, inference copies its source and weights.
build "engagement-edge:$TAG" -f compose/Dockerfile --ignorefile compose/Dockerfile.dockerignore \
  --target edge -t "localhost/engagement-edge:$TAG" .
build "engagement-inference:$TAG" -f compose/Dockerfile --ignorefile compose/Dockerfile.dockerignore \
  --target inference -t "localhost/engagement-inference:$TAG" .
# The third-party services from Debian's packages (nothing of the repository is copied in).
empty=$(mktemp -d)
for target in redis mosquitto prometheus node-exporter redis-exporter; do
  build "engagement-local/$target" -f compose/Dockerfile.no-registry --target "$target" \
    -t "localhost/engagement-local/$target:debian12" "$empty"
done
rmdir "$empty"

exec "$COMPOSE_TOOLS_DIR/bin/python" scripts/compose_check.py "$@"
