"""The README's commands run as pasted, from the repository root: every cheap one is run here
(not the hour-long main job, not the server that waits for Ctrl-C, not the installs)."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

README = (REPO / "README.md").read_text()
LONG_OR_INTERACTIVE = ("pipeline", "demo")


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line.startswith("cnn-edge ")]


def python_snippets() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, re.DOTALL)


@pytest.fixture
def checkout(tmp_path):
    """A stand-in for the repository root, with ../shared beside it as on a fresh clone."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("exports", "examples"):
        (root / name).symlink_to(REPO / name)
    shared = REPO.parent / "shared"
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared)
    return root


def test_the_readme_is_short_and_names_the_three_commands():
    assert len(README.splitlines()) < 150
    commands = readme_commands()
    assert any(c.startswith("cnn-edge pipeline") for c in commands)
    ci_extras = re.search(r'-e "(\.\[[^\]]+\])"', (REPO / ".ci" / "run").read_text()).group(1)
    assert f'pip install -e "{ci_extras}"' in README and "python3 -m pytest" in README  # what CI installs
    for page in re.findall(r"\]\((docs/[^)]+)\)", README):
        assert (REPO / page).is_file(), page


def slow_if_long(command: str):
    """The commands that read the real MNIST set or time for seconds are in the slow tier."""
    slow = "--data-dir" in command or command.split()[1] == "bench"
    return pytest.param(command, marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("command", [slow_if_long(c) for c in readme_commands() if c.split()[1] not in LONG_OR_INTERACTIVE])
def test_each_cheap_readme_command_runs_as_pasted(command, checkout):
    args = shlex.split(command)[1:]
    if "--data-dir" in args and not (checkout.parent / "shared").is_dir():
        pytest.skip("needs ../shared/data/mnist beside the checkout")
    proc = subprocess.run([sys.executable, "-m", "cnn_edge", *args], cwd=checkout, capture_output=True, text=True,
                          timeout=300, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_the_python_example_runs(checkout):
    (snippet,) = python_snippets()
    proc = subprocess.run([sys.executable, "-c", snippet], cwd=checkout, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0 and proc.stdout.strip().isdigit(), proc.stderr[-2000:]


def test_the_sample_digits_carry_their_labels():
    digits = sorted(Path(REPO / "examples" / "digits").iterdir())
    assert len(digits) >= 5 and all(re.search(r"_(\d)\.\w+$", p.name) for p in digits)
