#!/usr/bin/env bash
# Builds the project's images (docker/Dockerfile) with podman or docker and
# tests the model-server container: the shared real clips classified over
# gRPC and REST by the container and by the same export served outside it
# must get the same answers; health, non-root user, SIGTERM; everything it
# made removed; each step's time and the image sizes printed. Options:
# `--help` (python -m benchmarks.container). CI (.ci/run) runs it with
# --install.
#
#   docker/build_and_test.sh [--engine podman|docker] [--clips DIR] [--install] [--keep]
#       [--no-train-image] [--docs docs/benchmarks/container.md]
#
# Python: $PYTHON, else the repository's .venv, else python3 (it needs the
# dev extra: the test exports a model and runs the server and the client).
# Exit status: 0 passed, 1 failed, 2 usage, 77 skipped (containers cannot
# run on this machine; one line says why).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-}
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
exec "$python" -m benchmarks.container "$@"
