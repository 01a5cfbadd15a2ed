#!/usr/bin/env bash
# Runs every test: the TypeScript suite (vitest, which includes the conformance suite) and the sidecar's pytest suite.
# `npm test` runs scripts/setup.sh first, so this works on a fresh clone.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
npx tsc -p tsconfig.check.json || status=1   # types of sources, tests, benches and examples
npx vitest run "$@" || status=1
.venv/bin/python -m pytest -q sidecar/tests || status=1
exit $status
