"""INT8 variants against fp32 ONNX Runtime and PyTorch eager, measured in one run.

For each quantization variant (the two targets' QDQ forms and their neighbours, QOperator, dynamic),
quantize the fp32 model with the guard off, then measure test accuracy, top-1 agreement with fp32,
file size, which runtimes load it (validate --target's check), and batch-256 throughput on ONNX
Runtime's CPU provider and the OpenVINO runtime, every model timed in turn over several rounds.

    python scripts/bench_quant.py exports/mnist_cnn.onnx --checkpoint exports/mnist_cnn.safetensors \
        --data-dir ../shared/data/mnist [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
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
from cnn_edge.runtime.compat import check_targets  # noqa: E402
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


def variant_name(cfg: QuantConfig) -> str:
    if cfg.dynamic:
        return "dynamic, weights " + cfg.weight_type
    name = (f"{cfg.format}, {'per-channel' if cfg.per_channel else 'per-tensor'}, act {cfg.activation_type}"
            + (" zp0" if cfg.symmetric and cfg.activation_type == "int8" else "")
            + (", int32 bias" if cfg.quantize_bias else ", float bias"))
    return f"[{cfg.target}] {name}" if cfg.format == "qdq" else name


def timed_rounds(models: dict, seconds: float, rounds: int) -> dict:
    """Batch-256 img/s of each model, measured in turns (model after model, `rounds` times), so
    the machine's drift falls on all alike: {name: [img/s per round]}."""
    out = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            out[name].append(measure(model, 256, seconds).images_per_second)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--checkpoint", help="PyTorch checkpoint of the same network, for the eager baseline")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--calibration", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=2.0, help="timing window per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="timing rounds, every model in turn each round")
    ap.add_argument("--formats", default="qdq,qoperator,dynamic", help="comma-separated: qdq, qoperator, dynamic")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    # QDQ: the two targets' forms (QuantConfig.for_target), and the ort form's neighbours: int32 biases
    # (ONNX Runtime's own defaults), per-tensor weights; QOperator; dynamic.
    qdq = [dict(target="ort"), dict(target="ort", quantize_bias=True), dict(target="ort", per_channel=False),
           dict(target="tensorrt"), dict(target="tensorrt", per_channel=False)]
    qop = [dict(format="qoperator", activation_type="uint8", quantize_bias=True)]
    wanted = args.formats.split(",")
    variants = (qdq if "qdq" in wanted else []) + (qop if "qoperator" in wanted else [])
    if "dynamic" in wanted:
        variants.append(dict(dynamic=True, weight_type="uint8"))
    with_openvino = openvino_version() is not None
    data = load_mnist(args.data_dir)
    rows, ort_models, ov_models = [], {"fp32": open_model(Path(args.model), provider="cpu")}, {}
    if with_openvino:
        ov_models["fp32"] = open_openvino(Path(args.model))
    with tempfile.TemporaryDirectory() as tmp:
        for i, v in enumerate(variants):
            cfg = QuantConfig.for_target(v.pop("target", "ort"), calibration=args.calibration, max_drop=100.0,
                                         speed_seconds=0, **v)  # guard off: raw variants
            path = Path(tmp) / f"v{i}.onnx"
            res = quantize_model(Path(args.model), path, cfg, data.train, data.test)
            name = variant_name(cfg)
            ort_models[name] = open_model(path, provider="cpu")
            ov = _openvino(path) if with_openvino else None
            if not isinstance(ov, str) and ov is not None:
                ov_models[name] = ov
            rows.append({"variant": name, "config": asdict(cfg), "size_ratio": res.size_ratio,
                         "test_accuracy": res.test.int8_accuracy, "fp32_test_accuracy": res.test.fp32_accuracy,
                         "top1_agreement": res.test.top1_agreement,
                         "loads_in": [c.target for c in check_targets(path) if c.ok],
                         "openvino_refused": ov if isinstance(ov, str) else None})
        ort_speed = timed_rounds(ort_models, args.seconds, args.rounds)
        ov_speed = timed_rounds(ov_models, args.seconds, args.rounds)
    eager = torch_eager(Path(args.checkpoint), 256, args.seconds) if args.checkpoint else {}
    median = statistics.median
    fp32 = ort_speed["fp32"]
    for r in rows:
        runs = ort_speed[r["variant"]]
        r["images_per_second"] = median(runs)
        r["ratio_vs_fp32_ort"] = median(a / b for a, b in zip(runs, fp32))  # per round, then the median
        r["openvino_images_per_second"] = median(ov_speed[r["variant"]]) if r["variant"] in ov_speed else None
        for layout, ips in eager.items():
            r[f"ratio_vs_torch_{layout}"] = r["images_per_second"] / ips
    result = {"machine": machine_description(), "cpu_flags": cpu_flags(), "fp32_ort_batch_256_images_per_second": median(fp32),
              "openvino": openvino_version(),
              "fp32_openvino_f32_batch_256_images_per_second": median(ov_speed["fp32"]) if "fp32" in ov_speed else None,
              "torch_eager_batch_256_images_per_second": eager, "rounds": args.rounds, "variants": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"machine: {result['machine']} ({result['cpu_flags']}); {args.rounds} rounds of {args.seconds:g} s, every model in turn")
    print(f"fp32 ONNX Runtime CPU, batch 256: {median(fp32):,.0f} img/s; PyTorch eager: "
          + ", ".join(f"{k} {v:,.0f} img/s" for k, v in eager.items())
          + (f"; OpenVINO {result['openvino']} (f32 hint): {result['fp32_openvino_f32_batch_256_images_per_second']:,.0f} img/s"
             if result["fp32_openvino_f32_batch_256_images_per_second"] else ""))
    print(f"{'variant':<52} {'size':>6} {'test acc':>9} {'agree':>8} {'ORT img/s':>10} {'x fp32':>7} {'x torch':>8} "
          f"{'OpenVINO':>9}  loads in")
    for r in rows:
        xt = r.get("ratio_vs_torch_nchw")
        ov = r["openvino_images_per_second"]
        print(f"{r['variant']:<52} {r['size_ratio']:>6.1%} {r['test_accuracy']:>9.2%} {r['top1_agreement']:>8.2%} "
              f"{r['images_per_second']:>10,.0f} {r['ratio_vs_fp32_ort']:>7.2f} {'-' if xt is None else format(xt, '.2f'):>8} "
              f"{('refused' if r['openvino_refused'] else '-') if ov is None else format(ov, ',.0f'):>9}  {','.join(r['loads_in'])}")
    print("agree: top-1 agreement of int8 with the fp32 model on the 10,000 test images (fp32 agrees with PyTorch on all)")


def cpu_flags() -> str:
    """Whether this CPU has the integer dot-product instructions ONNX Runtime's int8 kernels use."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        return "flags unknown"
    have = [f for f in ("avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return ("has " + ", ".join(have)) if have else "no VNNI"


def _openvino(path: Path):
    """The OpenVINO runtime's model, or the reason it refuses it."""
    try:
        return open_openvino(path)
    except ModelFileError as exc:
        return f"refused: {str(exc).rsplit(': ', 1)[-1]}"


if __name__ == "__main__":
    main()
