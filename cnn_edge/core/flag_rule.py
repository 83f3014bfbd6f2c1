"""Which classified rows are flagged for a person to look at: the rule, declared once. Torch-free.

The numbers live in core/flag_rule.json, which Python (runtime/flags.py) and JavaScript
(cnn_edge/web/flags.js, through examples/node/lib.js) both read, so both flag the same rows.
scripts/flag_ranges.py writes its class ranges from MNIST's training digits and says how.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

RULE_FILE = Path(__file__).with_name("flag_rule.json")
FORMAT = "cnn-edge-flag-rule/1"
# The reasons, in the order a flag joins them ('+'): a row can be both.
LOW_CONFIDENCE = "low_confidence"
UNLIKE_MNIST = "unlike_mnist"
REASONS = (LOW_CONFIDENCE, UNLIKE_MNIST)


@dataclass(frozen=True)
class FlagRule:
    """low_confidence below `low_confidence_below` (the default of --flag-below); unlike_mnist when
    a statistic of the input (runtime.flags.input_features, ink = pixels at `ink_level` or more)
    lies outside [lo, hi] of the class the row was given: `ranges[name][class] = (lo, hi)`."""

    low_confidence_below: float
    ink_level: float
    ranges: dict[str, tuple[tuple[int, int], ...]]

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(self.ranges)

    def bounds(self, name: str, n_classes: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(lo per class, hi per class) of a statistic; for a model of another class count than
        the rule's, one range: the union over every class."""
        pairs = self.ranges[name]
        if n_classes != len(pairs):
            pairs = ((min(lo for lo, _ in pairs), max(hi for _, hi in pairs)),)
        return tuple(lo for lo, _ in pairs), tuple(hi for _, hi in pairs)


def load_rule(path: Path = RULE_FILE) -> FlagRule:
    data = json.loads(Path(path).read_text())
    assert data["format"] == FORMAT, data["format"]  # our own file, shipped with the package
    return FlagRule(float(data["low_confidence_below"]), float(data["ink_level"]),
                    {name: tuple((int(lo), int(hi)) for lo, hi in pairs) for name, pairs in data["class_ranges"].items()})


FLAG_RULE = load_rule()
