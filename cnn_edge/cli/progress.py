"""The one place progress bars come from (the CLI's side; library code only calls back)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

# How many steps of the first epoch time the estimate of the whole run, after how many warm-up steps
# (the first steps pay one-time costs: thread pools, allocations; timed with them, a 2-core run's
# estimate said 4m45s per epoch for epochs of 30-93 s).
ESTIMATE_AFTER_STEPS = 20
WARMUP_STEPS = 5


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class TrainingProgress:
    """Callbacks for train(progress=..., on_epoch_end=...): in a terminal, one rich bar per epoch
    (loss, accuracy, images/s, and the epoch's validation accuracy once it is known); elsewhere (a
    log file, a pipe), plain lines, flushed at once: an estimate after the first steps, then one line
    per epoch with validation accuracy, epoch time, elapsed time and ETA."""

    def __init__(self, epochs: int, bar=None):
        import sys
        import time

        self.epochs, self._bar, self._tasks, self._out = epochs, bar, {}, sys.stderr
        self._time = time.perf_counter
        self._start, self._estimated = self._time(), False

    def _say(self, line: str) -> None:
        self._out.write(line + "\n")
        self._out.flush()

    _first_epoch = 1  # a resumed run starts later: the ETA counts the epochs this process ran

    def step(self, p) -> None:
        if p.step == 1 and (p.epoch == 1 or not self._estimated):  # a new run (compare trains several)
            self._first_epoch, self._start, self._estimated = p.epoch, self._time(), False
            self._warm, self._warm_step = self._start, 0
        warmup = WARMUP_STEPS if p.steps > WARMUP_STEPS + ESTIMATE_AFTER_STEPS else 0
        if not self._estimated and p.epoch == self._first_epoch and p.step == warmup:
            self._warm, self._warm_step = self._time(), p.step  # the clock starts past the warm-up
        if self._bar is not None:
            if p.epoch not in self._tasks:
                self._tasks[p.epoch] = self._bar.add_task("train", total=p.steps, epoch=f"{p.epoch}/{p.epochs}",
                                                          loss=0.0, acc=0.0, ips=0.0, val="")
            self._bar.update(self._tasks[p.epoch], completed=p.step, loss=p.loss, acc=p.accuracy, ips=p.images_per_second)
        if not self._estimated and p.step == min(warmup + ESTIMATE_AFTER_STEPS, p.steps):
            self._estimated = True
            timed = p.step - self._warm_step
            per_epoch = (self._time() - self._warm) / max(timed, 1) * p.steps
            self._estimate = per_epoch
            remaining = p.epochs - p.epoch + 1
            where = f"steps {self._warm_step + 1}-{p.step}, after {self._warm_step} warm-up steps" if self._warm_step \
                else f"the first {p.step} steps"
            self._say(f"estimate: about {_clock(per_epoch)} per epoch, {_clock(per_epoch * remaining)} for "
                      f"{remaining} epoch(s) (measured on {where}; corrected when the first epoch ends)")

    def epoch_end(self, model, r) -> None:
        elapsed = self._time() - self._start
        val = "" if r.val_accuracy is None else f"{r.val_accuracy:.2%}"
        if self._bar is not None and r.epoch in self._tasks:
            self._bar.update(self._tasks[r.epoch], val=f"  val {val}" if val else "")
            return
        done = r.epoch - self._first_epoch + 1
        estimate = getattr(self, "_estimate", None)
        if done == 1 and estimate and abs(r.seconds - estimate) > 0.2 * estimate and r.epoch < self.epochs:
            self._say(f"estimate corrected: the first epoch took {_clock(r.seconds)} (estimated {_clock(estimate)}); "
                      f"about {_clock(r.seconds * (self.epochs - r.epoch))} for the {self.epochs - r.epoch} left")
        self._say(f"epoch {r.epoch}/{self.epochs}: loss {r.train_loss:.4f}  train acc {r.train_accuracy:.2%}"
                  + (f"  val acc {val}" if val else "") + f"  {r.seconds:.0f} s  elapsed {_clock(elapsed)}"
                  f"  ETA {_clock(elapsed / done * (self.epochs - r.epoch))}")


@contextmanager
def training_progress(*, epochs: int, enabled: bool = True) -> Iterator:
    """A TrainingProgress (or None when disabled): a live bar on a terminal, plain lines elsewhere."""
    import sys

    if not enabled:
        yield None
        return
    if not sys.stderr.isatty():
        yield TrainingProgress(epochs)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}{task.fields[val]}  "
                          "{task.fields[ips]:.0f} img/s"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        yield TrainingProgress(epochs, bar)


@contextmanager
def status(message: str, *, enabled: bool = True) -> Iterator[None]:
    """A spinner for steps without a known length (export, validation)."""
    if not enabled:
        yield
        return
    from rich.console import Console

    with Console(stderr=True).status(message):
        yield


@contextmanager
def count_bar(total: int, label: str, *, enabled: bool = True) -> Iterator:
    """A bar over `total` items on stderr; yields advance(n, **fields) (a no-op when disabled)."""
    if not enabled:
        yield lambda n, **fields: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn(label), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[failed]} failed  {task.fields[ips]:.0f} img/s"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=total, failed=0, ips=0.0)
        yield lambda n, **fields: bar.update(task, advance=n, **fields)
