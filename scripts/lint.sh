#!/usr/bin/env bash
# Lint: ruff (pycodestyle, pyflakes, import order, pyupgrade, bugbear) and mypy --strict,
# both configured in pyproject.toml. Runs both and fails if either finds anything.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
python -m ruff check evalkit tests benchmarks scripts || status=1
python -m mypy evalkit || status=1
exit $status
