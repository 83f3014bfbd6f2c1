"""Every command on the base install (no torch, torchvision, onnx, onnxscript, safetensors): it
works, or it says in one line which install it needs and exits 2. Never a traceback. On the tiny
model (conftest): what is tested is the install, not the release."""
from __future__ import annotations

import subprocess
import sys

import pytest
from PIL import Image

from cnn_edge.cli.app import EXIT_BAD_INPUT, TRAIN_EXTRA, TRAIN_EXTRA_HINT
from conftest import REPO

BASE_ONLY = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {sorted(TRAIN_EXTRA)!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Block())
sys.argv = ["cnn-edge", *sys.argv[1:]]
from cnn_edge.cli import main
main()
"""


def run_base_only(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BASE_ONLY, *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_mnist, tiny_run, tiny_onnx):
    tmp = tmp_path_factory.mktemp("base")
    Image.new("L", (28, 28)).save(tmp / "blank.png")
    return {"tmp": tmp, "data": tiny_mnist, "ckpt": tiny_run, "png": tmp / "blank.png", "model": tiny_onnx}


NEEDS_TRAIN = [
    ["train", "--data-dir", "{data}", "--out", "{tmp}/t", "-q"],
    ["export", "{ckpt}", "-o", "{tmp}/m.onnx"],
    ["vectors", "{ckpt}", "-o", "{tmp}/v.json", "--data-dir", "{data}"],
    ["validate", "{model}", "--checkpoint", "{ckpt}", "--data-dir", "{data}"],
    ["quantize", "{model}", "-o", "{tmp}/q.onnx", "--data-dir", "{data}"],
    ["pipeline", "--data-dir", "{data}", "--run-dir", "{tmp}/p", "-q"],
    ["compare", "--quick", "--data-dir", "{data}", "--run-dir", "{tmp}/c", "-q"],
]
WORKS = [
    (["--version"], 0), (["info"], 0), (["validate", "{model}", "--data-dir", "{data}", "--limit", "20"], 0),
    (["predict", "{model}", "{png}"], 3), (["bench", "{model}", "--seconds", "0.02", "--batch-sizes", "1"], 0),
    (["demo", "--model", "{tmp}/missing.onnx"], EXIT_BAD_INPUT),
]


@pytest.mark.slow  # a fresh interpreter per command: 7 s of the fast tier
@pytest.mark.parametrize("args", NEEDS_TRAIN, ids=lambda a: " ".join(map(str, a[:2])))
def test_commands_that_need_the_train_extra_say_so(files, args):
    proc = run_base_only(*[str(a).format(**files) for a in args])
    assert proc.returncode == EXIT_BAD_INPUT and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and TRAIN_EXTRA_HINT in lines[0], proc.stderr


@pytest.mark.parametrize("args,code", WORKS, ids=lambda a: " ".join(map(str, a[:1])) if isinstance(a, list) else str(a))
def test_the_rest_works_without_it(files, args, code):
    proc = run_base_only(*[str(a).format(**files) for a in args])
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr[-2000:]
