#!/usr/bin/env bash
# The container engine and the local Debian 12 base image that `make compose-test` needs, on a
# Debian 12 machine with no image registry in reach (measured, issue 23 / DESIGN.md "Containers on
# this kind of machine"). Idempotent: every step is skipped when its result is already there, so a
# second run costs a few seconds. Prints one line per step with the time it took.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=${COMPOSE_BASE_IMAGE:-localhost/engagement-debian:12}
PODMAN_COMPOSE_VERSION=1.6.0
TOOLS=${COMPOSE_TOOLS_DIR:-/var/cache/engagement-compose/tools}

timed() {  # timed LABEL COMMAND...: one line with the step's time
  local label=$1 start=$SECONDS
  shift
  "$@"
  echo "compose-engine: $label ($((SECONDS - start)) s)"
}

install_packages() {
  local need=()
  for tool in podman runc netavark aardvark-dns iptables debootstrap; do
    command -v "$tool" >/dev/null || [ -x "/usr/lib/podman/$tool" ] || need+=("$tool")
  done
  ((${#need[@]})) || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "compose-engine: please install ${need[*]} (Debian packages)" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    podman runc netavark aardvark-dns iptables debootstrap >/dev/null
}

write_engine_config() {
  # crun refuses this machine's hybrid cgroups ("cgroups in hybrid mode not supported"): runc.
  # A container asking for more open files or processes than the host's hard limits fails to
  # start (setrlimit: Operation not permitted), so the defaults are the host's own hard limits.
  local conf=/etc/containers/containers.conf
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  # Measured here: nproc at the host's hard limit (96369) is still refused by setrlimit, 4096 is
  # taken; a container of this project runs a few dozen threads.
  [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
  local want
  mkdir -p "$(dirname "$TOOLS")"
  echo "$nofile $nproc" >"$TOOLS.ulimits"  # the builds ask for the same (scripts/compose-test.sh)
  want=$(printf '%s\n' \
    '# Written by scripts/compose-engine.sh (engagement-monitor): runc, and limits within the host'"'"'s.' \
    '[containers]' \
    "default_ulimits = [\"nofile=$nofile:$nofile\", \"nproc=$nproc:$nproc\"]" \
    '' '[engine]' 'runtime = "runc"' \
    '# No systemd here: cgroups and events without it.' \
    'cgroup_manager = "cgroupfs"' 'events_logger = "file"' \
    '' '[network]' 'network_backend = "netavark"')
  if [ "$(cat "$conf" 2>/dev/null)" != "$want" ]; then
    mkdir -p /etc/containers
    printf '%s\n' "$want" >"$conf"
  fi
}

make_base_image() {
  podman image exists "$BASE_IMAGE" && return 0
  ROOTFS=$(mktemp -d /var/tmp/engagement-rootfs.XXXXXX)
  local rootfs=$ROOTFS
  trap 'rm -rf "${ROOTFS:-/nonexistent}" "${ROOTFS:-/nonexistent}.log"' EXIT  # also when a step fails
  # Debian 12's Python is 3.11, the project's (python3.11-venv needs the virtual
  # python3.11-distutils, which debootstrap cannot resolve: python3-distutils provides it).
  debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-distutils,ca-certificates \
    bookworm "$rootfs" http://deb.debian.org/debian >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; exit 1; }
  # The Debian mirror reached from here may serve a dated snapshot: apt in the builds must not
  # refuse its Release files for their age (the host's apt is set the same way).
  printf 'Acquire::Check-Valid-Until "false";\n' >"$rootfs/etc/apt/apt.conf.d/99-snapshot"
  # pip in the builds trusts the bundle at this path, which the builds mount from the host (the
  # registries are reached through the host's certificate authorities).
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$rootfs/etc/pip.conf"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb
  tar -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  rm -rf "$rootfs" "$rootfs.log"
}

install_podman_compose() {
  # podman-compose is a tool of this host, not a dependency of the project or of any image, so it
  # lives in its own virtualenv, pinned here (the lock covers what the images install).
  [ -x "$TOOLS/bin/podman-compose" ] \
    && "$TOOLS/bin/podman-compose" --version 2>/dev/null | grep -q "$PODMAN_COMPOSE_VERSION" && return 0
  "${PYTHON:-python3}" -m venv "$TOOLS"
  "$TOOLS/bin/pip" install -q --disable-pip-version-check "podman-compose==$PODMAN_COMPOSE_VERSION"
}

timed "packages podman runc netavark aardvark-dns iptables debootstrap" install_packages
timed "containers.conf (runc, cgroupfs, ulimits within the host's)" write_engine_config
timed "base image $BASE_IMAGE (debootstrap + podman import)" make_base_image
timed "podman-compose $PODMAN_COMPOSE_VERSION in $TOOLS" install_podman_compose
