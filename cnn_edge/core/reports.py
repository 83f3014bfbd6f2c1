"""Reports as JSON: the one place where the typed reports of every stage become JSON. Torch-free.

Stages return dataclasses (TrainResult, ValidationReport, QuantReport, PipelineSummary,
CompareReport, PredictSummary, BenchReport...). `to_jsonable` turns one into plain JSON values:
dataclasses into objects (their fields, plus the properties named in `json_properties`), paths
into strings, tuples into lists, numpy values into numbers, and non-finite floats into null, since
JSON has no NaN.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from pathlib import Path, PurePath

from .files import atomic_write_text


def to_jsonable(obj):
    """Plain JSON values (dict, list, str, int, float, bool, None) for a report."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out = {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
        for name in getattr(obj, "json_properties", ()):
            out[name] = to_jsonable(getattr(obj, name))
        return out
    if isinstance(obj, enum.Enum):
        return to_jsonable(obj.value)
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # numpy scalars and arrays
        return to_jsonable(obj.tolist())
    raise TypeError(f"cannot write a {type(obj).__name__} into a JSON report")


def dumps(obj) -> str:
    """Indented JSON text of a report (never NaN: see to_jsonable)."""
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False)


def write_json(path: Path, obj) -> None:
    """Write a report as JSON, atomically."""
    atomic_write_text(Path(path), dumps(obj) + "\n")


def from_jsonable(cls, value):
    """A typed report back from what to_jsonable wrote (a released pipeline.json, say): dataclasses,
    lists, tuples, dicts, optionals and paths, by the annotations of `cls`."""
    if value is None:
        return None
    origin, args = typing.get_origin(cls), typing.get_args(cls)
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        return cls(**{f.name: from_jsonable(hints[f.name], value[f.name])
                      for f in dataclasses.fields(cls) if f.name in value})
    if origin in (typing.Union, types.UnionType):
        return from_jsonable(next(a for a in args if a is not type(None)), value)
    if origin in (list, tuple):
        items = [from_jsonable(args[0] if args else object, v) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        return {k: from_jsonable(args[1], v) for k, v in value.items()}
    if cls in (Path, PurePath):
        return Path(value)
    return value
