"""`--engine ray` and a file that kills the process decoding it: Ray Data would retry that task
forever; the run ends instead, with the local engine's error row for that file and every other
input classified. The crash is a real SIGKILL in Ray's worker processes (a setup hook installs it
there), not a mock."""
from __future__ import annotations

import os
import sys

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # a Ray cluster per module
ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

import pyarrow.csv as pacsv  # noqa: E402

from cnn_edge.distributed.engine import RayEngine  # noqa: E402
from cnn_edge.prediction.config import PredictConfig  # noqa: E402
from cnn_edge.prediction.job import run_prediction  # noqa: E402
from cnn_edge.prediction.sinks import PartFolder  # noqa: E402
from cnn_edge.prediction.workers import WORKER_DIED  # noqa: E402
from conftest import REPO  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from hostile_files import digit  # noqa: E402

import ray_poison_hook  # noqa: E402

MODEL = REPO / "exports" / "mnist_cnn.int8.onnx"


@pytest.fixture(scope="module", autouse=True)
def cluster():
    path = os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")])
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"worker_process_setup_hook": ray_poison_hook.install, "env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def test_a_file_that_kills_its_decoder_gets_an_error_row_and_the_run_ends(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    paths = []
    for i in range(40):
        paths.append(str(folder / f"{i:03d}.png"))
        Image.fromarray(digit(i, 28)).save(paths[-1])
    poison = folder / "020poison.png"
    poison.write_bytes((folder / "000.png").read_bytes() + b"POISON")  # a valid PNG with trailing bytes
    paths.append(str(poison))
    out = PartFolder(str(tmp_path / "out"), "csv")
    summary = run_prediction(MODEL, sorted(paths), PredictConfig(batch_size=8), out, RayEngine())
    table = {}
    for part in (tmp_path / "out").glob("part-*.csv"):
        t = pacsv.read_csv(part).to_pylist()
        table.update({r["path"]: r["error"] for r in t})
    assert sorted(table) == sorted(paths) and summary.engine_figures.passes >= 2
    assert table[str(poison)] == WORKER_DIED
    assert [p for p, error in table.items() if error] == [str(poison)]
    assert (summary.ok, summary.failed) == (40, 1) and (tmp_path / "out" / "_SUCCESS").is_file()
