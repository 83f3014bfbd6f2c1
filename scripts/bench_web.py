"""The demo page in headless Chromium: time to the first prediction, and parity, per model.

Serves the page as `cnn-edge demo` does, opens it --runs times in a fresh browser each
(examples/node/browser_check.js: Debian's chromium via playwright-core), and prints the times
since navigation start at which the ONNX Runtime Web session was ready and the first prediction
came back, with the test-vector verdict; then the same test vectors in Node.js.

    python scripts/bench_web.py --runs 5
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnn_edge.runtime.demo import make_server  # noqa: E402

NODE_DIR = REPO / "examples" / "node"


def main() -> None:
    ap = argparse.ArgumentParser(description="demo page timing and parity")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    print(f"{'model':<22} {'session ms':>16} {'first prediction ms':>22} {'vectors':>9} {'max abs diff':>13} drawn")
    for name in ("mnist_cnn.onnx", "mnist_cnn.int8.onnx"):
        server = make_server(REPO / "exports" / name, port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        runs = []
        for _ in range(args.runs):
            out = subprocess.run(["node", "browser_check.js", url], cwd=NODE_DIR, capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout))
        server.shutdown()
        server.server_close()
        first = [r["firstPredictionMs"] for r in runs]
        session = [r["sessionMs"] for r in runs]
        drawn = sum(d["predicted"] == d["digit"] for r in runs for d in r["drawn"])
        total = sum(len(r["drawn"]) for r in runs)
        v = runs[-1]["vectors"]
        print(f"{name:<22} {statistics.median(session):>7.0f} ({min(session):.0f}-{max(session):.0f}) "
              f"{statistics.median(first):>10.0f} ({min(first):.0f}-{max(first):.0f}) "
              f"{'pass' if all(r['vectors']['pass'] for r in runs) else 'FAIL':>9} {v['maxAbsDiff']:>13.2e} {drawn}/{total}")
    node = subprocess.run(["node", "--test", "test/vectors.test.js"], cwd=NODE_DIR, capture_output=True, text=True)
    for line in node.stdout.splitlines():
        if line.startswith("# {"):
            r = json.loads(line[2:])
            print(f"node.js {r['file']:<22} top-1 agreement {r['agreement']:.0%}, max abs diff {r['maxAbsDiff']:.2e}, "
                  f"{'pass' if r['pass'] else 'FAIL'}")


if __name__ == "__main__":
    main()
