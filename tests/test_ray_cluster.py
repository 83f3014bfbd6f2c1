"""`--engine ray` on a cluster of three nodes on this machine (ray.cluster_utils.Cluster: a head
and two worker nodes, each its own raylet and object store): the manifest shows the rows were
inferred on more than one node, and a node killed mid-run costs nothing: every input ends with
exactly one row.

The model here is slow on purpose (a chain of 784 x 784 MatMuls, tens of milliseconds a batch):
Ray Data hands a block to the least busy actor, and with the spec model a batch is inferred
faster than the next one is decoded, so every actor is idle when a block arrives and one actor can
take them all (a flaky failure in CI). Several nodes take part when inference is the work that
piles up, which is what this module makes true and tests."""
from __future__ import annotations

import json

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # a Ray cluster per module
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import pyarrow.dataset as pads  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from cnn_edge.core import contract as C  # noqa: E402
from cnn_edge.distributed.engine import RayEngine  # noqa: E402
from cnn_edge.prediction.config import PredictConfig  # noqa: E402
from cnn_edge.prediction.job import run_prediction  # noqa: E402
from cnn_edge.prediction.sinks import PartFolder  # noqa: E402
from conftest import REPO  # noqa: E402

import sys  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from hostile_files import digit  # noqa: E402

PIXELS = 28 * 28
SLOW_STEPS = 40  # MatMuls of [25, 784] x [784, 784] per batch


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """pixels [N, 1, 28, 28] -> Flatten -> SLOW_STEPS MatMuls by one orthogonal 784 x 784 matrix
    (norms kept, so no overflow) -> MatMul to 10 logits -> Softmax: the contract's form."""
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(PIXELS, PIXELS)))
    head = rng.normal(0, 0.01, (PIXELS, 10))
    init = [helper.make_tensor("q", TensorProto.FLOAT, q.shape, q.astype(np.float32).ravel()),
            helper.make_tensor("head", TensorProto.FLOAT, head.shape, head.astype(np.float32).ravel())]
    nodes = [helper.make_node("Flatten", ["pixels"], ["x0"])]
    for i in range(SLOW_STEPS):
        nodes.append(helper.make_node("MatMul", [f"x{i}", "q"], [f"x{i + 1}"]))
    nodes += [helper.make_node("MatMul", [f"x{SLOW_STEPS}", "head"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", 10]) for n in ("probabilities", "logits")]
    inp = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 1, 28, 28])
    graph = helper.make_model(helper.make_graph(nodes, "slow", [inp], outs, init),
                              opset_imports=[helper.make_opsetid("", C.OPSET)])
    graph.ir_version = 10
    path = tmp_path_factory.mktemp("model") / "slow.onnx"
    onnx.save(graph, str(path))
    return path


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    ray.init(address=c.address, log_to_driver=False)
    c.wait_for_nodes()
    # Work starts once every actor is up (the engine leaves Ray Data's default: start at once):
    # otherwise, on two busy cores, the first actor can finish 600 files before the others start.
    ctx = ray.data.DataContext.get_current()
    ctx.wait_for_min_actors_s = 120
    yield c, workers
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("in")
    out = []
    for i in range(600):
        out.append(str(folder / f"{i:04d}.png"))
        Image.fromarray(digit(i, 28)).save(out[-1])
    return out


def run(model, paths, out_dir, on_rows=None, **cfg):
    # Small batches: 24 of them for 600 files, so no actor can take all the work before another one asks.
    out = PartFolder(str(out_dir), "parquet", rows_per_file=100)
    summary = run_prediction(model, paths, PredictConfig(batch_size=25, **cfg), out, RayEngine(),
                             on_rows=on_rows or (lambda batch: None))
    manifest = json.loads((out_dir / "_SUCCESS").read_text())
    rows = pads.dataset(str(out_dir), format="parquet").to_table()["path"].to_pylist()
    return summary, manifest, rows


def test_the_rows_were_inferred_on_several_nodes(cluster, model, paths, tmp_path):
    summary, manifest, rows = run(model, paths, tmp_path / "out")
    assert sorted(rows) == sorted(paths) and summary.ok == 600
    nodes = {n for f in manifest["files"] for n in f["nodes"]}
    assert len(nodes) >= 2, [(f["nodes"], f["workers"]) for f in manifest["files"]]
    assert nodes <= {n["NodeID"] for n in ray.nodes()}


def test_a_node_killed_mid_run_costs_no_row(cluster, model, paths, tmp_path):
    c, workers = cluster
    victim = workers[-1]
    seen = {"rows": 0, "killed_at": None}

    def on_rows(batch):
        seen["rows"] += len(batch)
        if seen["killed_at"] is None:  # the first rows are back: the rest are in flight
            seen["killed_at"] = seen["rows"]
            c.remove_node(victim, allow_graceful=False)

    summary, manifest, rows = run(model, paths, tmp_path / "out", on_rows)
    assert seen["killed_at"] is not None and seen["killed_at"] < 600  # killed with rows still to come
    assert len(rows) == len(set(rows)) == 600 and set(rows) == set(paths)
    assert summary.ok + summary.failed == 600 and manifest["rows"] == 600
    assert not victim.any_processes_alive()  # its raylet and object store were killed, not drained
