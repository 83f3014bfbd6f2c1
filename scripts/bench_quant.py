"""INT8 variants against fp32 ONNX Runtime and PyTorch eager, measured in one run.

For each quantization variant (QDQ/QOperator x per-channel/per-tensor x uint8/int8
activations, and dynamic), quantize the fp32 model with the guard off, then measure test
accuracy, top-1 agreement with fp32, file size and batch-256 throughput on this machine.

    python scripts/bench_quant.py exports/mnist_cnn.onnx --checkpoint exports/mnist_cnn.safetensors \
        --data-dir ../shared/data/mnist [--json]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnn_edge.core import contract as C  # noqa: E402
from cnn_edge.training.data import load_mnist  # noqa: E402
from cnn_edge.core.errors import ModelFileError  # noqa: E402
from cnn_edge.core.machine import machine_description  # noqa: E402
from cnn_edge.tools.openvino_peer import open_openvino, openvino_version  # noqa: E402
from cnn_edge.release.quantize import QuantConfig  # noqa: E402
from cnn_edge.release.quantize import quantize_model  # noqa: E402
from cnn_edge.runtime.onnx_model import open_model  # noqa: E402
from cnn_edge.runtime.timing import measure  # noqa: E402


def torch_eager(checkpoint: Path, batch: int, seconds: float) -> dict:
    import torch

    from cnn_edge.training.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    out = {}
    for layout in ("nchw", "channels_last"):
        m = model.to(memory_format=torch.channels_last) if layout == "channels_last" else model
        x = torch.rand(batch, *C.INPUT_SHAPE[1:]) * C.INPUT_RANGE[1]
        if layout == "channels_last":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            for _ in range(3):
                m(x)
            times, start = [], time.perf_counter()
            while len(times) < 5 or time.perf_counter() - start < seconds:
                t0 = time.perf_counter()
                m(x)
                times.append(time.perf_counter() - t0)
        out[layout] = batch / float(np.mean(times))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--checkpoint", help="PyTorch checkpoint of the same network, for the eager baseline")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--calibration", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=3.0, help="timing window per measurement")
    ap.add_argument("--formats", default="qdq,qoperator,dynamic", help="comma-separated: qdq, qoperator, dynamic")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    fp32 = open_model(Path(args.model))
    fp32_speed = measure(fp32, 256, args.seconds)
    # QDQ: uint8 activations (asymmetric, int32 biases: ONNX Runtime's defaults) and the release's
    # int8 activations with zero points 0 and float biases (what TensorRT takes); QOperator with
    # ONNX Runtime's defaults; dynamic.
    qdq = [dict(format="qdq", per_channel=pc, activation_type="uint8", symmetric=False, quantize_bias=True)
           for pc in (True, False)]
    qdq += [dict(format="qdq", per_channel=pc) for pc in (True, False)]  # QuantConfig's defaults: the release
    qop = [dict(format="qoperator", per_channel=pc, activation_type=a, symmetric=False, quantize_bias=True)
           for pc, a in itertools.product((True, False), ("uint8", "int8"))]
    wanted = args.formats.split(",")
    variants = (qdq if "qdq" in wanted else []) + (qop if "qoperator" in wanted else [])
    if "dynamic" in wanted:
        variants.append(dict(dynamic=True, weight_type="uint8"))
    with_openvino = openvino_version() is not None
    ov_fp32 = measure(open_openvino(Path(args.model)), 256, args.seconds).images_per_second if with_openvino else None
    rows = []
    data = load_mnist(args.data_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(variants):
            cfg = QuantConfig(calibration=args.calibration, max_drop=100.0, speed_seconds=args.seconds,
                              **v)  # guard off: raw variants
            res = quantize_model(Path(args.model), Path(tmp) / f"v{i}.onnx", cfg, data.train, data.test)
            speed = res.int8_speed.batch_256
            rows.append({"variant": v, "size_ratio": res.size_ratio,
                         "test_accuracy": res.test.int8_accuracy, "fp32_test_accuracy": res.test.fp32_accuracy,
                         "top1_agreement": res.test.top1_agreement, "images_per_second": speed.images_per_second,
                         "ratio_vs_fp32_ort": speed.images_per_second / fp32_speed.images_per_second,
                         "openvino_images_per_second": _openvino_speed(Path(tmp) / f"v{i}.onnx", args.seconds)
                         if with_openvino else None})
    eager = torch_eager(Path(args.checkpoint), 256, args.seconds) if args.checkpoint else {}
    for r in rows:
        for layout, ips in eager.items():
            r[f"ratio_vs_torch_{layout}"] = r["images_per_second"] / ips
    result = {"machine": machine_description(), "fp32_ort_batch_256": asdict(fp32_speed),
              "openvino": openvino_version(), "fp32_openvino_f32_batch_256_images_per_second": ov_fp32,
              "torch_eager_batch_256_images_per_second": eager, "variants": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {result['machine']}")
    print(f"fp32 ONNX Runtime, batch 256: {fp32_speed.images_per_second:,.0f} img/s; PyTorch eager: "
          + ", ".join(f"{k} {v:,.0f} img/s" for k, v in eager.items())
          + (f"; OpenVINO {result['openvino']} (f32 hint): {ov_fp32:,.0f} img/s" if ov_fp32 else ""))
    print(f"{'variant':<48} {'size':>6} {'test acc':>9} {'drop':>7} {'agree':>8} {'img/s':>8} {'x fp32':>7} {'x torch':>8} {'OpenVINO':>9}")
    for r in rows:
        v = r["variant"]
        cfg = QuantConfig(**v)
        name = ("dynamic, weights " + cfg.weight_type) if cfg.dynamic else \
            (f"{cfg.format}, {'per-channel' if cfg.per_channel else 'per-tensor'}, act {cfg.activation_type}"
             + (" sym" if cfg.symmetric and cfg.activation_type == "int8" else "")
             + (", float bias" if not cfg.quantize_bias else ""))
        drop = (r["fp32_test_accuracy"] - r["test_accuracy"]) * 100
        xt = r.get("ratio_vs_torch_nchw")
        print(f"{name:<48} {r['size_ratio']:>6.1%} {r['test_accuracy']:>9.2%} {drop:>7.3f} {r['top1_agreement']:>8.2%} "
              f"{r['images_per_second']:>8,.0f} {r['ratio_vs_fp32_ort']:>7.2f} {'-' if xt is None else format(xt, '.2f'):>8} {_ov_cell(r['openvino_images_per_second']):>9}")


def _openvino_speed(path: Path, seconds: float):
    """Batch-256 img/s of the OpenVINO runtime on this variant, or the reason it refuses it."""
    try:
        return measure(open_openvino(path), 256, seconds).images_per_second
    except ModelFileError as exc:
        return f"refused: {str(exc).rsplit(': ', 1)[-1]}"


def _ov_cell(value) -> str:
    return "-" if value is None else ("refused" if isinstance(value, str) else f"{value:,.0f}")


if __name__ == "__main__":
    main()
