#!/bin/sh
# Build step of docker/Dockerfile: installs this package from /src with the
# extras given (e.g. `serve`, `train,serve`) into /opt/venv, next to the
# TensorFlow installed before (tensorflow-cpu by default), then trims the
# environment and checks that it imports.
set -eu
extras=$1
site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# /opt/overrides.txt drops the requirements on the distribution
# `tensorflow` and on libclang (see the Dockerfile).
uv pip install --override /opt/overrides.txt "/src[$extras]"
installed=$(uv pip list --format freeze)
if echo "$installed" | grep -qi '^tensorflow-cpu==' && echo "$installed" | grep -qi '^tensorflow=='; then
    echo "error: both tensorflow-cpu and tensorflow got installed; a requirement pulls tensorflow past the override" >&2
    exit 1
fi

# Only the packages copied into /src are installed: remove the console
# scripts of the others (they could not start).
for script in /opt/venv/bin/classreg-*; do
    module=$(sed -n 's/^from \([A-Za-z_]*\)[. ].*/\1/p' "$script")
    [ -d "$site/$module" ] || rm -f "$script"
done
# TensorFlow's C++ headers serve only to build custom ops.
rm -rf "$site/tensorflow/include"

# Every package of ours that was copied must import (TensorFlow included).
packages=$(cd /src && for dir in */; do [ -f "$dir/__init__.py" ] && printf '%s,' "${dir%/}"; done)
/opt/venv/bin/python -c "import importlib; [importlib.import_module(p) for p in '${packages%,}'.split(',')]"
echo "installed: ${packages%,} with [$extras]"
