#!/usr/bin/env bash
# Thin wrapper: every step lives in ci/release.py (CI systems and `make release` call this).
# Usage: ci/release.sh MODEL [release.py options...]   PYTHON=... picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" ci/release.py "$@"
