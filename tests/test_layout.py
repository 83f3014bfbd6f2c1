"""The layout's rules, enforced: folders are the dependency rule (RULE below, the one statement of
it), no import cycles, a torch-free inference side, ruff's per-folder bans and docs/architecture.md
agreeing with the tree, a wheel that carries every subpackage and the web assets, and one read of
MNIST per pipeline."""
from __future__ import annotations

import ast
import os
import re
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
TRAINING_LIBRARIES = ("torch", "torchvision", "onnx", "onnxscript", "safetensors")
# Who may import whom: each package of cnn_edge, the packages of cnn_edge it may import (besides
# itself), and the third-party libraries it must never import. The inference side (core, runtime,
# prediction, distributed) is torch- and onnx-free; only distributed and the CLI's Ray path load Ray.
RULE: dict[str, tuple[set[str], tuple[str, ...]]] = {
    "core": (set(), (*TRAINING_LIBRARIES, "onnxruntime", "ray")),
    "runtime": ({"core"}, (*TRAINING_LIBRARIES, "ray")),
    "prediction": ({"core", "runtime"}, (*TRAINING_LIBRARIES, "ray")),
    "distributed": ({"core", "runtime", "prediction"}, TRAINING_LIBRARIES),
    "training": ({"core"}, ("onnxruntime", "ray")),
    "release": ({"", "core", "runtime", "training"}, ("ray",)),  # "": the version, in the model's metadata
    "tools": ({"core", "runtime", "training", "release"}, ("ray",)),
    "cli": ({"", "core", "runtime", "prediction", "distributed", "training", "release", "tools"}, ()),
    "": ({"core", "runtime", "cli"}, TRAINING_LIBRARIES),  # cnn_edge/__init__.py, __main__.py
}
MAX_FLAT_MODULES = 6  # modules directly in cnn_edge/: the package's face, nothing else


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module `path` imports, at the top, inside a function or under TYPE_CHECKING,
    with relative imports resolved; `from pkg import sub` counts as importing pkg.sub."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
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


def package_of(module: str) -> str:
    """cnn_edge.runtime.images -> runtime; cnn_edge and cnn_edge.__main__ -> ''."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""


def third_party(path: Path) -> set[str]:
    """Top-level names of every import in `path` that is not relative (lazy ones too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_every_package_has_a_rule():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders | {""} == set(RULE), "state what a new package may import in RULE"


def rule_breaks(graph: dict[str, set[str]]) -> list[str]:
    breaks = []
    for name, imported in graph.items():
        allowed = RULE[package_of(name)][0] | {package_of(name)}
        breaks += [f"{name} imports {m}" for m in sorted(imported) if package_of(m) not in allowed]
    return breaks


def test_folders_are_the_dependency_rule():
    """Every import between cnn_edge's packages, lazy ones included, follows RULE."""
    assert rule_breaks(import_graph()) == []


def test_the_rule_check_bites():
    assert rule_breaks({"cnn_edge.runtime.images": {"cnn_edge.training.model"}}) == [
        "cnn_edge.runtime.images imports cnn_edge.training.model"]
    assert rule_breaks({"cnn_edge.cli.app": {"cnn_edge.training.model"}}) == []


def test_no_package_imports_a_library_it_must_not():
    for name, path in modules().items():
        banned = set(RULE[package_of(name)][1])
        assert not (third_party(path) & banned), (name, third_party(path) & banned)


def test_at_most_six_modules_left_flat():
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(flat) <= MAX_FLAT_MODULES, flat


def expected_ruff_bans(package: str) -> dict[str, str]:
    """The banned-api table ruff applies in cnn_edge/PACKAGE/, derived from RULE."""
    allowed, libraries = RULE[package]
    bans = {lib: f"cnn_edge/{package}/ must not import {lib} (tests/test_layout.py RULE)" for lib in libraries}
    for other in sorted(set(RULE) - allowed - {package, ""}):  # (the package root is cnn_edge itself: not bannable alone)
        bans[f"cnn_edge.{other}"] = f"cnn_edge/{package}/ may import only {', '.join(sorted(allowed)) or 'itself'}"
    return bans


def ruff_toml(package: str) -> str:
    lines = ["# Written from tests/test_layout.py RULE (python tests/test_layout.py writes it): what this folder may",
             "# not import. Ruff applies the closest configuration, so this one extends the project's.",
             'extend = "../../pyproject.toml"', "", "[lint.flake8-tidy-imports.banned-api]"]
    lines += [f'"{name}".msg = "{msg}"' for name, msg in expected_ruff_bans(package).items()]
    return "\n".join(lines) + "\n"


def test_ruffs_bans_are_derived_from_the_rule():
    for package in sorted(set(RULE) - {"", "cli"}):
        config = PACKAGE / package / "ruff.toml"
        assert config.is_file() and config.read_text() == ruff_toml(package), \
            f"{config} is not what RULE says: run python tests/test_layout.py"


def test_ruff_enforces_the_rule():
    ruff = shutil.which("ruff")
    if ruff is None:
        if ON_CI:
            pytest.fail("ruff is not installed (pip install -e '.[dev]')")
        pytest.skip("ruff is not installed")
    clean = subprocess.run([ruff, "check", "--no-cache", "."], capture_output=True, text=True, cwd=REPO)
    assert clean.returncode == 0, clean.stdout[-3000:]
    # The rule bites: the same imports are refused in runtime/ and prediction/, allowed in cli/.
    probe = "import torch\nfrom ..training import train\n\nprint(torch, train)\n"
    for folder, refused in (("runtime", 2), ("prediction", 2), ("core", 2), ("cli", 0)):
        out = subprocess.run([ruff, "check", "--no-cache", "--stdin-filename", f"cnn_edge/{folder}/probe.py", "-"],
                             input=probe, capture_output=True, text=True, cwd=REPO)
        assert out.stdout.count("TID251") == refused, (folder, out.stdout)


def documented_modules() -> set[str]:
    """docs/architecture.md's module table: every `cnn_edge/...py` in its first column."""
    text = (REPO / "docs" / "architecture.md").read_text()
    return set(re.findall(r"^\| `(cnn_edge/[\w/]+\.py)` \|", text, re.M))


def test_the_architecture_doc_lists_every_module():
    on_disk = {p.relative_to(REPO).as_posix() for p in PACKAGE.rglob("*.py")}
    assert documented_modules() == on_disk


def test_the_architecture_doc_states_the_rule():
    """Its table of packages says what RULE says: who may import whom, and which libraries never."""
    text = (REPO / "docs" / "architecture.md").read_text()
    rows = {m.group(1): (m.group(2), m.group(3)) for m in
            re.finditer(r"^\| `(\w+)` \| ([^|]*) \| ([^|]*) \|", text, re.M)}
    assert set(rows) == set(RULE) - {""}
    for package, (may, never) in rows.items():
        allowed, banned = RULE[package]
        if package == "cli":
            assert may.strip() == "everything" and never.strip() == "none"
            continue
        named = {w.strip() for w in may.split(",")} - {"nothing"}
        assert {"" if n.startswith("cnn_edge") else n.split(" ")[0] for n in named} == allowed, package
        assert {w.strip() for w in never.split(",") if w.strip()} == set(banned), package


def test_every_inference_module_imports_with_torch_and_onnx_unimportable():
    names = sorted(n for n in modules() if package_of(n) in ("core", "runtime", "prediction", "distributed"))
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


@pytest.mark.slow
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
    assert "cnn_edge/core/flag_rule.json" in names  # the flag rule the runtime reads


@pytest.mark.slow
def test_a_pipeline_run_reads_mnist_once(tiny_mnist, tmp_path, monkeypatch):
    """The CLI reads the four IDX files once; every stage gets the arrays."""
    from cnn_edge.training import data
    from cnn_edge.cli import app

    reads: list[str] = []
    real_read_idx = data.read_idx

    def counting_read_idx(path, expected_dims):
        reads.append(Path(path).name)
        return real_read_idx(path, expected_dims)

    monkeypatch.setattr(data, "read_idx", counting_read_idx)
    result = CliRunner().invoke(app, ["pipeline", "--data-dir", str(tiny_mnist), "--run-dir", str(tmp_path / "run"),
                                      "--out-dir", str(tmp_path / "out"), "--epochs", "1", "--batch-size", "64",
                                      "--val-size", "64", "-q", "--speed-seconds", "0"])
    assert result.exit_code == 0, result.output
    assert sorted(reads) == sorted(f + ".gz" for f in data.FILES.values())  # each file once


if __name__ == "__main__":  # write each folder's ruff.toml from RULE
    for name in sorted(set(RULE) - {"", "cli"}):
        (PACKAGE / name / "ruff.toml").write_text(ruff_toml(name))
        print(f"wrote cnn_edge/{name}/ruff.toml")
