"""Imported by Ray's worker processes in tests/test_ray_poison.py (not a test module): decoding a
file whose bytes carry POISON kills the process, as a decoder crash or the OOM killer would."""
import os
import signal


def install() -> None:
    from cnn_edge.runtime import preprocess

    real = preprocess.preprocess_many

    def poisoned(source) -> bool:  # bytes read from a store, or a local path the decoder opens
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                return b"POISON" in f.read()
        return isinstance(source, bytes) and b"POISON" in source

    def dies_on_poison(sources, *args, **kwargs):
        if any(poisoned(s) for s in sources):
            os.kill(os.getpid(), signal.SIGKILL)
        return real(sources, *args, **kwargs)

    preprocess.preprocess_many = dies_on_poison
