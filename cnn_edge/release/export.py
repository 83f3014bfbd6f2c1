"""Export a checkpoint to one self-contained ONNX file that carries its contract."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..core import contract as C
from ..core.errors import ModelFileError
from ..core.files import atomic_write_bytes, check_writable, sha256_file, refuse_overwriting


@dataclass
class ExportReport:
    output: Path
    opset: int
    ir_version: int
    size_bytes: int
    smoke_max_abs_diff: float  # ORT vs torch on a few random inputs, checked at once
    preprocessing: str = C.PREPROCESSING_UNSTATED  # what its metadata names (records made before the key: mnist-v1)


def tool_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxscript
    import torch

    return {"cnn_edge": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxscript": onnxscript.__version__, "onnxruntime": onnxruntime.__version__}


def _to_proto(wrapper, opset: int):
    """The ONNX graph of the wrapper in eval mode: dropout leaves nothing, and batch normalization
    after a conv or an fc is folded into its weights and bias by the exporter's own optimizer
    (onnxscript's rewriter, on by default: `optimize=True`); one after a ReLU or a pooling has
    nothing to fold into and stays a BatchNormalization node. tests/test_export.py holds the
    exporter to it (docs/export-validation.md)."""
    import torch

    example = torch.zeros(2, *C.INPUT_SHAPE[1:])
    batch = torch.export.Dim(C.BATCH_AXIS, min=1)
    with warnings.catch_warnings(), io.StringIO() as sink:
        warnings.simplefilter("ignore")
        import contextlib

        with contextlib.redirect_stdout(sink):  # the exporter prints its progress
            program = torch.onnx.export(
                wrapper, (example,), dynamo=True, opset_version=opset, external_data=False,
                input_names=[C.INPUT_NAME], output_names=list(C.OUTPUT_NAMES),
                dynamic_shapes={C.INPUT_NAME: {0: batch}},
            )
    return program.model_proto


def export_onnx(checkpoint: Path, output: Path, opset: int = C.OPSET) -> ExportReport:
    """Export `checkpoint` to `output` (atomically), check it fully, smoke-test it with ORT. A
    calibrated checkpoint (release/calibrate.py) holds its temperature in its weights already; the
    metadata records it (contract.META_TEMPERATURE)."""
    import onnx

    from ..training.checkpoint import load_checkpoint
    from ..training.model import ExportWrapper

    refuse_overwriting(Path(output), [checkpoint, Path(str(checkpoint)).with_suffix(".json")])
    output = check_writable(Path(output))
    model, meta = load_checkpoint(Path(checkpoint))
    wrapper = ExportWrapper(model.float().cpu()).eval()
    proto = _to_proto(wrapper, opset)
    # The exporter names the dynamic axis itself; the contract calls it "batch".
    for value in list(proto.graph.input) + list(proto.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = C.BATCH_AXIS
    metadata = C.ContractMetadata(
        architecture=model.config.arch,
        layers=model.config.layers,
        test_accuracy=meta.get("test_accuracy"),
        checkpoint_sha256=sha256_file(Path(checkpoint)),
        tool_versions=tool_versions(),
        preprocessing=C.PREPROCESSING_V2,  # the runtime finds the digit of a cluttered photo for this model
        temperature=meta.get("temperature"),  # a calibrated checkpoint's (release/calibrate.py): already in its weights
    )
    onnx.helper.set_model_props(proto, metadata.to_props())
    proto.producer_name, proto.doc_string = "cnn-edge", C.PREPROCESSING_TEXT
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:  # our bug, not the user's: say so plainly
        raise ModelFileError(f"exported model failed onnx.checker: {exc}") from None
    data = proto.SerializeToString()
    diff = _smoke_parity(data, wrapper)
    if not diff <= C.FP32_TOLERANCE:
        raise ModelFileError(f"exported model differs from PyTorch by {diff:.3g} (> {C.FP32_TOLERANCE}) on random inputs")
    atomic_write_bytes(output, data)
    return ExportReport(output, opset, proto.ir_version, len(data), diff, metadata.preprocessing)


def _smoke_parity(data: bytes, wrapper) -> float:
    """Max abs difference of both outputs on random inputs at batch sizes 1 and 3."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch in (1, 3):
        x = (rng.random((batch, *C.INPUT_SHAPE[1:])) * 255).astype(np.float32)
        got = session.run(list(C.OUTPUT_NAMES), {C.INPUT_NAME: x})
        with torch.no_grad():
            want = [t.numpy() for t in wrapper(torch.from_numpy(x))]
        worst = max(worst, *(float(np.abs(g - w).max()) for g, w in zip(got, want)))
    return worst
