"""The model card: measured figures and the command that reproduces them. Torch-free."""
from __future__ import annotations

import datetime
import os
import platform

from .arch import DESCRIPTIONS


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what platform knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return cpu


def machine_description() -> str:
    return f"{cpu_name()}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def _name(summary: dict) -> str:
    from .pipeline import model_name

    return model_name(summary.get("arch", "spec"))


def _int8_section(summary: dict) -> list[str]:
    q, v = summary.get("quantization"), summary.get("int8_validation")
    if not q:
        return []
    sp, cfg = q["speed"], q["config"]
    par = v["parity"]
    return [
        f"## int8 model (`{_name(summary)}.int8.onnx`)",
        "",
        f"Static quantization with ONNX Runtime: {cfg['format'].upper()}, "
        f"{'per-channel' if cfg['per_channel'] else 'per-tensor'} {cfg['weight_type']} weights, "
        f"{cfg['activation_type']} activations, {cfg['method']} calibration on {cfg['calibration']:,} training images; "
        f"accuracy guard on {q['guard']['samples']:,} held-out training images (drop {q['guard']['drop_pp']:.3f} points, "
        f"limit {q['guard']['max_drop_pp']:g}). Nodes kept in float: "
        + (", ".join(q["nodes_in_float"]) or "none (softmax always runs in float)") + ".",
        "",
        "| figure | fp32 | int8 |",
        "| --- | --- | --- |",
        f"| file size | {q['size_bytes']['fp32']:,} B | {q['size_bytes']['int8']:,} B ({q['size_ratio']:.1%}) |",
        f"| test accuracy | {q['test_accuracy']['fp32']:.2%} | {q['test_accuracy']['int8']:.2%} (drop {q['test_accuracy_drop_pp']:.2f} points) |",
        f"| top-1 agreement with fp32 (test set) | | {q['test_top1_agreement']:.2%} |",
        f"| top-1 agreement with PyTorch (batch 1, 7, 256) | 100% required | {par['top1_agreement']:.2%} (≥ {par['min_top1_agreement']:.2%} required) |",
        f"| latency batch 1, p50 | {sp['fp32']['batch_1']['p50_ms']:.3f} ms | {sp['int8']['batch_1']['p50_ms']:.3f} ms |",
        f"| throughput batch 256 | {sp['fp32']['batch_256']['images_per_second']:,.0f} img/s | "
        f"{sp['int8']['batch_256']['images_per_second']:,.0f} img/s ({q['throughput_ratio_batch_256']:.2f}x) |",
        "",
        "Per-activation SQNR of int8 against fp32 (dB, higher is better): "
        + ", ".join(f"{k} {val:.1f}" for k, val in q["layer_sqnr_db"].items()) + ".",
        "",
    ]


def render_card(summary: dict) -> str:
    """Markdown for exports/MODEL_CARD.md from the pipeline's summary dict."""
    t, v, e, ck = summary["train"], summary["validation"], summary["export"], summary["checkpoint"]
    par = v["parity"]
    arch = summary.get("arch", "spec")
    if arch == "spec":
        what = ["Handwritten digit classifier (MNIST, 10 classes), the spec CNN of cnn-edge:",
                "conv 32 3x3 - ReLU - conv 32 3x3 - ReLU - max pool 2 - conv 64 3x3 - ReLU - conv 64 3x3 - ReLU -",
                f"max pool 2 - flatten (7*7*64 = 3136) - FC 256 - ReLU - FC 10 - softmax; {summary['params']:,} trainable parameters."]
    else:
        what = [f"Handwritten digit classifier (MNIST, 10 classes), architecture `{arch}`: {DESCRIPTIONS[arch]}; "
                f"{summary['params']:,} trainable parameters (`cnn-edge info --arch {arch}`)."]
    lines = [
        f"# Model card: {_name(summary)}",
        "",
        *what,
        "",
        "## Files",
        "",
        "| file | what | size | sha256 |",
        "| --- | --- | --- | --- |",
    ]
    for f in summary["files"]:
        lines.append(f"| `{f['name']}` | {f['what']} | {f['size']:,} B | `{f['sha256'][:16]}…` |")
    lines += [
        "",
        "## I/O contract (also in the ONNX file's metadata_props)",
        "",
        f"- input `{e['input']['name']}`: {e['input']['dtype']} {e['input']['shape']}, raw pixel intensities "
        f"{e['input']['range'][0]:g}..{e['input']['range'][1]:g}, light digit on dark background as in MNIST; "
        "normalisation is inside the graph.",
        "- outputs `probabilities` (softmax, (batch, 10)) and `logits` ((batch, 10)); class i is digit i.",
        f"- ONNX opset {e['opset']}, IR version {e['ir_version']}, one self-contained file.",
        "",
        "## Measured figures (MNIST test set, 10,000 images)",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| test accuracy, ONNX Runtime fp32 | {v['accuracy']:.2%} ({v['samples']:,} images) |",
        f"| test accuracy, PyTorch checkpoint | {par['torch_accuracy']:.2%} |",
        f"| top-1 agreement ONNX Runtime vs PyTorch (batch {', '.join(str(r['batch_size']) for r in par['per_batch_size'])}) | {par['top1_agreement']:.2%} |",
        f"| max abs diff of probabilities | {par['max_abs_diff_probabilities']:.3g} (tolerance {par['tolerance']:g}) |",
        f"| max abs diff of logits | {par['max_abs_diff_logits']:.3g} (tolerance {par['tolerance']:g}) |",
        f"| selected epoch (best validation accuracy) | {ck['selected_epoch']} of {t['epochs']} |",
        f"| validation accuracy of that epoch ({t['val_size']:,} images held out of the training set) | {ck['best_val_accuracy']:.2%} |",
        "",
        "Per-class test accuracy (ONNX Runtime): "
        + ", ".join(f"{i}: {a:.2%}" for i, a in enumerate(v["per_class_accuracy"])),
        "",
        *_int8_section(summary),
        "## Training",
        "",
        f"Recipe `{t['recipe']}`: {t['epochs']} epochs, batch {t['batch_size']}, AdamW peak lr {t['lr']:g}, "
        f"weight decay {t['weight_decay']:g}, schedule {t['schedule']}, augmentation "
        + (f"rotation ±{t['max_rotation']:g}°, shift ±{t['max_shift']:g} px, scale ±{t['max_scale']:.0%}" if t["augment"] else "none")
        + (f", weight average (EMA) decay {t['ema_decay']:g}" if t.get("ema_decay") else "")
        + f", seed {t['seed']}, device {ck['device']}.",
        "",
        "| epoch | train loss | train acc | val acc | seconds | images/s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for h in ck["history"]:
        val = "" if h["val_accuracy"] is None else f"{h['val_accuracy']:.2%}"
        lines.append(f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_accuracy']:.2%} | {val} | {h['seconds']:.0f} | {h['images_per_second']:.0f} |")
    lines += [
        "",
        f"Training time: {sum(h['seconds'] for h in ck['history']):.0f} s in all on {summary['machine']}.",
        "",
        "## Reproduce",
        "",
        "```",
        summary["reproduce"],
        "```",
        "",
        f"Same seed, same device, same library versions: same weights. Made {datetime.date.today().isoformat()} with "
        + ", ".join(f"{k} {v}" for k, v in sorted(summary["tool_versions"].items())) + ".",
        "",
    ]
    return "\n".join(lines)
