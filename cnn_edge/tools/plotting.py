"""Matplotlib for the --plot options: imported on demand (an optional extra), PNG bytes out."""
from __future__ import annotations

import io

from ..core.errors import ConfigError


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend; ConfigError naming the extra when missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot needs matplotlib: pip install 'cnn-edge[plot]'") from None
    return plt


def to_png(fig) -> bytes:
    """The figure as PNG bytes (the CLI writes them atomically), then closed."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    fig.clf()
    pyplot().close(fig)
    return buf.getvalue()
