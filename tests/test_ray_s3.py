"""`--engine ray` over S3: inputs read from and rows written to a real S3 HTTP API on loopback
(moto's server, in this process, on a free port of 127.0.0.1): the rows are the local engine's
for the same files, and the output prefix holds complete part files and _SUCCESS only."""
from __future__ import annotations

import io
import json
import os
import socket

import pytest
from PIL import Image
from typer.testing import CliRunner

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")
boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

import pyarrow.parquet as pq  # noqa: E402

from cnn_edge.cli import app  # noqa: E402
from conftest import REPO, assert_one_line_error  # noqa: E402

import sys  # noqa: E402

sys.path.insert(0, str(REPO / "scripts"))
from hostile_files import digit, valid_files  # noqa: E402

MODEL = REPO / "exports" / "mnist_cnn.int8.onnx"
BUCKET = "scans"
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server():
    """An S3 server on loopback, credentials and endpoint in the environment (pyarrow, fsspec and
    Ray's workers read them there), and a client for it; no bucket yet."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    host, port = server._server.server_address[:2]
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    mp = pytest.MonkeyPatch()
    for k, v in env.items():
        mp.setenv(k, v)
    yield boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"])
    mp.undo()
    server.stop()


@pytest.fixture(scope="module")
def s3(s3_server, tmp_path_factory):
    """The server with one bucket of 60 digits, a truncated JPEG and a non-image (and the same files
    in a local folder), and a Ray cluster started after the environment is set."""
    client = s3_server
    client.create_bucket(Bucket=BUCKET)
    local = tmp_path_factory.mktemp("same")
    files = {f"in/{i:03d}.png": None for i in range(60)}
    for name in files:
        buf = io.BytesIO()
        Image.fromarray(digit(int(name[3:6]), 28)).save(buf, "PNG")
        files[name] = buf.getvalue()
    files["in/sub/cut.jpg"] = valid_files()[".jpg"][:100]
    files["in/notes.png"] = b"not an image at all"
    for name, data in files.items():
        client.put_object(Bucket=BUCKET, Key=name, Body=data)
        (local / name).parent.mkdir(parents=True, exist_ok=True)
        (local / name).write_bytes(data)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # after the environment is set
    yield client, local
    ray.shutdown()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_a_missing_bucket_is_one_line_before_any_cluster_starts(s3_server, tmp_path):
    """-o and inputs on a bucket that is not there: refused in one line naming the bucket and the
    endpoint asked, before a Ray cluster is started (none is running in this test)."""
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    assert not ray.is_initialized()
    line = assert_one_line_error(invoke("predict", MODEL, tmp_path, "-o", "s3://missing-bucket/x", "--engine", "ray", "-q"),
                                 2, "bucket missing-bucket does not exist", endpoint)
    assert line.startswith("error: bucket missing-bucket"), line
    line = assert_one_line_error(invoke("predict", MODEL, "s3://missing-bucket/a.png", "-o", tmp_path / "out",
                                        "--engine", "ray", "-q"), 2, "s3://missing-bucket/a.png",
                                 "bucket missing-bucket does not exist", endpoint)
    assert not ray.is_initialized() and list(tmp_path.iterdir()) == []  # no cluster started, nothing written


@pytest.mark.slow  # a Ray cluster per module
def test_s3_in_s3_out_gives_the_local_engines_rows(s3, tmp_path):
    client, local = s3
    result = invoke("predict", MODEL, f"s3://{BUCKET}/in/", f"s3://{BUCKET}/in/gone.png", "-r",
                    "-o", f"s3://{BUCKET}/out/run1", "--engine", "ray", "-q", "--json", "--format", "jsonl")
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["files"] == 63 and summary["failed"] == 3
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix="out/run1/")["Contents"])
    parts = [k for k in keys if k.split("/")[-1].startswith("part-")]
    assert keys == ["out/run1/_SUCCESS", *parts] and parts  # nothing else: no temporary object left
    rows = [json.loads(line) for k in parts
            for line in client.get_object(Bucket=BUCKET, Key=k)["Body"].read().decode().splitlines()]
    local_out = tmp_path / "local.jsonl"
    assert invoke("predict", MODEL, local / "in", local / "in" / "gone.png", "-r", "-o", local_out, "-q").exit_code == 3
    want = [{**r, "path": r["path"].replace(str(local), f"s3://{BUCKET}")} for r in map(json.loads, local_out.read_text().splitlines())]
    assert sorted(rows, key=lambda r: r["path"]) == sorted(want, key=lambda r: r["path"])


@pytest.mark.slow
def test_parquet_on_s3_and_a_used_prefix_is_refused(s3):
    client, _ = s3
    out = f"s3://{BUCKET}/out/run2"
    assert invoke("predict", MODEL, f"s3://{BUCKET}/in/", "-o", out, "--engine", "ray", "-q").exit_code == 3
    manifest = json.loads(client.get_object(Bucket=BUCKET, Key="out/run2/_SUCCESS")["Body"].read())
    (part,) = manifest["files"]
    table = pq.read_table(io.BytesIO(client.get_object(Bucket=BUCKET, Key=f"out/run2/{part['name']}")["Body"].read()))
    assert table.num_rows == manifest["rows"] == 61 and table.column_names[:3] == ["path", "prediction", "confidence"]
    assert_one_line_error(invoke("predict", MODEL, f"s3://{BUCKET}/in/", "-o", out, "--engine", "ray", "-q"), 2,
                          out, "--resume")
