"""A release: the files it holds, its record (pipeline.json, a PipelineSummary) and its model card.

The main job (pipeline.py) and `pipeline --requantize` (requantize.py) write releases through
`publish` alone: each released file copied in atomically, then its size and hash in the record, then
the record, then the card rendered from it. Torch-free.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from ..core import artifacts
from ..core.arch import DESCRIPTIONS, NAMED, arch_option, resolve_arch
from ..core.artifacts import int8_file, model_name
from ..core import contract as C
from ..core.constants import SPEC_ARCH
from ..core.errors import ConfigError
from ..core.files import atomic_write_bytes, atomic_write_text, sha256_file
from ..core.reports import from_jsonable, write_json
from ..training.recipes import TrainConfig
from ..training.train import TrainResult
from .calibrate import MAX_TEMPERATURE, MIN_TEMPERATURE, TemperatureFit
from .export import ExportReport
from .quantize import QuantReport, portable_format
from .validate import ValidationReport

# The version of pipeline.json's layout (docs/reports.md). 2: typed reports, `schema` field. 3: a
# release may hold fp32 alone (`int8_not_released`; `quantization` and `int8_validation` then null).
SCHEMA = "cnn-edge-pipeline/3"


@dataclass
class ReleasedFile:
    name: str
    what: str
    size: int
    sha256: str


@dataclass
class PipelineSummary:
    """Everything one pipeline run measured: pipeline.json and the model card come from it."""

    schema: str
    arch: str
    params: int
    train: TrainConfig
    training: TrainResult
    export: ExportReport
    input: dict  # the contract's input: name, dtype, shape, range
    validation: ValidationReport  # fp32 ONNX against PyTorch
    quantization: Optional[QuantReport]  # None when quantization found no int8 model (int8_not_released says why)
    int8_validation: Optional[ValidationReport]
    machine: str
    tool_versions: dict[str, str]
    reproduce: str  # the command line that trains this again from scratch
    made: str  # the day it was released (ISO date); the model card says it
    files: list[ReleasedFile] = field(default_factory=list)
    int8_not_released: Optional[str] = None  # why no int8 model was released with this fp32 one (None: it was)
    layers: str = ""  # the canonical layer string (docs/architectures.md); a record made before it existed has none
    calibration: Optional[TemperatureFit] = None  # the temperature folded into the released network; None: not calibrated
    not_calibrated: Optional[str] = None  # why the released network is not calibrated; None when it is


def copy_in(out_dir: Path, staged: dict[str, tuple[Path, str]]) -> list[ReleasedFile]:
    """Copy the staged files (name -> (source, what it is)) into out_dir, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, (src, _) in staged.items():
        atomic_write_bytes(out_dir / name, src.read_bytes())
    return [_described(out_dir, name, what) for name, (_, what) in staged.items()]


def _described(out_dir: Path, name: str, what: str) -> ReleasedFile:
    return ReleasedFile(name, what, (out_dir / name).stat().st_size, sha256_file(out_dir / name))


def publish(out_dir: Path, summary: PipelineSummary) -> PipelineSummary:
    """Write the release's record: each listed file's size and hash as it is now on disk, then
    pipeline.json, then the model card. Returns the summary as written."""
    summary = replace(summary, files=[_described(out_dir, f.name, f.what) for f in summary.files])
    if not summary.layers and summary.arch in NAMED:  # a record from before layer strings (requantize)
        summary = replace(summary, layers=resolve_arch(summary.arch).spec)
    write_json(out_dir / artifacts.side_file(summary.arch, artifacts.SUMMARY_FILE), summary)
    atomic_write_text(out_dir / artifacts.side_file(summary.arch, artifacts.CARD_FILE), render_card(summary))
    return summary


def read_summary(release_dir: Path) -> PipelineSummary:
    """The pipeline.json of a release, typed; ConfigError naming it when absent or unreadable."""
    found = [p for p in Path(release_dir).glob(f"*{artifacts.SUMMARY_FILE}") if p.is_file()]
    if len(found) != 1:
        raise ConfigError(f"{release_dir} holds {len(found)} {artifacts.SUMMARY_FILE} files, not one: "
                          "give the folder a pipeline released into (--out-dir)")
    try:
        return from_jsonable(PipelineSummary, json.loads(found[0].read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{found[0]} is not a pipeline summary cnn-edge can read ({exc}); run the pipeline again") from None



# The model card: measured figures and the command that reproduces them.

def _what(s: PipelineSummary) -> list[str]:
    layers = s.layers or (resolve_arch(s.arch).spec if s.arch in NAMED else "")
    info = (f"Layers `{layers}`: `cnn-edge info --arch {arch_option(s.arch, layers)}` prints each layer's output "
            "shape, parameters and multiply-adds." if layers else "")
    if s.arch == SPEC_ARCH:
        return ["Handwritten digit classifier (MNIST, 10 classes), the spec CNN of cnn-edge:",
                "conv 32 3x3 - ReLU - conv 32 3x3 - ReLU - max pool 2 - conv 64 3x3 - ReLU - conv 64 3x3 - ReLU -",
                f"max pool 2 - flatten (7*7*64 = 3136) - FC 256 - ReLU - FC 10 - softmax; {s.params:,} trainable parameters.",
                *([info] if info else [])]
    what = f": {DESCRIPTIONS[s.arch]}" if s.arch in DESCRIPTIONS else ", a custom network"
    return [f"Handwritten digit classifier (MNIST, 10 classes), architecture `{s.arch}`{what}; "
            f"{s.params:,} trainable parameters.", *([info] if info else [])]


def _int8_section(s: PipelineSummary) -> list[str]:
    if s.int8_not_released:
        return ["## int8 model: not released", "", f"No int8 model met parity, even with layers kept in float: "
                f"{s.int8_not_released}. The fp32 model above is the release.", ""]
    q, par, cfg = s.quantization, s.int8_validation.parity, s.quantization.config
    return [
        f"## int8 model (`{int8_file(s.arch)}`)",
        "",
        f"Static quantization with ONNX Runtime. Format: {portable_format(cfg)}; made for "
        f"{', '.join(cfg.made_for)} (`--target {cfg.target}`"
        + ("; `cnn-edge quantize --target tensorrt` makes TensorRT's form" if cfg.target != "tensorrt" else "") + "). "
        f"{cfg.method.capitalize()} calibration on {cfg.calibration:,} training images; "
        f"accuracy guard on {q.guard.samples:,} held-out training images (drop {q.guard.drop_pp:.3f} points, "
        f"limit {q.guard.max_drop_pp:g}). Nodes kept in float: "
        + (", ".join(q.nodes_in_float) or "none (softmax always runs in float)") + ".",
        "",
        "| figure | fp32 | int8 |",
        "| --- | --- | --- |",
        f"| file size | {q.fp32_bytes:,} B | {q.int8_bytes:,} B ({q.size_ratio:.1%}) |",
        f"| test accuracy | {q.test.fp32_accuracy:.2%} | {q.test.int8_accuracy:.2%} (drop {q.test.drop_pp:.2f} points) |",
        f"| top-1 agreement with fp32 (test set) | | {q.test.top1_agreement:.2%} |",
        f"| top-1 agreement with PyTorch (batch 1, 7, 256) | 100% required | {par.top1_agreement:.2%} (≥ {par.min_top1_agreement:.2%} required) |",
        *_speed_rows(q),
        "",
        _speed_sentence(q, s.machine) + " Runtimes this model loads in "
        "(`cnn-edge validate --target`): " + ", ".join(
            f"{c.runtime} {'yes' if c.ok else 'no'}" for c in s.int8_validation.compatibility) + ".",
        "",
        "Per-activation SQNR of int8 against fp32 (dB, higher is better): "
        + ", ".join(f"{k} {val:.1f}" for k, val in q.layer_sqnr_db.items()) + ".",
        "",
    ]


def _speed_rows(q: QuantReport) -> list[str]:
    """The card's latency and throughput rows; a release quantized without timing says so in them
    rather than leaving them out, so every card has the same table."""
    if q.fp32_speed is None or q.int8_speed is None:
        return ["| latency batch 1, p50 | not measured | not measured |",
                "| throughput batch 256 | not measured | not measured |"]
    return [
        f"| latency batch 1, p50 | {q.fp32_speed.batch_1.p50_ms:.3f} ms | {q.int8_speed.batch_1.p50_ms:.3f} ms |",
        f"| throughput batch 256 | {q.fp32_speed.batch_256.images_per_second:,.0f} img/s | "
        f"{q.int8_speed.batch_256.images_per_second:,.0f} img/s ({q.throughput_ratio:.2f}x) |",
    ]


def _speed_sentence(q: QuantReport, machine: str) -> str:
    if q.fp32_speed is None or q.int8_speed is None:
        return "Speeds not measured (quantized with speed_seconds 0)."
    return f"Speeds measured with ONNX Runtime on {q.machine or machine}."


def _figures(s: PipelineSummary) -> list[str]:
    v, t, tr = s.validation, s.train, s.training
    par = v.parity
    val = "" if tr.best_val_accuracy is None else f"{tr.best_val_accuracy:.2%}"
    return [
        "| figure | value |",
        "| --- | --- |",
        f"| test accuracy, ONNX Runtime fp32 | {v.accuracy:.2%} ({v.samples:,} images) |",
        f"| test accuracy, PyTorch checkpoint | {par.torch_accuracy:.2%} |",
        f"| top-1 agreement ONNX Runtime vs PyTorch (batch {', '.join(str(r.batch_size) for r in par.per_batch_size)}) | {par.top1_agreement:.2%} |",
        f"| max abs diff of probabilities | {par.max_abs_diff_probabilities:.3g} (tolerance {par.tolerance:g}) |",
        f"| max abs diff of logits | {par.max_abs_diff_logits:.3g} (tolerance {par.tolerance:g}) |",
        *_ece_row(v),
        f"| selected epoch (best validation accuracy) | {tr.best_epoch} of {t.epochs} |",
        f"| validation accuracy of that epoch ({t.val_size:,} images held out of the training set) | {val} |",
        "",
        "Per-class test accuracy (ONNX Runtime): " + ", ".join(f"{i}: {a:.2%}" for i, a in enumerate(v.per_class_accuracy)),
        "",
    ]


def _ece_row(v: ValidationReport) -> list[str]:
    c = v.calibration
    if c is None:  # a record made before calibration was measured
        return []
    how = "not calibrated" if c.temperature is None else \
        f"temperature {c.temperature:g} folded in; {c.ece_uncalibrated:.2%} without it"
    return [f"| expected calibration error (top-1 confidence, {c.bins} bins) | {c.ece:.2%} ({how}) |"]


def _robustness(s: PipelineSummary) -> list[str]:
    """The calibration paragraph, and the table of the transformed test digits when the pipeline measured them."""
    fit = s.calibration
    if fit is not None:
        lines = [f"Confidence is calibrated: a temperature of {fit.temperature:g}, fitted on the {fit.samples:,} validation "
                 "images (the split training selected its epoch on) by minimising the negative log-likelihood, is folded "
                 "into the closing fc, so `logits` are the network's divided by it and `probabilities` their softmax in "
                 f"every runtime. On that split: NLL {fit.nll_before:.4f} before, {fit.nll_after:.4f} after; expected "
                 f"calibration error {fit.ece_before:.2%} before, {fit.ece_after:.2%} after."
                 + (" The fit stopped at an edge of the range it may choose "
                    f"({MIN_TEMPERATURE:g} to {MAX_TEMPERATURE:g}): the split asks for a temperature beyond it."
                    if fit.temperature in (MIN_TEMPERATURE, MAX_TEMPERATURE) else "")]
    else:
        lines = [f"Confidence is not calibrated: {s.not_calibrated or 'the release predates calibration'}."]
    fp32 = s.validation.robustness
    if fp32 is None:
        return ["## Calibration and robustness", "", *lines, "",
                "Robustness to transformed digits was not measured by the pipeline that made this release "
                "(`cnn-edge validate MODEL --robustness` measures it).", ""]
    int8 = s.int8_validation.robustness if s.int8_validation is not None else None
    lines += ["", f"MNIST test digits transformed and fed as they are ({fp32.samples:,} per transform, seed {fp32.seed}; "
              f"`cnn-edge validate MODEL --robustness`); ECE over {fp32.bins} bins:", "",
              "| transform | what | fp32 accuracy | fp32 ECE |" + (" int8 accuracy | int8 ECE |" if int8 else ""),
              "| --- | --- | --- | --- |" + (" --- | --- |" if int8 else "")]
    by_name = {t.transform: t for t in int8.transforms} if int8 else {}
    for t in fp32.transforms:
        row = f"| {t.transform} | {t.what} | {t.accuracy:.2%} | {t.ece:.2%} |"
        if int8 and t.transform in by_name:
            row += f" {by_name[t.transform].accuracy:.2%} | {by_name[t.transform].ece:.2%} |"
        lines.append(row)
    return ["## Calibration and robustness", "", *lines, ""]


def _limitations(s: PipelineSummary) -> list[str]:
    """What the model was made from and where it fails, from the record's own figures where it has them."""
    if s.export.preprocessing == C.PREPROCESSING_V1:
        pictures = ("Pictures reach it through preprocessing `mnist-v1` (its metadata names it): the bounding box of all "
                    "the ink. A photo with anything else in view (a desk, ruled lines, a second mark, a shadow) is often "
                    "misread, with no warning; `cnn-edge predict --preprocessing mnist-v2` finds the digit first and gives "
                    "a picture with no single digit an error row (docs/prediction.md).")
    else:
        pictures = (f"Pictures reach it through preprocessing `{s.export.preprocessing}` (its metadata names it): the one "
                    "digit-like mark of a cluttered photo, or an error row when it finds no single digit. It can still take "
                    "the wrong mark for the digit (docs/prediction.md measures it on desk photos).")
    fp32 = s.validation.robustness
    if s.calibration is not None:
        spread = "" if fp32 is None else (
            f" On the transformed digits above its ECE runs from {min(t.ece for t in fp32.transforms):.2%} to "
            f"{max(t.ece for t in fp32.transforms):.2%}.")
        confidence = (f"Confidence is calibrated on MNIST's validation split ({s.calibration.samples:,} images), not on "
                      "other data: on digits unlike MNIST's, a probability of 0.99 does not mean 99 in 100 are right." + spread)
    else:
        confidence = (f"Confidence is not calibrated ({s.not_calibrated or 'the release predates calibration'}): a "
                      "probability is the network's softmax, not a measured chance of being right.")
    if fp32 is not None:
        weakest = ("Weakest on the transformed test digits above (fp32, fed without preprocessing): " + ", ".join(
            f"{t.transform} {t.accuracy:.2%} (ECE {t.ece:.2%})" for t in fp32.weakest()) + ".")
    else:
        weakest = ("Rotated, shifted, scaled, thickened, thinned, blurred or noisy digits: not measured for this release "
                   "by its pipeline (docs/export-validation.md has the figures `validate --robustness` measured).")
    return [
        "## Limitations",
        "",
        "- Trained on MNIST alone: handwritten digits of about 250 writers (US Census Bureau employees and high-school "
        "students; the test set's are other writers), scanned, fitted into a 20x20 box and centred by their centre of "
        "mass in 28x28, light ink on a dark background. Anything else must be made to look like that first.",
        f"- {pictures}",
        f"- {confidence}",
        f"- {weakest}",
        "- It has no 'not a digit' answer: a letter, a symbol or a drawing gets one of the ten digits, with a probability "
        "that can be high" + (", unless the preprocessing finds no single digit in the picture (an error row)."
                              if s.export.preprocessing != C.PREPROCESSING_V1 else "."),
        "",
    ]


def _augmentation(t: TrainConfig) -> str:
    """The recipe's augmentation in words: every ingredient it turns on, none it leaves off."""
    if not t.augment:
        return "none"
    parts = [f"rotation ±{t.max_rotation:g}°", f"shift ±{t.max_shift:g} px", f"scale ±{t.max_scale:.0%}"]
    if t.max_shear:
        parts.append(f"shear ±{t.max_shear:g}°")
    if t.elastic_alpha:
        parts.append(f"elastic distortion (alpha {t.elastic_alpha:g}, sigma {t.elastic_sigma:g} px)")
    if t.stroke_prob:
        parts.append(f"stroke width (p {t.stroke_prob:g})")
    if t.erase_prob:
        parts.append(f"random erasing (p {t.erase_prob:g}, up to {t.erase_area:.0%} of the image)")
    if t.noise_prob:
        parts.append(f"pixel noise (p {t.noise_prob:g}, sigma up to {t.noise_sigma:g} grey levels)")
    return ", ".join(parts)


def _training(s: PipelineSummary) -> list[str]:
    t, tr = s.train, s.training
    lines = [
        "## Training",
        "",
        f"Recipe `{t.recipe}`: {t.epochs} epochs, batch {t.batch_size}, AdamW peak lr {t.lr:g}, "
        f"weight decay {t.weight_decay:g}, schedule {t.schedule}, augmentation {_augmentation(t)}"
        + (f", label smoothing {t.label_smoothing:g}" if t.label_smoothing else "")
        + (f", weight average (EMA) decay {t.ema_decay:g}" if t.ema_decay else "")
        + f", seed {t.seed}, device {tr.device}.",
        "",
        "| epoch | train loss | train acc | val acc | seconds | images/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for h in tr.history:
        val = "" if h.val_accuracy is None else f"{h.val_accuracy:.2%}"
        lines.append(f"| {h.epoch} | {h.train_loss:.4f} | {h.train_accuracy:.2%} | {val} | {h.seconds:.0f} | {h.images_per_second:.0f} |")
    lines += ["", f"Training time: {sum(h.seconds for h in tr.history):.0f} s in all on {s.machine}.", ""]
    return lines


def render_card(s: PipelineSummary) -> str:
    """Markdown for MODEL_CARD.md."""
    inp = s.input
    lines = [f"# Model card: {model_name(s.arch)}", "", *_what(s), "", "## Files", "",
             "| file | what | size | sha256 |", "| --- | --- | --- | --- |"]
    lines += [f"| `{f.name}` | {f.what} | {f.size:,} B | `{f.sha256[:16]}…` |" for f in s.files]
    lines += [
        "",
        "## I/O contract (also in the ONNX file's metadata_props)",
        "",
        f"- input `{inp['name']}`: {inp['dtype']} {inp['shape']}, raw pixel intensities "
        f"{inp['range'][0]:g}..{inp['range'][1]:g}, light digit on dark background as in MNIST; "
        "normalisation is inside the graph.",
        "- outputs `probabilities` (softmax, (batch, 10)) and `logits` ((batch, 10)); class i is digit i.",
        f"- ONNX opset {s.export.opset}, IR version {s.export.ir_version}, one self-contained file.",
        "",
        f"## Measured figures (MNIST test set, {s.validation.samples:,} images)",
        "",
        *_figures(s),
        *_int8_section(s),
        *_robustness(s),
        *_limitations(s),
        *_training(s),
        "## Reproduce",
        "",
        "```",
        s.reproduce,
        "```",
        "",
        f"Same seed, same device, same library versions: same weights. Made {s.made} with "
        + ", ".join(f"{k} {v}" for k, v in sorted(s.tool_versions.items())) + ".",
        "",
    ]
    return "\n".join(lines)
