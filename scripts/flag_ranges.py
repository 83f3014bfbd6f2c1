"""Write the class ranges of predict's unlike_mnist flag (cnn_edge/core/flag_rule.json) from MNIST.

Every one of MNIST's 60,000 training digits goes through preprocessing mnist-v1 (what the model
sees for an MNIST-like picture), then runtime.flags.input_features; for each class (the digit's
true label) and statistic, the range kept is [the 0.1th percentile, the 99.9th], each an actual
value of the data (numpy's inverted_cdf), so at most 0.1 % of the class's digits lie below it and
at most 0.1 % above. The file's other fields (the low_confidence threshold, the ink level) are
kept as they are.

    python scripts/flag_ranges.py --data-dir ../shared/data/mnist           # rewrite the file
    python scripts/flag_ranges.py --data-dir ../shared/data/mnist --check   # exit 1 if it differs
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PERCENTILES = (0.1, 99.9)


def class_ranges(images: np.ndarray, labels: np.ndarray, ink_level: float) -> dict[str, list[list[int]]]:
    """(N, 28, 28) MNIST digits and their labels -> {statistic: [[lo, hi] for each class]}."""
    from cnn_edge.core.contract import PREPROCESSING_V1
    from cnn_edge.runtime.flags import input_features
    from cnn_edge.runtime.preprocess import preprocess_batch

    inputs, errors = preprocess_batch(images, PREPROCESSING_V1)
    assert not any(errors)
    features = input_features(inputs, ink_level)
    classes = range(int(labels.max()) + 1)
    return {name: [[int(np.percentile(value[labels == c], p, method="inverted_cdf")) for p in PERCENTILES]
                   for c in classes] for name, value in features.items()}


def rule_json(current: dict, ranges: dict) -> str:
    out = {key: current[key] for key in ("format", "low_confidence_below", "ink_level")}
    out["how"] = current.get("how", "")
    out["made_by"] = ("python scripts/flag_ranges.py: MNIST's 60,000 training digits through mnist-v1; per class "
                      f"(the true label) and statistic, [percentile {PERCENTILES[0]}, percentile {PERCENTILES[1]}] "
                      "(numpy inverted_cdf)")
    # One statistic per line, its ten classes' [lo, hi] in order: a reviewer reads it as a table.
    rows = ",\n".join(f'  "{name}": {json.dumps(pairs)}' for name, pairs in ranges.items())
    return json.dumps(out, indent=1)[:-2] + ',\n "class_ranges": {\n' + rows + "\n }\n}\n"

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = ap.parse_args()
    from cnn_edge.core.flag_rule import RULE_FILE
    from cnn_edge.training.data import load_split

    current = json.loads(RULE_FILE.read_text())
    train = load_split("train", args.data_dir)
    ranges = class_ranges(train.images, train.labels, float(current["ink_level"]))
    if args.check:
        same = ranges == current["class_ranges"]
        print("flag_rule.json's class ranges are " + ("MNIST's" if same else f"not MNIST's: {ranges}"))
        sys.exit(0 if same else 1)
    RULE_FILE.write_text(rule_json(current, ranges))
    print(f"wrote {RULE_FILE}")
