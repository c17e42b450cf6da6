#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels the GPU machine's image lacks: optuna and
# what it imports, at the versions installed here, for the image's Python 3.12. Run it
# here, with the package registry in reach, before the first device call; each call then
# carries .whl and starts with the install line in studies/gpu_checks.sh's header.
# Usage: bash studies/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
# The image has numpy, packaging, tqdm, PyYAML, MarkupSafe and typing-extensions.
for name in optuna colorlog alembic Mako SQLAlchemy; do
  version=$(python3 -c "import importlib.metadata as m; print(m.version('$name'))")
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl "$name==$version"
done
ls .whl
