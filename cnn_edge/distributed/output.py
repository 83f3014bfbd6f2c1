"""-o for `--engine ray`, checked before any work: a run that cannot write its rows is refused in
one line (exit 2) before a cluster starts or an image is read, not after every image was done.

Local folders: a probe file created and removed in the folder (or its parent, where the folder is
made with the first part file); that is the file system's own answer, read-only mounts, quotas
and ACLs included. Object stores: the bucket must exist, then a probe object is written and
deleted under the prefix (its hidden name is skipped by every reader, should the delete fail).
"""
from __future__ import annotations

import os
import tempfile
import uuid

from ..core.errors import ConfigError, OutputPathError, first_line
from ..prediction.inputs import is_uri

PROBE_PREFIX = ".cnn-edge-probe-"
PARQUET_SUFFIX = ".parquet"


def one_results_file(output: str) -> bool:
    """Whether -o names one results file (.csv, .jsonl, ...: the local engine's kind) rather than a
    folder of part files. The Ray engine's rows reach the driver, which writes either; a results
    file on an object store, or a single .parquet file, is refused (name a folder or prefix)."""
    from pathlib import PurePosixPath

    from ..prediction.rows import EXTENSIONS

    suffix = PurePosixPath(output).suffix.lower()
    if suffix == PARQUET_SUFFIX or (suffix in EXTENSIONS and is_uri(output)):
        raise ConfigError(f"-o {output}: --engine ray writes {'Parquet' if suffix == PARQUET_SUFFIX else 'an object store'} "
                          f"as a folder of part files; pass a folder (-o {output.rsplit('.', 1)[0]}/), or a local "
                          f".csv or .jsonl file for one results file")
    return suffix in EXTENSIONS


def endpoint() -> str:
    """Where S3 requests go, for messages: AWS_ENDPOINT_URL(_S3), else AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "the default AWS endpoint"


def missing_bucket(uri: str) -> str:
    bucket = uri.partition("://")[2].split("/", 1)[0]
    where = f" at {endpoint()}" if uri.startswith("s3://") else ""
    return f"bucket {bucket} does not exist (or is not reachable{where})"


def check_writable_output(output: str) -> None:
    """Raise OutputPathError (exit 2) when -o (a local folder or a URI prefix) cannot take files."""
    if is_uri(output):
        _check_uri(output)
        return
    folder = os.path.abspath(output)
    target = folder if os.path.isdir(folder) else os.path.dirname(folder)
    if not os.path.isdir(target):
        return  # PartFolder names the missing parent itself
    try:
        fd, probe = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=target)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputPathError(f"cannot write to -o {output}: {exc.strerror or first_line(exc)} ({target}); "
                              f"choose a folder you can write") from None


def _check_uri(output: str) -> None:
    import fsspec

    try:
        fs, root = fsspec.core.url_to_fs(output)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"cannot write -o {output}: {first_line(exc)}") from None
    bucket = root.split("/", 1)[0]
    try:
        fs.invalidate_cache()
        if not fs.exists(bucket):
            raise ConfigError(missing_bucket(output))
        probe = f"{root.rstrip('/')}/{PROBE_PREFIX}{uuid.uuid4().hex[:8]}"
        fs.pipe_file(probe, b"")
        fs.rm_file(probe)
    except ConfigError:
        raise
    except Exception as exc:  # access denied, no credentials, no network
        raise OutputPathError(f"cannot write to -o {output}: {first_line(exc)}") from None
