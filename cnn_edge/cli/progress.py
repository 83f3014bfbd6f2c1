"""The one place progress bars come from (the CLI's side; library code only calls back)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


@contextmanager
def training_bar(*, enabled: bool = True) -> Iterator:
    """A callback for train(progress=...) (a StepProgress per step) that drives one rich bar per epoch on stderr."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}  {task.fields[ips]:.0f} img/s"),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        tasks: dict[int, int] = {}

        def update(p) -> None:
            if p.epoch not in tasks:
                tasks[p.epoch] = bar.add_task("train", total=p.steps, epoch=f"{p.epoch}/{p.epochs}", loss=0.0, acc=0.0, ips=0.0)
            bar.update(tasks[p.epoch], completed=p.step, loss=p.loss, acc=p.accuracy, ips=p.images_per_second)

        yield update


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
