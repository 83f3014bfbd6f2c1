"""The `cnn-edge` typer app: shared options, choices, JSON output and the error-to-exit-code mapping.

Command modules (training, onnx_files, runtime, compare) import this one and register their
commands on `app`; this module imports none of them. Heavy libraries (torch, onnxruntime) are
imported inside the commands that need them, so `--help` and `info` answer at once.
"""
from __future__ import annotations

import enum
import functools
from typing import Iterable

import typer

from ..errors import CnnEdgeError, ParityError
from ..reports import dumps

app = typer.Typer(
    add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Train the spec MNIST CNN, export it to ONNX, validate it, and run it anywhere.",
)

# Exit codes every command shares (predict adds EXIT_SOME_FAILED).
EXIT_PARITY_FAILED = ParityError.exit_code
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def choices(name: str, values: Iterable[str]) -> type[enum.Enum]:
    """An Enum of the library's declared choices, so that --help lists them and typer refuses
    anything else. Commands pass `.value` on to the library."""
    return enum.Enum(name, {v: v for v in values}, type=str)


def fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def handle_errors(fn):
    """Our errors become one line on stderr and their exit code; Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CnnEdgeError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except OSError as exc:  # disk full, permissions changed mid-run: still one line
            raise fail(f"{exc.strerror or exc} ({exc.filename or 'file system'})", EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            raise fail("interrupted; rerun the same command with --resume to continue where it stopped",
                       EXIT_INTERRUPTED) from None

    return wrapper


def print_json(report) -> None:
    """A report (dataclass, dict or list) as JSON on stdout, through reports.py."""
    typer.echo(dumps(report))


def stage_printer(enabled: bool):
    """`on_stage` for the long jobs: '== train' etc. on stderr, or nothing."""
    return (lambda stage: typer.echo(f"== {stage}", err=True)) if enabled else (lambda stage: None)


DataDirOpt = typer.Option(None, "--data-dir", help="MNIST folder (4 IDX files, gzipped or not). Default: $CNN_EDGE_DATA, then ./datasets (downloaded).")
JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="No progress bar.")
