"""The layout's rules, enforced: no import cycles, a torch-free runtime package, small modules,
a wheel that carries every subpackage and the web assets, and one read of MNIST per pipeline."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO

PACKAGE = REPO / "cnn_edge"
ON_CI = bool(os.environ.get("CI"))
MAX_MODULE_LINES = 300
# What cnn_edge/runtime/ may import from the rest of cnn_edge: the shared, torch-free modules.
RUNTIME_MAY_IMPORT = {"cnn_edge", "cnn_edge.constants", "cnn_edge.contract", "cnn_edge.errors", "cnn_edge.io_utils",
                      "cnn_edge.artifacts", "cnn_edge.machine", "cnn_edge.reports"}
TRAINING_LIBRARIES = ("torch", "torchvision", "onnx", "onnxscript", "safetensors")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module `path` imports, at the top or inside a function (not under TYPE_CHECKING),
    with relative imports resolved; `from pkg import sub` counts as importing pkg.sub."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(a.name for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in known else base)
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: {m for m in imports_of(path, known) if m in known and m != name} for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := dfs(node)):
            return cycle
    return None


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 30 and graph["cnn_edge.cli"] >= {"cnn_edge.cli.app", "cnn_edge.cli.runtime"}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_runtime_imports_only_the_torch_free_side():
    known = modules()
    runtime = {name: path for name, path in known.items() if name.startswith("cnn_edge.runtime")}
    assert len(runtime) >= 10
    for name, path in runtime.items():
        for imported in imports_of(path, known):
            assert imported.split(".")[0] not in TRAINING_LIBRARIES, (name, imported)
            if imported.startswith("cnn_edge"):
                assert imported.startswith("cnn_edge.runtime") or imported in RUNTIME_MAY_IMPORT, (name, imported)


def test_every_runtime_module_imports_with_torch_and_onnx_unimportable():
    names = sorted(n for n in modules() if n.startswith("cnn_edge.runtime"))
    code = f"""
import importlib, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {TRAINING_LIBRARIES!r}:
            raise ImportError(name + " is blocked in this test")
sys.meta_path.insert(0, Block())
for name in {names!r}:
    importlib.import_module(name)
leaked = [m for m in {TRAINING_LIBRARIES!r} if m in sys.modules]
assert not leaked, leaked
print(len({names!r}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) == len(names)


def test_ruff_bans_training_imports_in_runtime():
    ruff = shutil.which("ruff")
    if ruff is None:
        if ON_CI:
            pytest.fail("ruff is not installed (pip install -e '.[dev]')")
        pytest.skip("ruff is not installed")
    clean = subprocess.run([ruff, "check", "--no-cache", "."], capture_output=True, text=True, cwd=REPO)
    assert clean.returncode == 0, clean.stdout[-3000:]
    # The rule bites: the same import is refused in runtime/ and allowed outside it.
    probe = "import torch\nfrom ..train import train\n\nprint(torch, train)\n"
    inside = subprocess.run([ruff, "check", "--no-cache", "--stdin-filename", "cnn_edge/runtime/probe.py", "-"],
                            input=probe, capture_output=True, text=True, cwd=REPO)
    assert inside.returncode == 1 and inside.stdout.count("TID251") == 2, inside.stdout
    outside = subprocess.run([ruff, "check", "--no-cache", "--stdin-filename", "cnn_edge/probe.py", "-"],
                             input=probe, capture_output=True, text=True, cwd=REPO)
    assert outside.returncode == 0, outside.stdout


def test_no_module_over_the_size_limit():
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {n: s for n, s in sizes.items() if s > MAX_MODULE_LINES} == {}


def test_the_wheel_carries_every_subpackage_and_the_web_assets(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copytree(PACKAGE, src / "cnn_edge", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("cnn_edge-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("__init__.py")}
    assert packages >= {"cnn_edge/__init__.py", "cnn_edge/runtime/__init__.py", "cnn_edge/cli/__init__.py"}
    assert packages <= names
    sources = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py")}
    assert sources <= names
    web = {p.relative_to(REPO).as_posix() for p in (PACKAGE / "web").rglob("*") if p.is_file() and p.name != "README.md"}
    assert {"cnn_edge/web/index.html", "cnn_edge/web/vendor/ort-wasm-simd-threaded.wasm.gz"} <= web
    assert web <= names


def test_a_pipeline_run_reads_mnist_once(tiny_mnist, tmp_path, monkeypatch):
    """The CLI reads the four IDX files once; every stage gets the arrays."""
    from cnn_edge import data
    from cnn_edge.cli import app

    reads: list[str] = []
    real_read_idx = data.read_idx

    def counting_read_idx(path, expected_dims):
        reads.append(Path(path).name)
        return real_read_idx(path, expected_dims)

    monkeypatch.setattr(data, "read_idx", counting_read_idx)
    result = CliRunner().invoke(app, ["pipeline", "--data-dir", str(tiny_mnist), "--run-dir", str(tmp_path / "run"),
                                      "--out-dir", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "64",
                                      "--val-size", "64", "-q"])
    assert result.exit_code == 0, result.output
    assert sorted(reads) == sorted(f + ".gz" for f in data.FILES.values())  # each file once
