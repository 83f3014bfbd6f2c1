"""predict, bench on ONNX models and validate without a checkpoint run with torch unimportable
(on the tiny model and checkpoint of conftest)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from conftest import REPO

# Run the CLI in a fresh interpreter where `import torch` / `import torchvision` fail, as on a
# machine with only the base dependencies; then check that neither got into sys.modules.
BLOCKED = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
sys.argv = ["cnn-edge", *sys.argv[1:]]
from cnn_edge.cli import main
try:
    main()
finally:
    leaked = [m for m in ("torch", "torchvision") if m in sys.modules]
    if leaked:
        sys.stderr.write(f"LEAKED {leaked}\\n")
        sys.exit(99)
"""


def run_blocked(*args):
    return subprocess.run([sys.executable, "-c", BLOCKED, *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, timeout=300)


def test_predict_without_torch(tmp_path, tiny_onnx):
    img = tmp_path / "one.png"
    Image.fromarray(np.pad(np.full((20, 4), 255, np.uint8), 4)).save(img)  # a '1'
    proc = run_blocked("predict", tiny_onnx, img, "--json", "-o", tmp_path / "r.csv")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ok"] == 1


def test_bench_without_torch_skips_the_eager_rows(tiny_onnx, tiny_run):
    proc = run_blocked("bench", tiny_onnx, "--checkpoint", tiny_run, "--seconds", "0.05", "--batch-sizes", "1,8",
                       "--no-openvino", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert {r["runtime"] for r in report["rows"]} == {"onnxruntime"}
    assert len(report["notes"]) == 1 and "torch" in report["notes"][0]  # says why the eager rows are missing


def test_validate_without_checkpoint_without_torch(tiny_mnist, tiny_onnx):
    proc = run_blocked("validate", tiny_onnx, "--data-dir", tiny_mnist, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accuracy"] > 0.5


def test_the_package_and_predictor_import_light():
    code = "import sys, cnn_edge; from cnn_edge import Predictor; print(sorted(m for m in ('torch', 'onnx', 'torchvision') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
