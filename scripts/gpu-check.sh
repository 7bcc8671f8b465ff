#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU: ONNX Runtime's CUDA and TensorRT providers
# (and TensorFlow on the GPU) against Keras on the same real crops, and ms/face for 1 and 8 faces
# for every engine. On a machine without one it says so and exits 0 without measuring.
#
#   scripts/gpu-check.sh [BUNDLE]      default: the benchmark's MobileNetV2 224 bundle, built here
#
# Then the capacity table of this box with that model on the GPU (`engagement bench-capacity
# --model BUNDLE`, the same bench and table as bench/RESULTS.md's), into .gpu-check/RESULTS.md;
# CAPACITY=0 leaves it out (it takes 10-20 minutes).
#
# x86_64 with a GPU: installs the GPU wheels from PyPI (tensorflow[and-cuda], onnxruntime-gpu,
# tensorrt) into their own virtualenv, .venv-gpu, so the project's .venv stays as CI has it.
# A Jetson: PyPI has no GPU wheels for it; the check runs inside the inference-jetson image
# (compose/Dockerfile), which has NVIDIA's: the script prints the command.
# Exit 0: every engine agrees with Keras within 1e-3 (or no GPU); 1: one does not; 2: bad input.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -e /etc/nv_tegra_release ]; then
  echo "gpu-check: this is a Jetson; run the check in the inference-jetson image, which has NVIDIA's GPU wheels:"
  echo "  docker compose -f compose/docker-compose.yml -f compose/docker-compose.jetson.yml build inference"
  echo "  docker run --rm --runtime nvidia -v <bundle dir>:/bundle:ro --entrypoint python \\"
  echo "    engagement-inference-jetson:latest -m services.inference.gpu_check --bundle /bundle"
  echo "and its capacity table (how many 2 FPS classes the Jetson watches with that model; the image has no"
  echo "bench/, so this checkout is mounted and run from; not yet run on a Jetson):"
  echo "  docker run --rm --runtime nvidia -v <bundle dir>:/bundle:ro -v \$PWD:/src -w /src --entrypoint python \\"
  echo "    engagement-inference-jetson:latest -m engagement.cli bench-capacity --model /bundle \\"
  echo "    --out .gpu-check/capacity.json --results-md .gpu-check/RESULTS.md"
  exit 0
fi
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "gpu-check: no NVIDIA GPU on this machine (nvidia-smi finds none): nothing measured."
  echo "gpu-check: what only a GPU can confirm is listed in README.md (Trained models on GPUs and the Jetson)."
  exit 0
fi
nvidia-smi -L

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv-gpu/bin/python ]; then
  "$PY" -m venv .venv-gpu
fi
# The project with the GPU build of TensorFlow; the CPU onnxruntime of train-common makes way
# for onnxruntime-gpu (both install the same `onnxruntime` package: never both at once).
.venv-gpu/bin/pip install -q -e '.[train-gpu,test]'
.venv-gpu/bin/pip uninstall -q -y onnxruntime
.venv-gpu/bin/pip install -q onnxruntime-gpu tensorrt
.venv-gpu/bin/engagement fetch-models >/dev/null

# ONNX Runtime finds TensorRT's and CUDA's libraries in the pip packages that brought them.
libs=$(.venv-gpu/bin/python - <<'PY'
import glob, os, site
roots = site.getsitepackages()
dirs = {os.path.dirname(p) for r in roots for p in glob.glob(f"{r}/tensorrt_libs/*.so*") + glob.glob(f"{r}/nvidia/*/lib/*.so*")}
print(":".join(sorted(dirs)))
PY
)
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
.venv-gpu/bin/python -c "import tensorflow as tf, onnxruntime as o; print('TensorFlow GPUs:', tf.config.list_physical_devices('GPU')); print('ONNX Runtime providers:', o.get_available_providers())"

bundle="${1:-}"
if [ -z "$bundle" ]; then
  bundle=.gpu-check/bundle
  .venv-gpu/bin/python -m bench.workload bundle --out "$bundle" >/dev/null
fi
mkdir -p .gpu-check
.venv-gpu/bin/python -m services.inference.gpu_check --bundle "$bundle" --json .gpu-check/results.json
if [ "${CAPACITY:-1}" != "0" ]; then
  .venv-gpu/bin/engagement bench-capacity --model "$bundle" --engine auto \
    --out .gpu-check/capacity.json --results-md .gpu-check/RESULTS.md
fi
