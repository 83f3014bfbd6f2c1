"""Object-store reads in a Ray decoding task: one at a time against READS_IN_FLIGHT at once, in one run.

Starts moto's S3 server on 127.0.0.1 (a real HTTP S3 API, loopback only), uploads MNIST test PNGs,
then times `cnn_edge.distributed.stages.read_all` over them in batches of 256, with 1 read in
flight and with the default. Loopback has almost no network latency, so the gain over real S3,
where a GET waits tens of milliseconds, is larger than what this prints.

    python scripts/bench_s3_reads.py --data-dir ../shared/data/mnist [--n 2048]
"""
from __future__ import annotations

import argparse
import io
import os
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnn_edge.training.data import load_split  # noqa: E402
from cnn_edge.distributed import stages  # noqa: E402
from cnn_edge.core.machine import machine_description  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--n", type=int, default=2048)
    args = ap.parse_args()

    import boto3
    from moto import server as moto_server
    from PIL import Image

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port())
    server.start()
    try:
        host, port = server._server.server_address[:2]
        os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "testing",
                           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                           "AWS_EC2_METADATA_DISABLED": "true"})
        client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        client.create_bucket(Bucket="bench")
        test = load_split("test", args.data_dir)
        for i in range(args.n):
            buf = io.BytesIO()
            Image.fromarray(test.images[i]).save(buf, "PNG")
            client.put_object(Bucket="bench", Key=f"png/{i:05d}.png", Body=buf.getvalue())
        paths = [f"s3://bench/png/{i:05d}.png" for i in range(args.n)]
        stages.read_all(paths[:8])  # the filesystem made and cached, as in a warm task
        rates = {}
        default = stages.READS_IN_FLIGHT
        for in_flight in (1, default):
            stages.READS_IN_FLIGHT = in_flight
            start = time.perf_counter()
            for i in range(0, len(paths), 256):
                got = stages.read_all(paths[i : i + 256])
                assert all(error == "" for _, error in got), got[0]
            rates[in_flight] = len(paths) / (time.perf_counter() - start)
        stages.READS_IN_FLIGHT = default
    finally:
        server.stop()
    print(f"{machine_description()}; {args.n:,} MNIST PNGs on moto's S3 server (loopback), batches of 256")
    for in_flight, rate in rates.items():
        print(f"{in_flight:>3} read(s) in flight: {rate:>8,.0f} objects/s")
    print(f"ratio: {rates[default] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
