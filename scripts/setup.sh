#!/usr/bin/env bash
# Idempotent set-up of a fresh machine for the local pipeline and the tests:
# Debian packages (when root and missing), Redis and Mosquitto (started when absent),
# a virtualenv with the project and its extras, and the model weights (SHA-256 checked).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v mosquitto >/dev/null || need+=(mosquitto)
command -v mosquitto_sub >/dev/null || need+=(mosquitto-clients)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v prometheus >/dev/null || need+=(prometheus)
# Screen and window sources: the tests draw a real window on a virtual X server.
command -v Xvfb >/dev/null || need+=(xvfb)
command -v xwininfo >/dev/null || need+=(x11-utils)
command -v xdotool >/dev/null || need+=(xdotool)
# The web service's browser tests drive Debian's Chromium (Playwright cannot download its own).
command -v chromium >/dev/null || need+=(chromium fonts-dejavu-core)
# The lesson summary's test renders the PDF's pages to PNG (pdftoppm) to look at them.
command -v pdftoppm >/dev/null || need+=(poppler-utils)
# The bus's DNS-stall test runs a DNS server of its own in a network namespace (unshare, ip).
command -v unshare >/dev/null || need+=(util-linux)
command -v ip >/dev/null || need+=(iproute2)
if ((${#need[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: please install ${need[*]} (Debian packages)" >&2
    exit 1
  fi
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "setup: starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/engagement-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/engagement-redis --logfile /tmp/engagement-redis/redis.log
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; then
  echo "setup: starting mosquitto on 127.0.0.1:1883"
  mosquitto -d -p 1883 2>/dev/null || mosquitto -d
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Pinned by the lock (constraints.txt, made by scripts/lock.sh), as the images are.
.venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[ml,train,test,cloud,ocr]'
# GALLERY_NAMES=ocr: RapidOCR without its opencv-python (see the ocr extra in pyproject.toml).
.venv/bin/pip install -q --disable-pip-version-check --no-deps "rapidocr-onnxruntime==1.4.4"
.venv/bin/engagement fetch-models >/dev/null
echo "setup: ready (.venv, models/)"
