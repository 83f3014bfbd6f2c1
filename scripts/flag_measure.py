"""What predict's `flag` column flags: MNIST's test digits, cluttered desk photos, pictures that are not digits.

For each set, model and preprocessing: the rows, the error rows (no digit found, blank), the
classified rows flagged (by reason), and above all the rows read wrong with a confidence of 0.95
or more that are NOT flagged, which a user routing flagged rows to a person would take as right
(at --flag-below's default, 0.95, every unflagged wrong row is one).
MNIST's test digits also get the accuracy of unflagged and of flagged rows.

    python scripts/flag_measure.py OUT_DIR --data-dir ../shared/data/mnist --desk-count 200 --desk-seed 3 \\
        --non-digit-count 100 --non-digit-seed 5

writes the photos (scripts/desk_photos.py) and the pictures (scripts/non_digits.py) into OUT_DIR,
and prints a Markdown table. The rows' flags are the runtime's own (Predictor.predict_prepared:
runtime/flags.py at --flag-below's default), on the inputs the runtime's preprocessing makes.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CONFIDENT = 0.95
MODELS = ("exports/mnist_cnn.int8.onnx", "exports/mnist_cnn.onnx")


def measure(name: str, model: str, version: str, inputs: np.ndarray, errors: list[str], truth: np.ndarray) -> dict:
    """One line of the table: `truth` the true class of each row, -1 where there is no digit to read
    (every classified row of such a picture is wrong)."""
    from cnn_edge.core.flag_rule import REASONS
    from cnn_edge.runtime.predictor import Predictor

    ok = np.array([not e for e in errors])
    predictions = Predictor(model, preprocessing=version).predict_prepared(inputs[ok]) if ok.any() else []
    label = np.array([int(p.label) for p in predictions], int)
    confidence = np.array([p.confidence for p in predictions])
    flagged = np.array([bool(p.flag) for p in predictions], bool)
    right = label == truth[ok]
    reasons = Counter(r for p in predictions if p.flag for r in p.flag.split("+"))
    row = {"set": name, "model": Path(model).name, "preprocessing": version, "rows": len(errors),
           "error_rows": int((~ok).sum()), "classified": int(ok.sum()), "flagged": int(flagged.sum()),
           **{r: reasons[r] for r in REASONS}, "right": int(right.sum()),
           "wrong_unflagged": int((~right & ~flagged).sum()),
           "wrong_at_0.95_unflagged": int((~right & ~flagged & (confidence >= CONFIDENT)).sum())}
    if (truth >= 0).all() and ok.any():
        row["accuracy_unflagged"] = float(right[~flagged].mean()) if (~flagged).any() else None
        row["accuracy_flagged"] = float(right[flagged].mean()) if flagged.any() else None
    return row


def threshold_curve(model: str, images: np.ndarray, labels: np.ndarray,
                    thresholds=(0.8, 0.9, 0.95, 0.97, 0.99)) -> list[str]:
    """How --flag-below was chosen: on held-out digits (the validation split the release trained
    without), the share of rows each threshold flags and how many of the model's errors it leaves
    unflagged (unlike_mnist included)."""
    from cnn_edge.core.contract import PREPROCESSING_V1
    from cnn_edge.runtime.predictor import Predictor
    from cnn_edge.runtime.preprocess import preprocess_batch

    inputs, _ = preprocess_batch(images, PREPROCESSING_V1)
    lines = []
    for below in thresholds:
        predictions = Predictor(model, flag_below=below).predict_prepared(inputs)
        flagged = np.array([bool(p.flag) for p in predictions])
        wrong = np.array([int(p.label) for p in predictions]) != labels
        lines.append(f"--flag-below {below}: {flagged.mean():.2%} of {len(labels):,} flagged, "
                     f"{int((wrong & ~flagged).sum())} of {int(wrong.sum())} errors unflagged")
    return lines


def table(rows: list[dict]) -> str:
    def pct(n: int, d: int) -> str:
        return f"{n} ({100 * n / d:.1f} %)" if d else "0"

    lines = ["| set | preprocessing | model | rows | error rows | classified | flagged | low_confidence | unlike_mnist "
             "| read right | wrong at >= 0.95, unflagged |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['set']} | {r['preprocessing']} | {r['model'].replace('mnist_cnn.', '').replace('.onnx', '') or 'fp32'} "
                     f"| {r['rows']} | {r['error_rows']} | {r['classified']} | {pct(r['flagged'], r['classified'])} "
                     f"| {r['low_confidence']} | {r['unlike_mnist']} | {r['right']} | {r['wrong_at_0.95_unflagged']} |")
    return "\n".join(lines).replace("| onnx |", "| fp32 |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--data-dir")
    ap.add_argument("--desk-count", type=int, default=200)
    ap.add_argument("--desk-seed", type=int, default=3)
    ap.add_argument("--non-digit-count", type=int, default=100, help="pictures of each kind")
    ap.add_argument("--non-digit-seed", type=int, default=5)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    args = ap.parse_args()

    from cnn_edge.core.contract import PREPROCESSING_V1, PREPROCESSING_V2
    from cnn_edge.runtime.preprocess import preprocess_batch, preprocess_many
    from cnn_edge.training.data import load_split
    from desk_photos import label_of, make_desk_photos
    from non_digits import KINDS, kind_of, make_non_digits

    from cnn_edge.core.constants import DEFAULT_VAL_SIZE
    from cnn_edge.training.data import split_indices

    train = load_split("train", args.data_dir)
    _, held_out = split_indices(len(train.labels), DEFAULT_VAL_SIZE)
    for model in args.models:
        for line in threshold_curve(model, train.images[held_out], train.labels[held_out].astype(int)):
            print(f"validation split, {Path(model).name}: {line}")
    test = load_split("test", args.data_dir)
    desk = make_desk_photos(args.out / "desk", test.images, test.labels, args.desk_count, args.desk_seed)
    others = make_non_digits(args.out / "non_digits", args.non_digit_count, args.non_digit_seed)
    rows = []
    inputs, errors = preprocess_batch(test.images, PREPROCESSING_V1)  # 28x28 pictures: v2 leaves them to v1
    for model in args.models:
        rows.append(measure("MNIST test", model, PREPROCESSING_V1, inputs, errors, test.labels.astype(int)))
    for version in (PREPROCESSING_V1, PREPROCESSING_V2):
        inputs, errors = preprocess_many(desk, version=version)
        truth = np.array([label_of(f) for f in desk])
        for model in args.models:
            rows.append(measure("desk photos", model, version, inputs, errors, truth))
        inputs, errors = preprocess_many(others, version=version)
        kinds = np.array([kind_of(f) for f in others])
        for kind in KINDS:
            keep = np.flatnonzero(kinds == kind)
            for model in args.models:
                rows.append(measure(f"non-digits: {kind}", model, version, inputs[keep], [errors[i] for i in keep],
                                    np.full(len(keep), -1)))
    print(table(rows))
    for r in rows:
        if "accuracy_unflagged" in r:
            print(f"{r['set']}, {r['preprocessing']}, {r['model']}: accuracy of unflagged rows {r['accuracy_unflagged']:.4%}, "
                  f"of flagged rows {r['accuracy_flagged']:.2%} ({r['flagged']} flagged)")


if __name__ == "__main__":
    main()
