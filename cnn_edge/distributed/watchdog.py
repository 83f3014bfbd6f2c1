"""The local Ray cluster dies with the driver that started it, however the driver ends. Stdlib only.

Ray ties its GCS server and raylet to the driver (the kernel's parent-death signal), but not the
processes the raylet starts (dashboard and runtime-env agents, workers): after a `kill -9` of the
driver they linger until they notice, tens of seconds later. So a driver that starts a cluster
also starts this watchdog (`python -m cnn_edge.distributed.watchdog TOKEN TEMP_DIR DRIVER_PID`), in a session
of its own (Ctrl-C in the terminal does not reach it) and holding the read end of a pipe whose
write end only the driver has. When the pipe closes (the driver finished, or died) it kills every
process of this user whose environment holds CNN_EDGE_RAY_RUN=TOKEN (Ray's processes inherit the
driver's environment, workers through the raylet) or that has a file open in TEMP_DIR, the
cluster's session folder (its logs), then removes TEMP_DIR. Linux only (/proc); elsewhere it only removes the folder.
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time

ENV = "CNN_EDGE_RAY_RUN"  # the variable that marks the processes of one run's cluster


def _holds(pid: str, token: str, temp_dir: str) -> bool:
    """Whether process `pid` is the run's: ENV=token in its environment, or a file of temp_dir open
    (a Ray process that renames itself, "ray::IDLE", overwrites its environment's memory, but its
    logs are in the session folder)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            if f"{ENV}={token}".encode() in f.read().split(b"\0"):
                return True
        inside = temp_dir.rstrip("/") + "/"
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(inside):
                    return True
            except OSError:
                continue
    except OSError:  # gone meanwhile, or another user's
        pass
    return False


def marked(token: str, temp_dir: str, driver: int) -> list[int]:
    """The pids of the run's processes (_holds), other than this one and the driver (which keeps
    the session's log files open after shutting the cluster down)."""
    if not os.path.isdir("/proc"):
        return []
    return [int(e) for e in os.listdir("/proc")
            if e.isdigit() and int(e) not in (os.getpid(), driver) and _holds(e, token, temp_dir)]


def reap(token: str, temp_dir: str, driver: int, grace: float = 2.0) -> None:
    """SIGTERM the marked processes, SIGKILL what is left after `grace` seconds, remove temp_dir."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = marked(token, temp_dir, driver)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace
        while pids and marked(token, temp_dir, driver) and time.monotonic() < deadline:
            time.sleep(0.1)
    shutil.rmtree(temp_dir, ignore_errors=True)


def main(argv: list[str]) -> None:
    token, temp_dir, driver = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()  # until the driver's end of the pipe closes: it finished or died
    reap(token, temp_dir, int(driver))


if __name__ == "__main__":
    main(sys.argv[1:])
