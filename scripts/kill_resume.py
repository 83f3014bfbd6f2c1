"""Kill `cnn-edge predict` with SIGKILL at random moments, resume each time, and check that the
final results file equals an uninterrupted run's, row for row and in the same order.

    python scripts/kill_resume.py [--kills 20] [--files 2000] [--seed 0] [--format csv]

Each run is started in its own process group and the whole group is killed (the main process and
its decoding workers), as a crash, the OOM killer or a pulled plug would end it. The next run
passes --resume. Prints the kill times and the verdict; exit code 0 when every comparison held.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from hostile_files import digit  # noqa: E402

CLI = [sys.executable, "-m", "cnn_edge", "predict"]
MODEL = REPO / "exports" / "mnist_cnn.int8.onnx"


def write_inputs(folder: Path, n: int) -> None:
    """n digit PNGs, with a broken file every 97th so error rows are resumed too."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"{i:06d}.png"
        if i % 97 == 13:
            path.write_bytes(b"not a picture")
        else:
            Image.fromarray(digit(i, 28)).save(path)


def predict(args: list[str], out: Path, resume: bool, timeout: float = 600) -> subprocess.Popen:
    cmd = [*CLI, str(MODEL), *args, "-o", str(out), "-q", "--batch-size", "64"] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _timed(args: list[str], out: Path) -> float:
    t0 = time.perf_counter()
    proc = predict(args, out, resume=False)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, 3), err.decode()[-2000:]
    return time.perf_counter() - t0


def kill_and_resume(inputs: Path, out: Path, kills: int, seed: int) -> dict:
    """Returns {"kills": [seconds...], "killed": n, "equal": bool, "rows": n, "reference_rows": n}.

    Each run is killed at a random moment between its start and the time it needs for about 1.5/kills
    of the work after start-up, so that every kill lands while the run is working, and the kills
    together cover the whole input."""
    reference = out.with_name("reference" + out.suffix)
    startup = _timed([str(next(inputs.iterdir()))], out.with_name("one" + out.suffix))
    duration = _timed([str(inputs)], reference)
    rng = np.random.default_rng(seed)
    moments, killed = [], 0
    for _ in range(kills):
        delay = float(rng.uniform(0.05, startup + 1.5 * max(duration - startup, 0.1) / kills))
        moments.append(round(delay, 3))
        proc = predict([str(inputs)], out, resume=True)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
        else:
            assert proc.returncode in (0, 3), proc.stderr.read().decode()[-2000:]
    proc = predict([str(inputs)], out, resume=True)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode in (0, 3), err.decode()[-2000:]
    final, want = out.read_bytes(), reference.read_bytes()
    return {"kills": moments, "killed": killed, "equal": final == want, "rows": final.count(b"\n"),
            "reference_rows": want.count(b"\n"), "uninterrupted_seconds": round(duration, 2),
            "startup_seconds": round(startup, 2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnn-edge-kill-") as tmp:
        write_inputs(Path(tmp) / "in", args.files)
        result = kill_and_resume(Path(tmp) / "in", Path(tmp) / f"results.{args.format}", args.kills, args.seed)
    print(f"{args.files:,} files, uninterrupted run {result['uninterrupted_seconds']} s; killed {result['killed']} of "
          f"{args.kills} runs with SIGKILL at {result['kills']} s, then resumed")
    print(f"final file: {result['rows']:,} lines, reference {result['reference_rows']:,}; "
          f"{'EQUAL to the uninterrupted run' if result['equal'] else 'DIFFERENT from the uninterrupted run'}")
    return 0 if result["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
