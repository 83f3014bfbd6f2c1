"""The summary `predict` prints at the end, whichever engine ran it."""
from __future__ import annotations

import json
from typing import Optional

import typer

from ..core.reports import dumps, to_jsonable
from .app import plural

# Exit code of `predict` when it finished but some inputs could not be classified.
EXIT_SOME_FAILED = 3


def print_summary(summary, output: Optional[str], *, as_json: bool, rows_on_stdout: bool) -> None:
    """One line (or JSON) on stdout, on stderr when the rows went to stdout."""
    if as_json:
        if output is None:  # the rows went to stdout as JSONL: the summary is their last line
            typer.echo(json.dumps({"summary": to_jsonable(summary)}))
        else:
            typer.echo(dumps(summary), err=rows_on_stdout)
        return
    where = f" -> {output}" if output is not None and not rows_on_stdout else ""
    skipped = f", {summary.skipped:,} already done" if summary.skipped else ""
    reasons = ", ".join(f"{n:,} {reason}" for reason, n in summary.flags.items() if n)
    flagged = f" ({summary.flagged:,} flagged: {reasons})" if summary.flagged else ""
    typer.echo(f"{plural(summary.files, 'file')}: {summary.ok:,} ok{flagged}, {summary.failed:,} failed{skipped}; "
               f"{summary.images_per_second:,.0f} images/s on {summary.provider}"
               f"{f' ({summary.precision})' if summary.precision else ''} "
               f"({plural(summary.workers, 'worker')}){where}", err=rows_on_stdout)
