"""Find the first layer where two forms of one model part: `cnn-edge diagnose`.

Three comparisons, each a reference side and a candidate ONNX model run on the same real images:

    checkpoint  PyTorch (forward hooks on every layer) vs its ONNX export
    onnx        an fp32 ONNX model vs another form of it (its int8 model, through the Q/DQ pairs,
                or an fp32 copy)
    providers   one ONNX model on two execution providers (and OpenVINO's precision): every float
                tensor against itself

The candidate's intermediate tensors are read by adding them as graph outputs on a copy of the
model and running that copy in ONNX Runtime with graph optimizations disabled, so that fusion
hides none of them. Rows come in the candidate's graph order; the first row over its threshold is
the first diverging layer.

Thresholds (why these):
  fp32 candidate: max abs diff > FP32_TOLERANCE x max(1, max |reference|) at that tensor. The
      contract allows FP32_TOLERANCE on outputs of magnitude about 1; float32 rounding grows with
      the magnitude of the values, so a tensor of activations up to 40 gets 40x the room. A real
      export stays 10-100x under it; one layer's weights nudged by a tenth of their own spread
      lands 1000x over it.
  int8 candidate: SQNR (signal to quantization noise, dB) below INT8_MIN_SQNR_DB = 33 dB. The
      release's activations sit at 35-47 dB against fp32 (measured on 1000 test images); a Q/DQ
      scale made 4x coarser costs up to 20*log10(4) = 12 dB at its tensor (8-12 dB measured), which
      puts every ReLU, pooling and logits tensor under 33 dB. The input-side tensors (mul, add_5:
      44-47 dB healthy) need a 16x scale to cross it: their error is not first until it is large.

`diagnose()` returns a DiagnoseReport; `write_repro()` writes the smallest subgraph from the input
to the first diverging tensor in ONNX's test-case layout. Imports onnx, onnxruntime and (for a
checkpoint) torch inside the functions that need them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core import contract as C
from ..core.errors import CheckpointError, ConfigError, ModelFileError, OutputPathError

INT8_MIN_SQNR_DB = 33.0  # healthy release tensors: 35-47 dB; a 4x coarser scale: 24-32 dB (docstring)
BATCH = 100  # images per run: every intermediate tensor of a batch is held at once
REPRO_IMAGES = 8  # the worst images at the first diverging layer go into the repro's input
# PyTorch layers and the ONNX ops the exporter writes for them, matched by name, then by order.
# Batch normalization is matched apart (_batch_norms): after a conv or fc the exporter folds it.
TORCH_TO_ONNX = {"Conv2d": ("Conv",), "ReLU": ("Relu",), "MaxPool2d": ("MaxPool",), "AvgPool2d": ("AveragePool",),
                 "AdaptiveAvgPool2d": ("ReduceMean", "GlobalAveragePool"), "Flatten": ("Flatten", "Reshape"),
                 "Linear": ("Gemm", "MatMul")}
BATCH_NORMS = ("BatchNorm2d", "BatchNorm1d")
WEIGHTED = ("Conv2d", "Linear")  # what a batch normalization after it is folded into
IN_EVAL_NOTHING = ("Dropout",)  # no node in the exported graph (eval mode)


@dataclass
class LayerDiff:
    layer: str  # the reference side's name: a PyTorch module (conv1) or the fp32 model's tensor
    tensor: str  # the candidate's ONNX tensor compared with it
    op: str  # the ONNX op that makes the reference tensor
    shape: list[int]  # one image's shape
    max_abs_diff: float
    sqnr_db: float  # 10*log10(signal power / error power) over all images; inf when identical
    diverged: bool  # over this comparison's threshold (DiagnoseReport.rule)
    diverged_share: float  # images whose own error at this layer is over the threshold
    top1_differs_share: float  # images over the threshold here whose final top-1 differs too


@dataclass
class DiagnoseReport:
    model: str  # the candidate ONNX model
    reference: str  # the checkpoint or the reference ONNX model
    mode: str  # checkpoint, onnx or providers
    precision: str  # fp32 or int8: the candidate's, which picks the rule
    rule: str  # the threshold, in words
    samples: int
    top1_disagreement: float  # images whose final top-1 differs between the two sides
    layers: list[LayerDiff]
    first_diverging_layer: str | None  # the first row with `diverged`; None when none
    first_diverging_tensor: str | None  # its tensor in the candidate model
    unmapped: list[str] = field(default_factory=list)  # reference tensors with no candidate counterpart (fused)
    repro: str | None = None  # the --repro folder, when written


# --- ONNX side ----------------------------------------------------------------------------------

def _load(path: Path):
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: not found")
    try:
        return onnx.load(str(path))
    except Exception as exc:
        raise ModelFileError(f"{path} is not an ONNX model: {str(exc).splitlines()[0][:120]}") from None


def _is_int8(model) -> bool:
    return any(n.op_type in ("QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger") for n in model.graph.node)


def _float_tensors(model) -> dict[str, str]:
    """Every tensor a node makes that holds floats, with the op that makes it, in graph order."""
    return {o: n.op_type for n in model.graph.node if n.op_type not in ("Constant", "QuantizeLinear")
            for o in n.output if o}


class _Runner:
    """The model with extra outputs, in ONNX Runtime with every graph optimization off."""

    def __init__(self, model, names: list[str], path: Path, provider: str = "cpu", precision: str = "f32"):
        import onnx
        import onnxruntime as ort

        from ..runtime.providers import create_session

        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        present = {o.name for o in copy.graph.output}
        for name in names:
            if name not in present:
                copy.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        def options():
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            opts.log_severity_level = 3
            return opts

        try:
            if provider == "cpu":
                self.session = ort.InferenceSession(copy.SerializeToString(), options(), providers=["CPUExecutionProvider"])
            else:  # an explicit provider that cannot start is one line (providers.py), never a silent CPU run
                self.session, _ = create_session(str(path), copy.SerializeToString(), options, provider,
                                                 precision=precision)
        except ConfigError:
            raise
        except Exception as exc:
            raise ModelFileError(f"{path}: ONNX Runtime cannot run it: {str(exc).splitlines()[0][:160]}") from None
        self.names = names

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        got = self.session.run(self.names, {C.INPUT_NAME: x})
        return dict(zip(self.names, got))


def _pixels(images: np.ndarray) -> np.ndarray:
    return images.astype(np.float32)[:, None]


# --- mapping ------------------------------------------------------------------------------------

def _counterpart(candidate_tensors: dict[str, str], name: str) -> str | None:
    """The candidate's float tensor for the reference's `name`: its dequantized form, else its own."""
    for cand in (f"{name}_DequantizeLinear_Output", name):
        if cand in candidate_tensors:
            return cand
    return None


def _map_onnx(reference, candidate) -> tuple[list[tuple[str, str, str]], list[str]]:
    """(reference tensor, candidate tensor, op) in the reference's graph order, and the unmapped."""
    ref = _float_tensors(reference)
    cand = _float_tensors(candidate)
    cand.update({i.name: "input" for i in candidate.graph.input})
    rows, unmapped = [], []
    for name, op in ref.items():
        other = _counterpart(cand, name)
        if other is None:
            unmapped.append(name)
        else:
            rows.append((name, other, op))
    return rows, unmapped


def _layer_node_output(model, node) -> str:
    """A Linear exported as MatMul + Add ends at the Add."""
    if node.op_type == "MatMul":
        for n in model.graph.node:
            if n.op_type == "Add" and node.output[0] in n.input:
                return n.output[0]
    return node.output[0]


def _map_torch(net, model, ckpt: Path, path: Path) -> list[tuple[str, str, str]]:
    """(PyTorch module name, ONNX tensor, op) in graph order: by the module's name where the exporter
    kept it (in the weight's initializer name, net.layers.conv1.weight, or the node name,
    /layers/conv1/Conv), else by the order of same-typed layers. A conv or fc whose batch
    normalization the exporter folded into it is compared after that batch normalization: its row
    is named conv1+batchnorm1 and reads batchnorm1's output."""
    modules = [(name, m) for name, m in net.layers.named_children() if type(m).__name__ in TORCH_TO_ONNX]
    inits = {i.name: i for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if any(n.op_type in ops for ops in TORCH_TO_ONNX.values())]
    assigned: dict[int, str] = {}  # node index -> module name
    names = {name for name, _ in modules}
    for idx, node in enumerate(nodes):
        for text in (*node.input[1:], node.name):
            for name in names - set(assigned.values()):
                if f"layers.{name}." in text or f"/{name}/" in text:
                    assigned[idx] = name
    by_name = dict(modules)
    for kind, ops in TORCH_TO_ONNX.items():
        left_m = [n for n, m in modules if type(m).__name__ == kind and n not in assigned.values()]
        left_n = [i for i, node in enumerate(nodes) if node.op_type in ops and i not in assigned]
        if len(left_m) != len(left_n):
            have = sum(type(m).__name__ == kind for _, m in modules)
            onnx_have = sum(node.op_type in ops for node in nodes)
            raise CheckpointError(f"{ckpt} does not match {path}: the checkpoint has {have} {kind} layers, "
                                  f"the model {onnx_have} {'/'.join(ops)} nodes")
        assigned.update(zip(left_n, left_m))
    rows = []
    for idx, node in enumerate(nodes):
        name = assigned[idx]
        module = by_name[name]
        if node.op_type in ("Conv", "Gemm", "MatMul") and node.input[1] in inits:
            got = tuple(inits[node.input[1]].dims)
            want = tuple(module.weight.shape)
            if sorted(got) != sorted(want):  # MatMul stores the weight transposed
                raise CheckpointError(f"{ckpt} does not match {path}: {name}.weight is {list(want)} "
                                      f"in the checkpoint, {list(got)} in the model ({node.input[1]})")
        rows.append((name, _layer_node_output(model, node), node.op_type))
    rows = _batch_norms(net, model, rows, ckpt, path)
    first = nodes[0] if nodes else None
    if first is not None and first.input[0] != C.INPUT_NAME:  # the in-graph normalisation, before every layer
        rows.insert(0, ("normalize", first.input[0], "Add"))
    return rows


def _batch_norms(net, model, rows: list[tuple[str, str, str]], ckpt: Path, path: Path) -> list[tuple[str, str, str]]:
    """The rows with each batch normalization placed: folded into the conv or fc before it (that
    row then reads the batch normalization's output, conv1+batchnorm1), or its own
    BatchNormalization node, in graph order."""
    children = list(net.layers.named_children())
    order = {o: i for i, n in enumerate(model.graph.node) for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    bn_nodes = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    row_of = {name: k for k, (name, _, _) in enumerate(rows)}
    unfolded: list[str] = []  # batch normalizations that keep a node of their own
    for i, (name, module) in enumerate(children):
        if type(module).__name__ not in BATCH_NORMS:
            continue
        before = next((children[j] for j in range(i - 1, -1, -1)
                       if type(children[j][1]).__name__ not in IN_EVAL_NOTHING), None)
        if before is not None and type(before[1]).__name__ in WEIGHTED and before[0] in row_of:
            k = row_of[before[0]]
            tensor = rows[k][1]
            if not any(c.op_type == "BatchNormalization" for c in consumers.get(tensor, [])):
                rows[k] = (f"{before[0]}+{name}", tensor, rows[k][2])  # folded: the conv's output is the bn's
                continue
        unfolded.append(name)
    if len(unfolded) != len(bn_nodes):
        raise CheckpointError(f"{ckpt} does not match {path}: the checkpoint has {len(unfolded)} batch normalizations "
                              f"that the export cannot fold, the model {len(bn_nodes)} BatchNormalization nodes")
    rows = rows + [(name, node.output[0], node.op_type) for name, node in zip(unfolded, bn_nodes)]
    return sorted(rows, key=lambda r: order.get(r[1], -1))


# --- the comparison -----------------------------------------------------------------------------

@dataclass
class _Stats:
    """One layer's error, accumulated over batches; per image kept for the shares."""

    signal: float = 0.0
    noise: float = 0.0
    max_diff: float = 0.0
    max_ref: float = 0.0
    img_diff: list = field(default_factory=list)
    img_signal: list = field(default_factory=list)
    img_noise: list = field(default_factory=list)
    shape: tuple = ()

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        ref = ref.reshape(len(ref), -1).astype(np.float64)
        err = got.reshape(len(got), -1).astype(np.float64) - ref
        s, n = (ref**2).sum(1), (err**2).sum(1)
        d = np.abs(err).max(1)
        self.signal += float(s.sum())
        self.noise += float(n.sum())
        self.max_diff = max(self.max_diff, float(d.max()))
        self.max_ref = max(self.max_ref, float(np.abs(ref).max()))
        self.img_diff.append(d)
        self.img_signal.append(s)
        self.img_noise.append(n)


def sqnr_db(signal: float | np.ndarray, noise: float | np.ndarray):
    """10*log10(signal/noise); inf where there is no noise."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10 * np.log10(np.asarray(signal, np.float64) / np.asarray(noise, np.float64))
    return float(out) if np.ndim(out) == 0 else out


def _judge(stats: list[_Stats], int8: bool) -> list[tuple[bool, np.ndarray]]:
    """(layer over the threshold, per-image over it) for each layer, in order."""
    out = []
    for st in stats:
        diff, sig, noise = (np.concatenate(a) for a in (st.img_diff, st.img_signal, st.img_noise))
        if int8:
            bad = sqnr_db(st.signal, st.noise) < INT8_MIN_SQNR_DB
            img_bad = np.nan_to_num(sqnr_db(sig, noise), nan=np.inf) < INT8_MIN_SQNR_DB
        else:
            tol = C.FP32_TOLERANCE * max(1.0, st.max_ref)
            bad, img_bad = st.max_diff > tol, diff > tol
        out.append((bool(bad), img_bad))
    return out


def _rule(int8: bool) -> str:
    if int8:
        return (f"int8: SQNR < {INT8_MIN_SQNR_DB:g} dB against fp32 (healthy tensors: 35-47 dB; "
                "a 4x coarser Q/DQ scale costs 8-12 dB)")
    return f"fp32: max abs diff > {C.FP32_TOLERANCE:g} x max(1, max |reference|) at that tensor"


def _metadata(model, key: str) -> str | None:
    return next((p.value for p in model.metadata_props if p.key == key), None)


def diagnose(model_path: Path, images: np.ndarray, *, checkpoint: Path | None = None,
             reference_model: Path | None = None, repro: Path | None = None,
             providers: tuple[str, str] | None = None, precision: str = "f32") -> DiagnoseReport:
    """Compare `model_path` with its checkpoint (PyTorch) or with `reference_model` (an fp32 ONNX
    model) on `images` (uint8, N x 28 x 28), layer by layer.

    Raises ConfigError for two models that are not forms of one network or tensors that cannot be
    mapped, CheckpointError for a checkpoint of another network, ModelFileError for a bad file,
    OutputPathError for a non-empty --repro folder."""
    if sum(x is not None for x in (checkpoint, reference_model, providers)) != 1:
        raise ConfigError("diagnose needs exactly one reference: --checkpoint CKPT, a second model, or "
                          "--provider A --against-provider B")
    if len(images) < 1:
        raise ConfigError("--samples must be at least 1")
    if repro is not None:
        _check_repro_dir(Path(repro))
    model_path = Path(model_path)
    candidate = _load(model_path)
    int8 = _is_int8(candidate)
    cand_tensors = _float_tensors(candidate)
    cand_provider = "cpu"
    if checkpoint is not None:
        ref_runner, rows, unmapped = _torch_side(Path(checkpoint), candidate, model_path)
        reference_name, mode = str(checkpoint), "checkpoint"
    elif providers is not None:  # one model, two providers: every float tensor against itself
        cand_provider, against = providers
        rows = [(n, n, op) for n, op in cand_tensors.items()]
        unmapped = []
        ref_runner = _Runner(candidate, [r for r, _, _ in rows] + [C.OUTPUT_LOGITS], model_path, against, precision)
        reference_name, mode = f"{model_path} on {against}", "providers"
    else:
        reference = _load(Path(reference_model))
        if _is_int8(reference):
            raise ConfigError(f"{reference_model} is an int8 model: the reference must be the fp32 one "
                              f"(cnn-edge diagnose FP32.onnx {reference_model})")
        archs = (_metadata(reference, C.META_ARCHITECTURE), _metadata(candidate, C.META_ARCHITECTURE))
        if None not in archs and archs[0] != archs[1]:
            raise ConfigError(f"{reference_model} ({archs[0]}) and {model_path} ({archs[1]}) are different "
                              "architectures: diagnose compares two forms of one model")
        rows, unmapped = _map_onnx(reference, candidate)
        ref_runner = _Runner(reference, [r for r, _, _ in rows] + [C.OUTPUT_LOGITS], Path(reference_model))
        reference_name, mode = str(reference_model), "onnx"
    rows = [r for r in rows if r[1] in cand_tensors or r[1] == C.INPUT_NAME]
    if not [r for r in rows if r[1] not in (C.INPUT_NAME, C.OUTPUT_LOGITS, C.OUTPUT_PROBABILITIES)]:
        raise ConfigError(f"no intermediate tensor of {model_path} maps to {reference_name}: "
                          "nothing to compare layer by layer")
    cand_runner = _Runner(candidate, list(dict.fromkeys([c for _, c, _ in rows] + [C.OUTPUT_LOGITS])), model_path,
                          cand_provider, precision)

    stats = [_Stats() for _ in rows]
    top1 = []
    for i in range(0, len(images), BATCH):
        x = _pixels(images[i:i + BATCH])
        ref = ref_runner(x)
        got = cand_runner(x)
        for st, (r, c, _) in zip(stats, rows):
            a, b = ref[r], got[c]
            if a.shape != b.shape:
                raise ConfigError(f"{c} of {model_path} has shape {list(b.shape)}, {r} of {reference_name} "
                                  f"{list(a.shape)}: not two forms of one model")
            st.shape = a.shape[1:]
            st.add(a, b)
        top1.append(ref[C.OUTPUT_LOGITS].argmax(1) != got[C.OUTPUT_LOGITS].argmax(1))
    flipped = np.concatenate(top1)
    layers, first = [], None
    for st, (r, c, op), (bad, img_bad) in zip(stats, rows, _judge(stats, int8)):
        layers.append(LayerDiff(r, c, op, list(st.shape), st.max_diff, sqnr_db(st.signal, st.noise), bad,
                                float(img_bad.mean()), float((img_bad & flipped).mean())))
        if bad and first is None:
            first = layers[-1]
    report = DiagnoseReport(str(model_path), reference_name, mode, "int8" if int8 else "fp32", _rule(int8),
                            len(images), float(flipped.mean()), layers, first and first.layer,
                            first and first.tensor, unmapped)
    if repro is not None and first is not None:
        idx = _worst_images(stats[layers.index(first)], int8)
        x = _pixels(images[idx])
        write_repro(Path(repro), candidate, first, x, ref_runner(x)[_ref_key(rows, first)])
        report.repro = str(repro)
    return report


def _ref_key(rows, layer: LayerDiff) -> str:
    return next(r for r, c, _ in rows if r == layer.layer and c == layer.tensor)


def _worst_images(st: _Stats, int8: bool) -> np.ndarray:
    if int8:
        score = -sqnr_db(np.concatenate(st.img_signal), np.concatenate(st.img_noise))
    else:
        score = np.concatenate(st.img_diff)
    return np.sort(np.argsort(-score, kind="stable")[:REPRO_IMAGES])


def _torch_side(checkpoint: Path, candidate, model_path: Path):
    """A runner that returns PyTorch's module outputs under the module names, and the rows."""
    import torch

    from ..training.checkpoint import load_checkpoint

    net, _ = load_checkpoint(checkpoint)
    net = net.float().eval()
    rows = _map_torch(net, candidate, checkpoint, model_path)
    captured: dict[str, np.ndarray] = {}

    def hook(name):
        return lambda _m, _i, out: captured.__setitem__(name, out.detach().float().contiguous().numpy())

    net.normalize.register_forward_hook(hook("normalize"))
    for name, module in net.layers.named_children():
        module.register_forward_hook(hook(name))
    last = list(net.layers.named_children())[-1][0]

    folded = [r for r, _, _ in rows if "+" in r]  # conv1+batchnorm1 reads batchnorm1's output

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        captured.clear()
        with torch.no_grad():
            net(torch.from_numpy(x))
        return {**captured, **{r: captured[r.split("+")[-1]] for r in folded}, C.OUTPUT_LOGITS: captured[last]}

    return run, rows, []


# --- the repro ----------------------------------------------------------------------------------

def _check_repro_dir(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputPathError(f"--repro {path}: not an empty folder; name a new or empty one")


def write_repro(folder: Path, model, layer: LayerDiff, x: np.ndarray, expected: np.ndarray) -> Path:
    """The candidate's subgraph from its input to `layer.tensor`, with `x` and the reference's value
    of that tensor, in ONNX's test-case layout (model.onnx, test_data_set_0/input_0.pb,
    output_0.pb) and a README saying how to replay it and what to expect."""
    import onnx
    from onnx import numpy_helper
    from onnx.utils import Extractor

    from ..core.files import atomic_write_bytes, atomic_write_text

    _check_repro_dir(folder)
    model = onnx.shape_inference.infer_shapes(model)
    if layer.tensor not in {v.name for v in (*model.graph.value_info, *model.graph.output)}:
        # shape inference leaves some Q/DQ outputs untyped; the extractor needs every output typed
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(layer.tensor, onnx.TensorProto.FLOAT, None))
    try:
        sub = Extractor(model).extract_model([C.INPUT_NAME], [layer.tensor])
    except Exception as exc:
        raise ModelFileError(f"cannot cut the subgraph up to {layer.tensor}: {str(exc).splitlines()[0][:160]}") from None
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in sub.graph.node):
        # onnx.reference implements Q/DQ from opset 19 only; 19 changed them only for float8 types
        for imp in sub.opset_import:
            if imp.domain in ("", "ai.onnx") and imp.version < 19:
                imp.version = 19
    sub.graph.doc_string = f"cnn-edge diagnose repro: input to {layer.tensor}, the first diverging tensor"
    got = _Runner(sub, [layer.tensor], Path("repro"))(x)[layer.tensor]
    diff = float(np.abs(got.astype(np.float64) - expected).max())
    db = sqnr_db(float((expected.astype(np.float64) ** 2).sum()), float(((got - expected).astype(np.float64) ** 2).sum()))
    data = folder / "test_data_set_0"
    data.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / "model.onnx", sub.SerializeToString())
    atomic_write_bytes(data / "input_0.pb", numpy_helper.from_array(x, C.INPUT_NAME).SerializeToString())
    atomic_write_bytes(data / "output_0.pb", numpy_helper.from_array(expected.astype(np.float32), layer.tensor).SerializeToString())
    atomic_write_text(folder / "README.md", REPRO_README.format(
        tensor=layer.tensor, layer=layer.layer, op=layer.op, n=len(x), diff=diff, db=db,
        input=C.INPUT_NAME, onnx_version=onnx.__version__))
    return folder


REPRO_README = """# Repro: {tensor} diverges

`model.onnx` is the diagnosed model cut from its input `{input}` to `{tensor}` (layer `{layer}`,
op {op}), the first tensor over the diagnosis threshold. `test_data_set_0/input_0.pb` holds {n}
MNIST test images (raw pixels 0..255, shape N x 1 x 28 x 28), the ones that diverged most;
`test_data_set_0/output_0.pb` holds the EXPECTED value of `{tensor}` for them: the reference
side's (PyTorch's, or the fp32 model's). Made with onnx {onnx_version}.

Expected divergence: running `model.onnx` gives max abs diff {diff:.4g} and SQNR {db:.2f} dB
against `output_0.pb`, far over the threshold, in ONNX Runtime and in onnx's reference evaluator
alike (a model that agreed would show a max abs diff near 1e-5 and an SQNR over 80 dB).

Replay with ONNX Runtime:

```python
import numpy as np, onnx, onnxruntime as ort
from onnx import numpy_helper
x = numpy_helper.to_array(onnx.load_tensor("test_data_set_0/input_0.pb"))
want = numpy_helper.to_array(onnx.load_tensor("test_data_set_0/output_0.pb"))
opts = ort.SessionOptions(); opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
got = ort.InferenceSession("model.onnx", opts, providers=["CPUExecutionProvider"]).run(None, {{"{input}": x}})[0]
print("max abs diff", np.abs(got - want).max())
```

Replay with onnx's reference implementation (no ONNX Runtime):

```python
from onnx.reference import ReferenceEvaluator
got = ReferenceEvaluator("model.onnx").run(None, {{"{input}": x}})[0]
print("max abs diff", np.abs(got - want).max())
```
"""
