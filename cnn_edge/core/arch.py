"""Architectures as plain data: a layer string people type, the layer list it means, and what
that list costs (output shapes, parameters, multiply-adds, bytes). Torch-free, so `cnn-edge info`
answers at once and a bad architecture is refused before any training; `training/model.py`
builds the torch modules from the same list. The grammar is in docs/architectures.md.

    conv32-conv32-pool-conv64-conv64-pool-fc256-fc10      the spec CNN (870,634 parameters)
    conv8-conv16k5s2p0g2-bn-avgpool-gap-drop0.25-fc10     every option written out
"""
from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Optional, Union

from .constants import CHANNELS, IMAGE_SIZE, NUM_CLASSES, SPEC_ARCH
from .errors import ConfigError, first_line


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
GRAMMAR_HINT = "write layers joined by '-': conv32[k3][s1][p1][g1], bn, relu, pool[2][s2], avgpool[2][s2], gap, drop0.25, flatten, fc256 (docs/architectures.md)"
# What a token that starts like a layer but does not parse should have looked like.
_SHAPES = (("conv", "a conv is conv<filters> and any of k<kernel> s<stride> p<padding> g<groups>, each once: conv32, conv32k5s2p0g2"),
           ("maxpool", "a pool is pool<window>s<stride>: pool, pool3s2"), ("avgpool", "an avgpool is avgpool<window>s<stride>: avgpool, avgpool3s2"),
           ("pool", "a pool is pool<window>s<stride>: pool, pool3s2"), ("drop", "a dropout is drop<probability in [0, 1)>: drop0.25"),
           ("fc", "an fc is fc<outputs>: fc256"), ("dense", "a dense layer is dense<outputs>: dense256"))
MAX_DIGITS = 9  # no layer needs a billion of anything; longer numbers are typos (and Python's int() caps at 4,300 digits)


def _whole(digits: str) -> int:
    if len(digits.lstrip("0")) > MAX_DIGITS:
        raise ValueError(f"{digits} is too large a number")
    return int(digits)


def _conv(digits: str, options: str) -> Conv:
    seen: dict[str, int] = {}
    for key, value in re.findall(r"([kspg])(\d+)", options):
        if key in seen:
            raise ValueError(f"'{key}' is given twice: give each of k, s, p and g once")
        seen[key] = _whole(value)
    kernel = seen.get("k", 3)
    return Conv(_whole(digits), kernel, seen.get("p", kernel // 2), seen.get("s", 1), seen.get("g", 1))


def _pool(kind: type, kernel: int, stride: Optional[int]) -> Layer:
    # A stride equal to the window is the default (None): pool2s2 and pool are one layer.
    return kind(kernel, None if stride == kernel else stride)


def parse_token(token: str) -> Layer:
    """One written layer -> its Layer. Raises ValueError saying what is wrong."""
    t = token.strip().lower()
    if t in _WORDS:
        return _WORDS[t]()
    if m := _CONV.fullmatch(t):
        return _conv(m.group(1), m.group(2))
    if m := _POOL.fullmatch(t):
        kind = AvgPool if m.group(1) == "avg" else MaxPool
        kernel = _whole(m.group(2)) if m.group(2) else 2
        return _pool(kind, kernel, _whole(m.group(3)) if m.group(3) else None)
    if m := _DROP.fullmatch(t):
        p = float(m.group(1))
        if not 0 <= p < 1:
            raise ValueError(f"dropout {_number(p)} is not a probability in [0, 1): drop0.25 drops a quarter")
        return Dropout(p)
    if m := _FC.fullmatch(t):
        return Linear(_whole(m.group(1)))
    for start, shape in _SHAPES:
        if t.startswith(start):
            raise ValueError(shape)
    raise ValueError(f"not a layer; {GRAMMAR_HINT}")


def _number(x: float) -> str:
    """A probability written out in full, digits exact: 0.25, 0.00001 (never 1e-05, which the grammar does not read)."""
    text = format(Decimal(repr(float(x))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_layer(layer: Layer) -> str:
    """A Layer -> its token (the shortest: defaults left out)."""
    if isinstance(layer, Conv):
        k = layer.kernel
        return (f"conv{layer.out_channels}" + (f"k{k}" if k != 3 else "") + (f"s{layer.stride}" if layer.stride != 1 else "")
                + (f"p{layer.padding}" if layer.padding != k // 2 else "") + (f"g{layer.groups}" if layer.groups != 1 else ""))
    if isinstance(layer, (MaxPool, AvgPool)):
        word = "pool" if isinstance(layer, MaxPool) else "avgpool"
        stride = layer.stride if layer.stride not in (None, layer.kernel) else None
        return word + (str(layer.kernel) if layer.kernel != 2 or stride is not None else "") + (f"s{stride}" if stride is not None else "")
    if isinstance(layer, Dropout):
        return f"drop{_number(layer.p)}"
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


def _tokens(text: str) -> list[str]:
    return [t for t in re.split(r"[\s\-]+", text.strip()) if t]


def _shown(text: str, limit: int = 40) -> str:
    """A user's text cut for an error line."""
    return text if len(text) <= limit else text[:limit] + "..."


def parse_layers(text: str) -> tuple[tuple[Layer, ...], tuple[str, ...]]:
    """A layer string -> (layers, labels). Raises ConfigError naming the token that is wrong."""
    tokens = _tokens(text)
    if not tokens:
        raise ConfigError(f"the architecture {_shown(text)!r} has no layers: {GRAMMAR_HINT}")
    written = []
    for n, token in enumerate(tokens, 1):
        label = f"layer {n} {_shown(token.lower())}"
        try:
            layer = parse_token(token)
        except ValueError as exc:
            raise ConfigError(f"{label}: {exc}") from None
        written.append((layer, label))
    pairs = _implied(written)
    return tuple(layer for layer, _ in pairs), tuple(label for _, label in pairs)


def format_layers(layers: tuple[Layer, ...]) -> str:
    """Layers -> the shortest string that parses back to them: implied layers left out where
    leaving them out changes nothing."""
    tokens = [format_layer(layer) for layer in layers]
    best = tokens
    # Leave out each subset of the implied words (relu, flatten, softmax); the fewest tokens win,
    # ties going to the earlier subset, so the result is a function of the layers alone.
    for drop in itertools.chain.from_iterable(itertools.combinations(_IMPLIED, n) for n in (3, 2, 1)):
        short = [t for t in tokens if t not in drop]
        if len(short) >= len(best) or not short:
            continue
        try:
            if parse_layers("-".join(short))[0] == tuple(layers):
                best = short
        except ConfigError:
            pass
    return "-".join(best)


_IMPLIED = ("relu", "flatten", "softmax")


# ---------------------------------------------------------------- naming and files

def _custom_name(layers: tuple[Layer, ...]) -> str:
    """A named architecture when the layers are one; else custom-<8 hex digits of the string>."""
    spec = format_layers(layers)
    for name, text in NAMED.items():
        if parse_layers(text)[0] == layers:
            return name
    return "custom-" + hashlib.sha256(spec.encode()).hexdigest()[:8]


# A table's type -> the token's word, and its keys -> their letters ("" for the number right
# after the word: conv32, pool3, drop0.25, fc256).
_TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "conv": ("conv", {"filters": "", "kernel": "k", "stride": "s", "padding": "p", "groups": "g"}),
    "pool": ("pool", {"kernel": "", "stride": "s"}), "maxpool": ("pool", {"kernel": "", "stride": "s"}),
    "avgpool": ("avgpool", {"kernel": "", "stride": "s"}),
    "dropout": ("drop", {"p": ""}), "drop": ("drop", {"p": ""}),
    "dense": ("fc", {"units": ""}), "fc": ("fc", {"units": ""}), "linear": ("fc", {"units": ""}),
    "bn": ("bn", {}), "batchnorm": ("bn", {}), "relu": ("relu", {}), "gap": ("gap", {}),
    "flatten": ("flatten", {}), "softmax": ("softmax", {}),
}
FILE_KEYS = ("name", "layers", "description")


def _token_of(entry: object, where: str) -> str:
    """One entry of a file's `layers` list: a token ("conv32k5") or a table
    ({"type": "conv", "filters": 32, "kernel": 5, "stride": 1, "padding": 2, "groups": 1})."""
    if isinstance(entry, str):
        if len(_tokens(entry)) != 1:
            raise ConfigError(f"{where}: {_shown(entry)!r} is not one layer: write one token per entry (conv32k5), or the whole string as layers")
        return entry
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise ConfigError(f"{where}: {_shown(repr(entry))} is neither a layer token nor a table with a 'type'")
    kind, rest = entry["type"].strip().lower(), {k: v for k, v in entry.items() if k != "type"}
    if kind not in _TABLES:
        raise ConfigError(f"{where}: unknown layer type {_shown(entry['type'])!r}: use {', '.join(_TABLES)}")
    word, allowed = _TABLES[kind]
    if unknown := sorted(set(rest) - set(allowed), key=str):
        raise ConfigError(f"{where}: a {kind} takes {', '.join(allowed) or 'no settings'}, not {', '.join(map(str, unknown))}")
    for key, value in rest.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")
        if key == "p":
            if not number or not 0 <= value < 1:
                raise ConfigError(f"{where}: {kind} p {value!r} is not a probability in [0, 1)")
            continue
        least = 0 if key == "padding" else 1
        if not number or not float(value).is_integer() or value < least:
            raise ConfigError(f"{where}: {kind} {key} {value!r} is not a whole number >= {least}")
    first = next((k for k, letter in allowed.items() if letter == ""), None)
    if first is not None and first not in rest and word not in ("pool", "avgpool"):
        raise ConfigError(f"{where}: a {kind} needs '{first}'")
    head = ""
    if first in rest:
        head = _number(rest[first]) if first == "p" else str(int(rest[first]))
    elif "stride" in rest:
        head = "2"  # the default window, written so the stride's 's' follows a number
    return word + head + "".join(f"{letter}{int(rest[k])}" for k, letter in allowed.items() if letter and k in rest)


def read_arch_file(path: Path) -> Architecture:
    """A JSON or TOML file: {"name": "tiny", "layers": "conv8-pool-fc10"}, or `layers` as a list
    of tokens or of tables (docs/architectures.md)."""
    path = Path(path)
    kind = {".json": "JSON", ".toml": "TOML"}.get(path.suffix.lower())
    if kind is None:
        raise ConfigError(f"architecture file {path} must end in .json or .toml (docs/architectures.md)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"architecture file {path} cannot be read ({exc.strerror or exc})") from None
    try:
        if kind == "TOML":
            import tomllib
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ConfigError(f"architecture file {path} is not valid {kind} ({first_line(exc)})") from None
    if not isinstance(data, dict) or "layers" not in data:
        raise ConfigError(f"architecture file {path} needs a 'layers' entry (a layer string or a list of layers)")
    if unknown := sorted(set(data) - set(FILE_KEYS)):
        raise ConfigError(f"{path}: unknown key {_shown(unknown[0])!r}: an architecture file has {', '.join(FILE_KEYS)}")
    layers = data["layers"]
    if isinstance(layers, list):
        text = "-".join(_token_of(e, f"{path} layer {i}") for i, e in enumerate(layers, 1))
    elif isinstance(layers, str):
        text = layers
    else:
        raise ConfigError(f"{path}: 'layers' must be a layer string or a list of layers, not {type(layers).__name__}")
    if not _tokens(text):
        raise ConfigError(f"{path}: 'layers' is empty: {GRAMMAR_HINT}")
    parsed, labels = parse_layers(text)
    if "name" in data:
        name = data["name"]
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise ConfigError(f"{path}: name {_shown(repr(name))} must be 1-40 lower-case letters, digits, '-' or '_', starting with a letter or digit (it names the released files)")
    else:
        name = path.stem.lower()
        if not NAME_RE.fullmatch(name):
            raise ConfigError(f"{path}: the file's name {_shown(name)!r} cannot name the released files: add \"name\" (1-40 lower-case letters, digits, '-' or '_')")
    if name in NAMED and parse_layers(NAMED[name])[0] != parsed:
        raise ConfigError(f"{path}: name {name!r} is a built-in architecture with other layers; choose another name")
    return check(Architecture(name, parsed, labels))


def _looks_like_file(text: str) -> bool:
    return text.lower().endswith((".json", ".toml")) or "/" in text or "\\" in text


def resolve_arch(arch: Union[str, Path, Architecture, None] = SPEC_ARCH) -> Architecture:
    """A name (spec, edge, ...), a layer string, or a .json/.toml file -> a checked Architecture.
    Raises ConfigError with one line naming what is wrong."""
    if isinstance(arch, Architecture):
        return arch
    if arch is None:
        arch = SPEC_ARCH
    if isinstance(arch, Path):
        return read_arch_file(arch)
    text = arch.strip()
    if text.lower() in NAMED:
        return check(Architecture(text.lower(), *parse_layers(NAMED[text.lower()])))
    if _looks_like_file(text):
        return read_arch_file(Path(text))
    tokens = _tokens(text)
    if tokens and not any(_parses(t) for t in tokens):
        # Not one layer in it: a name typed wrong (spce), not a layer string.
        close = difflib.get_close_matches(text.lower(), NAMED, n=1)
        guess = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(f"unknown architecture {_shown(text)!r}: {guess}name one of {', '.join(NAMED)}, give a .json/.toml file, or {GRAMMAR_HINT}")
    layers, labels = parse_layers(text)
    return check(Architecture(_custom_name(layers), layers, labels))


def _parses(token: str) -> bool:
    try:
        parse_token(token)
    except ValueError:
        return False
    return True


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
    rows = [LayerRow("input", (c, h, w), "", 0, "", 0, "input")]
    counts: dict[str, int] = {}
    last = len(a.layers) - 1
    for i, (layer, label) in enumerate(zip(a.layers, labels)):
        kind = type(layer).__name__.lower()
        counts[kind] = counts.get(kind, 0) + 1
        name, token = f"{kind}{counts[kind]}", format_layer(layer)
        spatial = (Conv, MaxPool, AvgPool, GlobalAvgPool)
        if isinstance(layer, spatial) and features is not None:
            raise _bad(label, f"needs a CxHxW input, but the network is already flat ({features} features) here: put it before the flatten and the first fc")
        params, macs, formula = 0, 0, ""
        if isinstance(layer, Conv):
            k, n, g, s, p = layer.kernel, layer.out_channels, layer.groups, layer.stride, layer.padding
            for what, value in (("filters", n), ("kernel", k), ("stride", s), ("groups", g)):
                if value < 1:
                    raise _bad(label, f"{what} {value} must be at least 1")
            if p < 0:
                raise _bad(label, f"padding {p} must be at least 0")
            if c % g or n % g:
                raise _bad(label, f"groups {g} must divide its {c} input channels and its {n} filters")
            if p >= k:
                raise _bad(label, f"padding {p} must be smaller than the {k}x{k} kernel")
            if k > h + 2 * p or k > w + 2 * p:
                raise _bad(label, f"its {h}x{w} input (padded by {p}) is smaller than the {k}x{k} kernel: use a smaller kernel or more padding")
            h, w = w_out(h, k, p, s), w_out(w, k, p, s)
            params = (k * k * (c // g) + layer.bias) * n  # ((k*k*d)+1)*n: a bias per filter
            formula = f"(({k}*{k}*{c // g})+1)*{n}" if layer.bias else f"({k}*{k}*{c // g})*{n}"
            macs = h * w * n * k * k * (c // g)
            c = n
            shape: tuple[int, ...] = (c, h, w)
        elif isinstance(layer, (MaxPool, AvgPool)):
            k, s = layer.kernel, layer.kernel if layer.stride is None else layer.stride
            for what, value in (("window", k), ("stride", s)):
                if value < 1:
                    raise _bad(label, f"{what} {value} must be at least 1")
            if k > h or k > w:
                raise _bad(label, f"its {h}x{w} input is smaller than the {k}x{k} window: remove it, or shrink the image less before it")
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
                raise _bad(label, "the network is already flat here: write one flatten")
            features = c * h * w  # e.g. 7*7*64 = 3136 for the spec CNN
            formula, shape = f"{h}*{w}*{c}", (features,)
        elif isinstance(layer, Linear):
            if features is None:
                raise _bad(label, "an fc layer needs a flat input: put flatten before it")
            if layer.out_features < 1:
                raise _bad(label, f"outputs {layer.out_features} must be at least 1")
            m = layer.out_features
            params = (features + layer.bias) * m  # (n+1)*m: a bias per output
            formula, macs = f"({features}{'+1' if layer.bias else ''})*{m}", features * m
            features, shape = m, (m,)
        elif isinstance(layer, Softmax):
            if i != last:
                raise _bad(label, "softmax closes the network: nothing may follow it (leave it out: it is implied)")
            shape = rows[-1].output_shape
        elif isinstance(layer, ReLU):
            if i > 0 and isinstance(a.layers[i - 1], ReLU):
                raise _bad(label, "a relu right after a relu does nothing: write one")
            shape = rows[-1].output_shape
        else:  # Dropout keeps the shape
            shape = rows[-1].output_shape
        if h < 1 or w < 1:
            raise _bad(label, f"its output would be {h}x{w}: the image is used up before this layer")
        rows.append(LayerRow(name, shape, formula, params, token, macs, label))
    body = [r for r, layer in zip(rows[1:], a.layers) if not isinstance(layer, (Softmax, Dropout))]
    closing = next((layer for layer in reversed(a.layers) if not isinstance(layer, (Softmax, Dropout))), None)
    if not isinstance(closing, Linear) or closing.out_features != NUM_CLASSES or not body or body[-1].output_shape != (NUM_CLASSES,):
        # Name the last layer the user wrote (an implied relu or softmax is not theirs to fix).
        written = [r.source for r in rows[1:] if r.source.startswith("layer ")] or [rows[-1].source]
        raise ConfigError(f"{written[-1]}: fc{NUM_CLASSES} must close the network ({NUM_CLASSES} classes); end the layers with fc{NUM_CLASSES}")
    if isinstance(a.layers[-2], Dropout):
        raise _bad(labels[-2], f"dropout after the closing fc{NUM_CLASSES} would drop classes: put it before")
    return rows


def check(a: Architecture) -> Architecture:
    """The architecture itself when it is one we can build; else ConfigError naming the layer."""
    rows = _layer_rows(a)
    params = sum(r.params for r in rows)
    if params > MAX_PARAMS:
        big = max(rows, key=lambda r: r.params)
        raise _bad(big.source, f"its {big.params:,} parameters make {params:,} in all, above the limit of {MAX_PARAMS:,}: use fewer filters or outputs")
    big = max(rows, key=lambda r: _elements(r.output_shape))
    if _elements(big.output_shape) > MAX_ACTIVATIONS:
        raise _bad(big.source, f"its output of {_elements(big.output_shape):,} values per image is above the limit of {MAX_ACTIVATIONS:,}: use fewer filters, a stride or a pool before it")
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


# How `costs` counts, in one line (`cnn-edge info` prints it; docs/architectures.md explains it).
COSTS_METHOD = (
    "int8 weight bytes: the exported graph's weights (batch normalization folded into the conv or fc "
    "before it) at 1 byte each, their biases at 4 (float in cnn-edge's int8 ONNX model, int32 in CMSIS-NN), "
    "an unfolded batch normalization's scale and shift at 4, quantization scales and zero points "
    "left out; peak activations: batch 1, 1 byte per 8-bit activation, layers run one after another, a tensor is "
    "freed once the next layer has read it, element-wise layers (relu, bn, dropout, flatten, softmax) work "
    "in place, so the peak is the largest input + output of one conv, pool or fc layer, the input image included")


@dataclass(frozen=True)
class Costs:
    """What a network costs to deploy, from the shapes alone (how: COSTS_METHOD).
    fp32_bytes is 4 bytes per trainable parameter."""

    params: int
    macs: int
    fp32_bytes: int
    int8_weight_bytes: int
    peak_activation_bytes: int
    peak_layer: str  # the layer where the peak is reached


IN_PLACE = (ReLU, Dropout, Flatten, Softmax, BatchNorm)


@dataclass(frozen=True)
class Budget:
    """A microcontroller's room for a network: int8 weights in flash, activations in RAM (the
    edge preset's targets: 64 KB and 16 KB)."""

    int8_weight_bytes: int = 64 * 1024
    peak_activation_bytes: int = 16 * 1024

    def misses(self, c: Costs) -> list[str]:
        """What `c` exceeds, in words; empty when it fits."""
        over = []
        if c.int8_weight_bytes > self.int8_weight_bytes:
            over.append(f"int8 weights {c.int8_weight_bytes:,} > {self.int8_weight_bytes:,} bytes")
        if c.peak_activation_bytes > self.peak_activation_bytes:
            over.append(f"peak activations {c.peak_activation_bytes:,} > {self.peak_activation_bytes:,} bytes")
        return over


MCU_BUDGET = Budget()


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
