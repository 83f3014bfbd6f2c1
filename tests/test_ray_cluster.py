"""`--engine ray` on a cluster of three nodes on this machine (ray.cluster_utils.Cluster: a head
and two worker nodes, each its own raylet and object store): the manifest shows the rows were
inferred on more than one node, and a node killed mid-run costs nothing: every input ends with
exactly one row."""
from __future__ import annotations

import json

import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # a Ray cluster per module
ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

import pyarrow.dataset as pads  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from cnn_edge.distributed.engine import RayEngine  # noqa: E402
from cnn_edge.prediction.config import PredictConfig  # noqa: E402
from cnn_edge.prediction.job import run_prediction  # noqa: E402
from cnn_edge.prediction.sinks import PartFolder  # noqa: E402
from conftest import REPO  # noqa: E402

import sys  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from hostile_files import digit  # noqa: E402

MODEL = REPO / "exports" / "mnist_cnn.int8.onnx"


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
    # Ray Data sends a block to an actor on the node that holds it while that actor has room: when
    # the decoding tasks ran on one node, its actor took every batch (a flaky failure here). What
    # this module tests is that several nodes can take part and that losing one costs no row, not
    # Ray's locality policy: batches go to the least busy actor.
    ctx.execution_options.actor_locality_enabled = False
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


def run(paths, out_dir, on_rows=None, **cfg):
    # Small batches: 24 of them for 600 files, so no actor can take all the work before another one asks.
    out = PartFolder(str(out_dir), "parquet", rows_per_file=100)
    summary = run_prediction(MODEL, paths, PredictConfig(batch_size=25, **cfg), out, RayEngine(),
                             on_rows=on_rows or (lambda batch: None))
    manifest = json.loads((out_dir / "_SUCCESS").read_text())
    rows = pads.dataset(str(out_dir), format="parquet").to_table()["path"].to_pylist()
    return summary, manifest, rows


def test_the_rows_were_inferred_on_several_nodes(cluster, paths, tmp_path):
    summary, manifest, rows = run(paths, tmp_path / "out")
    assert sorted(rows) == sorted(paths) and summary.ok == 600
    nodes = {n for f in manifest["files"] for n in f["nodes"]}
    assert len(nodes) >= 2, [(f["nodes"], f["workers"]) for f in manifest["files"]]
    assert nodes <= {n["NodeID"] for n in ray.nodes()}


def test_a_node_killed_mid_run_costs_no_row(cluster, paths, tmp_path):
    c, workers = cluster
    victim = workers[-1]
    seen = {"rows": 0, "killed_at": None}

    def on_rows(batch):
        seen["rows"] += len(batch)
        if seen["killed_at"] is None:  # the first rows are back: the rest are in flight
            seen["killed_at"] = seen["rows"]
            c.remove_node(victim, allow_graceful=False)

    summary, manifest, rows = run(paths, tmp_path / "out", on_rows)
    assert seen["killed_at"] is not None and seen["killed_at"] < 600  # killed with rows still to come
    assert len(rows) == len(set(rows)) == 600 and set(rows) == set(paths)
    assert summary.ok + summary.failed == 600 and manifest["rows"] == 600
    assert not victim.any_processes_alive()  # its raylet and object store were killed, not drained
