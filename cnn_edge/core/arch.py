"""Architectures as plain data: a layer string people type, the layer list it means, and what
that list costs (output shapes, parameters, multiply-adds, bytes). Torch-free, so `cnn-edge info`
answers at once and a bad architecture is refused before any training; `training/model.py`
builds the torch modules from the same list. The grammar is in docs/architectures.md.

    conv32-conv32-pool-conv64-conv64-pool-fc256-fc10      the spec CNN (870,634 parameters)
    conv16k5s2p0g2-bn-avgpool-gap-drop0.25-fc10           every option written out
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Union

from .constants import CHANNELS, IMAGE_SIZE, NUM_CLASSES, SPEC_ARCH
from .errors import ConfigError


@dataclass(frozen=True)
class Conv:
    out_channels: int
    kernel: int = 3
    padding: int = 1  # "same" padding for a 3x3 kernel keeps 28x28; the grammar's default is kernel // 2
    stride: int = 1
    groups: int = 1
    bias: bool = True  # False when batch normalization follows: its shift is the bias


@dataclass(frozen=True)
class MaxPool:
    kernel: int = 2
    stride: Optional[int] = None  # None: the kernel (windows side by side)


@dataclass(frozen=True)
class AvgPool:
    kernel: int = 2
    stride: Optional[int] = None


@dataclass(frozen=True)
class Dropout:
    p: float = 0.5  # while training only; the exported graph has none


@dataclass(frozen=True)
class Linear:
    out_features: int
    bias: bool = True


@dataclass(frozen=True)
class _NoSettings:
    """A layer without settings."""


class ReLU(_NoSettings):
    """max(x, 0), element-wise."""


class BatchNorm(_NoSettings):
    """Per channel (or per feature, once flat): a scale and a shift learnt in training."""


class GlobalAvgPool(_NoSettings):
    """(C, H, W) -> (C, 1, 1): the mean of each channel."""


class Flatten(_NoSettings):
    """(C, H, W) -> (C*H*W,)."""


class Softmax(_NoSettings):
    """Probabilities over the classes; closes the graph."""


Layer = Union[Conv, BatchNorm, ReLU, MaxPool, AvgPool, GlobalAvgPool, Dropout, Flatten, Linear, Softmax]

# The named architectures, written in the grammar. Their parameter counts are tested.
NAMED: dict[str, str] = {
    SPEC_ARCH: "conv32-conv32-pool-conv64-conv64-pool-fc256-fc10",  # 870,634: DEVELOPERS.md
    "notebook-cnn": "conv32-pool-conv64-pool-fc256-fc10",  # 824,458: the seed notebook's MNIST_CNN
    "mlp": "fc128-fc10",  # 101,770: the notebook's baseline MLP
    "logreg": "fc10",  # 7,850: logistic regression
    # Microcontroller-sized (docs/architectures.md#edge): int8 weights under 64 KB, peak
    # activations under 16 KB at batch 1, global average pooling in place of the dense layer.
    "edge": "conv16-bn-pool-conv32-bn-conv32-bn-pool-conv48-bn-conv48-bn-gap-fc10",
}
DESCRIPTIONS = {
    SPEC_ARCH: "the spec CNN: 2x (conv, conv, pool), FC 256, FC 10",
    "notebook-cnn": "the seed notebook's CNN: 2x (conv, pool), FC 256, FC 10",
    "mlp": "multilayer perceptron: 784 -> 128 (ReLU) -> 10",
    "logreg": "logistic regression: 784 -> 10",
    "edge": "microcontroller-sized CNN: 5 convs with batch normalization, global average pooling, FC 10",
}

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
# Refused above these: a typo (conv40960) must not start a run that cannot fit in memory.
MAX_PARAMS = 50_000_000
MAX_ACTIVATIONS = 16_000_000  # elements of one image's largest tensor


# ---------------------------------------------------------------- the grammar

_CONV = re.compile(r"conv(\d+)((?:[kspg]\d+)*)")
_POOL = re.compile(r"(max|avg)?pool(\d+)?(?:s(\d+))?")
_DROP = re.compile(r"drop(?:out)?(\d*\.?\d+)")
_FC = re.compile(r"(?:fc|dense)(\d+)")
_WORDS = {"bn": BatchNorm, "relu": ReLU, "gap": GlobalAvgPool, "flatten": Flatten, "softmax": Softmax}
GRAMMAR_HINT = "write layers as conv32[k3][s1][p1][g1], bn, relu, pool[2][s2], avgpool[2][s2], gap, drop0.25, flatten, fc256 (docs/architectures.md)"


def _conv(token: str, digits: str, options: str) -> Conv:
    seen: dict[str, int] = {}
    for key, value in re.findall(r"([kspg])(\d+)", options):
        if key in seen:
            raise ValueError(f"'{key}' is given twice")
        seen[key] = int(value)
    kernel = seen.get("k", 3)
    return Conv(int(digits), kernel, seen.get("p", kernel // 2), seen.get("s", 1), seen.get("g", 1))


def parse_token(token: str) -> Layer:
    """One written layer -> its Layer. Raises ValueError saying what is wrong."""
    t = token.strip().lower()
    if t in _WORDS:
        return _WORDS[t]()
    if m := _CONV.fullmatch(t):
        return _conv(t, m.group(1), m.group(2))
    if m := _POOL.fullmatch(t):
        kind = AvgPool if m.group(1) == "avg" else MaxPool
        kernel = int(m.group(2)) if m.group(2) else 2
        return kind(kernel, int(m.group(3)) if m.group(3) else None)
    if m := _DROP.fullmatch(t):
        p = float(m.group(1))
        if not 0 <= p < 1:
            raise ValueError(f"dropout {p:g} is not a probability in [0, 1)")
        return Dropout(p)
    if m := _FC.fullmatch(t):
        return Linear(int(m.group(1)))
    raise ValueError("not a layer")


def format_layer(layer: Layer) -> str:
    """A Layer -> its token (the shortest: defaults left out)."""
    if isinstance(layer, Conv):
        k = layer.kernel
        return (f"conv{layer.out_channels}" + (f"k{k}" if k != 3 else "") + (f"s{layer.stride}" if layer.stride != 1 else "")
                + (f"p{layer.padding}" if layer.padding != k // 2 else "") + (f"g{layer.groups}" if layer.groups != 1 else ""))
    if isinstance(layer, (MaxPool, AvgPool)):
        word = "pool" if isinstance(layer, MaxPool) else "avgpool"
        stride = layer.stride if layer.stride not in (None, layer.kernel) else None
        return word + (str(layer.kernel) if layer.kernel != 2 or stride else "") + (f"s{stride}" if stride else "")
    if isinstance(layer, Dropout):
        return f"drop{layer.p:g}"
    if isinstance(layer, Linear):
        return f"fc{layer.out_features}"
    return next(word for word, kind in _WORDS.items() if type(layer) is kind)


@dataclass(frozen=True)
class Architecture:
    """A network: its name (file names come from it), its layers, and for each layer where the
    user wrote it ("layer 3 conv64"; implied layers name the layer they follow)."""

    name: str
    layers: tuple[Layer, ...]
    labels: tuple[str, ...] = field(default=(), compare=False, repr=False)

    @property
    def spec(self) -> str:
        """The canonical layer string: the shortest that parses back to these layers."""
        return format_layers(self.layers)


def _implied(written: list[tuple[Layer, str]]) -> list[tuple[Layer, str]]:
    """What was written plus the implied layers: a ReLU after every conv and fc but the last
    (after its batch normalization, where one follows) when no `relu` was written; a Flatten
    before the first fc when none was written; a closing Softmax; and no bias on a conv or fc
    that batch normalization follows (its shift is the bias)."""
    layers = list(written)
    if not any(isinstance(layer, ReLU) for layer, _ in layers):
        last_fc = max((i for i, (layer, _) in enumerate(layers) if isinstance(layer, Linear)), default=-1)
        wants = lambda i: isinstance(layers[i][0], (Conv, Linear)) and i != last_fc  # noqa: E731
        out: list[tuple[Layer, str]] = []
        for i, (layer, label) in enumerate(layers):
            out.append((layer, label))
            next_is_bn = i + 1 < len(layers) and isinstance(layers[i + 1][0], BatchNorm)
            if (wants(i) and not next_is_bn) or (isinstance(layer, BatchNorm) and i > 0 and wants(i - 1)):
                out.append((ReLU(), f"relu after {label}"))
        layers = out
    if not any(isinstance(layer, Flatten) for layer, _ in layers):
        first_fc = next((i for i, (layer, _) in enumerate(layers) if isinstance(layer, Linear)), None)
        if first_fc is not None:
            layers.insert(first_fc, (Flatten(), f"flatten before {layers[first_fc][1]}"))
    if layers and not isinstance(layers[-1][0], Softmax):
        layers.append((Softmax(), f"softmax after {layers[-1][1]}"))
    for i, (layer, label) in enumerate(layers[:-1]):
        if isinstance(layer, (Conv, Linear)) and isinstance(layers[i + 1][0], BatchNorm):
            layers[i] = (replace(layer, bias=False), label)
    return layers


def parse_layers(text: str) -> tuple[tuple[Layer, ...], tuple[str, ...]]:
    """A layer string -> (layers, labels). Raises ConfigError naming the token that is wrong."""
    tokens = [t for t in re.split(r"[\s\-]+", text.strip()) if t]
    if not tokens:
        raise ConfigError(f"the architecture {text!r} has no layers: {GRAMMAR_HINT}")
    written = []
    for n, token in enumerate(tokens, 1):
        try:
            layer = parse_token(token)
        except ValueError as exc:
            raise ConfigError(f"layer {n} {token!r}: {exc}; {GRAMMAR_HINT}") from None
        written.append((layer, f"layer {n} {token.lower()}"))
    pairs = _implied(written)
    return tuple(layer for layer, _ in pairs), tuple(label for _, label in pairs)


def format_layers(layers: tuple[Layer, ...]) -> str:
    """Layers -> the shortest string that parses back to them: implied layers left out where
    leaving them out changes nothing."""
    tokens = [format_layer(layer) for layer in layers]
    for drop in (("relu", "flatten", "softmax"), ("flatten", "softmax"), ("softmax",), ()):
        short = [t for t in tokens if t not in drop]
        try:
            if short and parse_layers("-".join(short))[0] == tuple(layers):
                return "-".join(short)
        except ConfigError:
            pass
    return "-".join(tokens)


# ---------------------------------------------------------------- naming and files

def _custom_name(layers: tuple[Layer, ...]) -> str:
    """A named architecture when the layers are one; else custom-<8 hex digits of the string>."""
    spec = format_layers(layers)
    for name, text in NAMED.items():
        if parse_layers(text)[0] == layers:
            return name
    return "custom-" + hashlib.sha256(spec.encode()).hexdigest()[:8]


def _token_of(entry: object, where: str) -> str:
    """One entry of a file's `layers` list: a token ("conv32k5") or a table
    ({"type": "conv", "filters": 32, "kernel": 5, "stride": 1, "padding": 2, "groups": 1})."""
    if isinstance(entry, str):
        return entry
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ConfigError(f"{where}: {entry!r} is neither a layer string nor a table with a 'type'")
    kind, rest = entry["type"].lower(), {k: v for k, v in entry.items() if k != "type"}
    keys = {"conv": {"filters": "", "kernel": "k", "stride": "s", "padding": "p", "groups": "g"},
            "maxpool": {"kernel": "", "stride": "s"}, "pool": {"kernel": "", "stride": "s"},
            "avgpool": {"kernel": "", "stride": "s"}, "dropout": {"p": ""}, "drop": {"p": ""},
            "dense": {"units": ""}, "fc": {"units": ""}, "linear": {"units": ""}}
    allowed = keys.get(kind, {} if kind in _WORDS or kind == "batchnorm" else None)
    if allowed is None:
        raise ConfigError(f"{where}: unknown layer type {entry['type']!r}: conv, bn, relu, maxpool, avgpool, gap, dropout, flatten, dense")
    if unknown := sorted(set(rest) - set(allowed)):
        raise ConfigError(f"{where}: {kind} takes {', '.join(allowed) or 'no settings'}, not {', '.join(unknown)}")
    for key, value in rest.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (key == "p" or float(value).is_integer())
        if not ok:
            raise ConfigError(f"{where}: {kind} {key} {value!r} is not {'a number' if key == 'p' else 'a whole number'}")
    first = [k for k, prefix in allowed.items() if prefix == ""]
    if first and first[0] not in rest and kind not in ("maxpool", "pool", "avgpool"):
        raise ConfigError(f"{where}: {kind} needs '{first[0]}'")
    word = {"batchnorm": "bn", "maxpool": "pool", "dropout": "drop", "dense": "fc", "linear": "fc"}.get(kind, kind)
    head = "".join(f"{rest[k]:g}" if k == "p" else str(int(rest[k])) for k in first if k in rest)
    if word in ("pool", "avgpool") and "stride" in rest and "kernel" not in rest:
        head = "2"
    return word + head + "".join(f"{prefix}{int(rest[k])}" for k, prefix in allowed.items() if prefix and k in rest)


def read_arch_file(path: Path) -> Architecture:
    """A JSON or TOML file: {"name": "tiny", "layers": "conv8-pool-fc10"}, or `layers` as a list
    of tokens or of tables (docs/architectures.md)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"architecture file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"architecture file {path} is not valid {path.suffix.lstrip('.').upper() or 'JSON'} ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or "layers" not in data:
        raise ConfigError(f"architecture file {path} needs a 'layers' entry (a layer string or a list of layers)")
    layers = data["layers"]
    if isinstance(layers, list):
        text = "-".join(_token_of(e, f"{path} layer {i}") for i, e in enumerate(layers, 1))
    elif isinstance(layers, str):
        text = layers
    else:
        raise ConfigError(f"{path}: 'layers' must be a layer string or a list of layers, not {type(layers).__name__}")
    parsed, labels = parse_layers(text)
    name = data.get("name", path.stem.lower())
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"{path}: name {name!r} must be 1-40 lower-case letters, digits, '-' or '_' (it names the released files)")
    if name in NAMED and parse_layers(NAMED[name])[0] != parsed:
        raise ConfigError(f"{path}: name {name!r} is a built-in architecture with other layers; choose another name")
    return check(Architecture(name, parsed, labels))


def resolve_arch(arch: Union[str, Architecture, None] = SPEC_ARCH) -> Architecture:
    """A name (spec, edge, ...), a layer string, or a .json/.toml file -> a checked Architecture.
    Raises ConfigError with one line naming what is wrong."""
    if isinstance(arch, Architecture):
        return arch
    text = (arch or SPEC_ARCH).strip()
    if text in NAMED:
        return check(Architecture(text, *parse_layers(NAMED[text])))
    if text.lower().endswith((".json", ".toml")) or Path(text).is_file():
        return read_arch_file(Path(text))
    if re.fullmatch(r"[a-z][a-z_]*(-[a-z][a-z_]*)*", text.lower()) and not all(t in _WORDS for t in text.lower().split("-")) \
            and not any(_POOL.fullmatch(t) for t in text.lower().split("-")):
        raise ConfigError(f"unknown architecture {text!r}: name one of {', '.join(NAMED)}, or {GRAMMAR_HINT}")
    layers, labels = parse_layers(text)
    return check(Architecture(_custom_name(layers), layers, labels))


def layers_for(arch: Union[str, Architecture] = SPEC_ARCH) -> tuple[Layer, ...]:
    return resolve_arch(arch).layers


def describe(name: str, layers: str = "") -> str:
    """What an architecture is, in a line: a built-in's description, else its layer string (a
    file may not reuse a built-in's name for other layers, so the name decides)."""
    if name in DESCRIPTIONS:
        return DESCRIPTIONS[name]
    return f"custom network {layers}" if layers else f"custom network {name}"


def arch_option(name: str, layers: str) -> str:
    """What to pass to --arch for this architecture again, quoted for a shell: a built-in's name,
    else its layer string (a file's name would need the file)."""
    import shlex

    return name if name in NAMED else shlex.quote(layers)


# ---------------------------------------------------------------- shapes, parameters, costs

def w_out(w_in: int, k: int, p: int, s: int = 1) -> int:
    """The seed notebook's dimension calculator: w_out = (w_in - k + 2p)/s + 1."""
    return (w_in - k + 2 * p) // s + 1


@dataclass(frozen=True)
class LayerRow:
    name: str  # the module's name (conv1, relu1, ...): the checkpoint's keys
    output_shape: tuple[int, ...]  # (C, H, W) or (features,)
    formula: str
    params: int  # trainable
    layer: str = ""  # its token (conv32k5)
    macs: int = 0  # multiply-adds per image
    source: str = ""  # where it was written ("layer 3 conv64"), or what implied it


def _bad(label: str, problem: str) -> ConfigError:
    return ConfigError(f"{label}: {problem}")


def _layer_rows(a: Architecture) -> list[LayerRow]:
    labels = a.labels or tuple(f"layer {i} {format_layer(x)}" for i, x in enumerate(a.layers, 1))
    c, h, w = CHANNELS, IMAGE_SIZE, IMAGE_SIZE
    features: Optional[int] = None  # set once flat
    rows = [LayerRow("input", (c, h, w), "", 0, "input")]
    counts: dict[str, int] = {}
    last = len(a.layers) - 1
    for i, (layer, label) in enumerate(zip(a.layers, labels)):
        kind = type(layer).__name__.lower()
        counts[kind] = counts.get(kind, 0) + 1
        name, token = f"{kind}{counts[kind]}", format_layer(layer)
        spatial = (Conv, MaxPool, AvgPool, GlobalAvgPool)
        if isinstance(layer, spatial) and features is not None:
            raise _bad(label, f"needs a CxHxW input, but the network is already flat ({features} features) here")
        params, macs, formula = 0, 0, ""
        if isinstance(layer, Conv):
            k, n, g, s, p = layer.kernel, layer.out_channels, layer.groups, layer.stride, layer.padding
            if min(n, k, g, s) < 1:
                raise _bad(label, "filters, kernel, stride and groups must be at least 1")
            if c % g or n % g:
                raise _bad(label, f"groups {g} must divide its {c} input channels and its {n} filters")
            if p >= k:
                raise _bad(label, f"padding {p} must be smaller than the {k}x{k} kernel")
            if k > h + 2 * p or k > w + 2 * p:
                raise _bad(label, f"its {h}x{w} input (padded by {p}) is smaller than the {k}x{k} kernel")
            h, w = w_out(h, k, p, s), w_out(w, k, p, s)
            params = (k * k * (c // g) + layer.bias) * n  # ((k*k*d)+1)*n: a bias per filter
            formula = f"(({k}*{k}*{c // g}){'+1' if layer.bias else ''})*{n}"
            macs = h * w * n * k * k * (c // g)
            c = n
            shape: tuple[int, ...] = (c, h, w)
        elif isinstance(layer, (MaxPool, AvgPool)):
            k, s = layer.kernel, layer.stride or layer.kernel
            if min(k, s) < 1:
                raise _bad(label, "kernel and stride must be at least 1")
            if k > h or k > w:
                raise _bad(label, f"its {h}x{w} input is smaller than the {k}x{k} window")
            h, w = w_out(h, k, 0, s), w_out(w, k, 0, s)
            shape = (c, h, w)
        elif isinstance(layer, GlobalAvgPool):
            h = w = 1
            shape = (c, 1, 1)
        elif isinstance(layer, BatchNorm):
            width = features if features is not None else c
            params, formula = 2 * width, f"2*{width}"
            shape = rows[-1].output_shape
        elif isinstance(layer, Flatten):
            if features is not None:
                raise _bad(label, "the network is already flat here")
            features = c * h * w  # e.g. 7*7*64 = 3136 for the spec CNN
            formula, shape = f"{h}*{w}*{c}", (features,)
        elif isinstance(layer, Linear):
            if features is None:
                raise _bad(label, "an fc layer needs a flat input: put flatten (or gap) before it")
            if layer.out_features < 1:
                raise _bad(label, "an fc layer needs at least 1 output")
            m = layer.out_features
            params = (features + layer.bias) * m  # (n+1)*m: a bias per output
            formula, macs = f"({features}{'+1' if layer.bias else ''})*{m}", features * m
            features, shape = m, (m,)
        elif isinstance(layer, Softmax):
            if i != last:
                raise _bad(label, "softmax closes the network: nothing may follow it")
            shape = rows[-1].output_shape
        else:  # ReLU, Dropout keep the shape
            shape = rows[-1].output_shape
        if h < 1 or w < 1:
            raise _bad(label, f"its output would be {h}x{w}: the image is used up before this layer")
        rows.append(LayerRow(name, shape, formula, params, token, macs, label))
    body = [r for r, layer in zip(rows[1:], a.layers) if not isinstance(layer, (Softmax, Dropout))]
    closing = next((layer for layer in reversed(a.layers) if not isinstance(layer, (Softmax, Dropout))), None)
    if not isinstance(closing, Linear) or closing.out_features != NUM_CLASSES or not body or body[-1].output_shape != (NUM_CLASSES,):
        what = body[-1].source if body else "the network"
        raise ConfigError(f"{what}: fc{NUM_CLASSES} must close the network ({NUM_CLASSES} classes); end the layers with fc{NUM_CLASSES}")
    if isinstance(a.layers[-2], Dropout):
        raise _bad(labels[-2], f"dropout after the closing fc{NUM_CLASSES} would drop classes: put it before")
    return rows


def check(a: Architecture) -> Architecture:
    """The architecture itself when it is one we can build; else ConfigError naming the layer."""
    rows = _layer_rows(a)
    params = sum(r.params for r in rows)
    if params > MAX_PARAMS:
        raise ConfigError(f"{a.spec}: {params:,} parameters is above the limit of {MAX_PARAMS:,}; use fewer or smaller layers")
    big = max(rows, key=lambda r: _elements(r.output_shape))
    if _elements(big.output_shape) > MAX_ACTIVATIONS:
        raise _bad(big.source, f"its output of {_elements(big.output_shape):,} values per image is above the limit of {MAX_ACTIVATIONS:,}")
    return a


def layer_table(arch: Union[str, Architecture] = SPEC_ARCH) -> list[LayerRow]:
    """Per-layer output shape, trainable parameters (with the formula) and multiply-adds."""
    return _layer_rows(resolve_arch(arch))


def total_params(arch: Union[str, Architecture] = SPEC_ARCH) -> int:
    return sum(row.params for row in layer_table(arch))


def _elements(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _folded(layers: tuple[Layer, ...]) -> list[bool]:
    """For each layer: is it a batch normalization folded into the conv or fc before it (as the
    export does)?"""
    return [isinstance(x, BatchNorm) and i > 0 and isinstance(layers[i - 1], (Conv, Linear)) for i, x in enumerate(layers)]


@dataclass(frozen=True)
class Costs:
    """What a network costs to deploy, from the shapes alone.

    int8_weight_bytes: the exported graph's weights (batch normalization folded into the conv or
    fc before it) at one byte each, with their biases at four (int32, as ONNX Runtime's QDQ
    quantization and CMSIS-NN keep them) and any unfolded batch normalization as float scale and
    shift. peak_activation_bytes: batch 1, one byte per int8 activation; layers run one after
    another, each tensor is freed once the next layer has read it, and ReLU, dropout, flatten
    and a folded batch normalization work in place: the peak is the largest input + output of one layer."""

    params: int
    macs: int
    fp32_bytes: int
    int8_weight_bytes: int
    peak_activation_bytes: int
    peak_layer: str  # the layer where the peak is reached


IN_PLACE = (ReLU, Dropout, Flatten, Softmax, BatchNorm)


def costs(arch: Union[str, Architecture] = SPEC_ARCH) -> Costs:
    a = resolve_arch(arch)
    rows = _layer_rows(a)
    folded = _folded(a.layers)
    weight_bytes, peak, peak_at = 0, 0, ""
    previous = _elements(rows[0].output_shape)  # the input image, one byte per pixel once quantized
    for i, (layer, row) in enumerate(zip(a.layers, rows[1:])):
        out = _elements(row.output_shape)
        if isinstance(layer, (Conv, Linear)):
            channels = layer.out_channels if isinstance(layer, Conv) else layer.out_features
            has_bias = layer.bias or (i + 1 < len(a.layers) and folded[i + 1])
            weight_bytes += row.params - (channels if layer.bias else 0) + 4 * channels * has_bias
        elif isinstance(layer, BatchNorm) and not folded[i]:
            weight_bytes += 4 * row.params
        if not isinstance(layer, IN_PLACE):
            if previous + out > peak:
                peak, peak_at = previous + out, row.source
            previous = out
    params = sum(r.params for r in rows)
    return Costs(params, sum(r.macs for r in rows), 4 * params, weight_bytes, peak, peak_at)
