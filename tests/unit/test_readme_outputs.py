"""What README's commands write into the checkout stays out of git: run stores hold model responses,
organisms are model weights. Every output path a README command names (``--out``, ``--results-dir``,
``-o``, ``--evalkit-html``) inside the checkout must be git-ignored."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_FLAG = re.compile(r"(?:--out|--results-dir|--evalkit-html|-o)[= ](?P<path>[^\s`\"']+)")


def readme_outputs() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    paths = {match["path"] for block in blocks for match in OUTPUT_FLAG.finditer(block)}
    return sorted(p for p in paths if not p.startswith(("/", "..", "$")) and p != "PATH")


def test_the_readme_names_output_paths():
    assert {"organisms", "results/baseline", "results/report.html"} <= set(readme_outputs())


@pytest.mark.parametrize("path", readme_outputs())
def test_a_readme_output_path_is_git_ignored(path):
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    # a file inside it (for a directory) or the file itself: either is ignored
    probes = [path, f"{path}/manifest.json"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *probes], cwd=ROOT,
                             capture_output=True).returncode == 0
    assert ignored, f"README writes {path} into the checkout, and .gitignore does not cover it"
