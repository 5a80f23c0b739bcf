"""Files of a trace: every matrix as CSV, and the atomic writes every output goes through.

A file is written to a temporary sibling and renamed into place, so an
interrupted run never leaves a half-written CSV, picture or page behind.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

from .record import Trace
from .text import channel_labels

__all__ = ["atomic_write", "write_csv"]


def atomic_write(path: str | Path, data: bytes | str) -> str:
    """Write ``data`` (text as UTF-8) to ``path`` atomically: a temporary file in the same folder, then a rename."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give a file name")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no such folder {str(path.parent)!r} for {str(path)!r}; create it first")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would have made it (mkstemp makes 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _csv_number(v: float) -> str:
    return repr(float(v))


def write_csv(t: Trace, directory: str | Path) -> list[str]:
    """Write every matrix of the trace as ``DIR/<name>.csv`` (header row + row labels, full precision).

    Read one back with ``pandas.read_csv(path, index_col=0)``. Returns the paths written.
    """
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"--csv: {str(directory)!r} is a file; give a folder")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    tok, H = t.tokens, t.num_heads  # noqa: N806
    HC = t.v.size(0) * t.v.size(-1)  # noqa: N806
    d = t.x.size(1)
    labels = {
        "values": (tok, [f"x{c}" for c in range(d)]),
        "positional": (tok, [f"x{c}" for c in range(d)]),
        "x": (tok, [f"x{c}" for c in range(d)]),
        "w_q": ([f"x{c}" for c in range(d)], channel_labels("q", H, HC)),
        "w_k": ([f"x{c}" for c in range(d)], channel_labels("k", H, HC)),
        "w_v": ([f"x{c}" for c in range(d)], channel_labels("v", H, HC)),
        "w_o": (channel_labels("o", H, HC), [f"y{c}" for c in range(d)]),
        "q": (tok, channel_labels("q", H, HC)),
        "k": (tok, channel_labels("k", H, HC)),
        "v": (tok, channel_labels("v", H, HC)),
        "heads": (tok, channel_labels("o", H, HC)),
        "output": (tok, [f"y{c}" for c in range(d)]),
        "entropy": (tok, [f"head{h}" for h in range(H)]),
    }
    for name, m in t.matrices().items():
        rows, cols = labels.get(name, (tok, tok) if name.startswith(("scores", "weights")) else (None, None))
        m = m.detach().double()
        rows = rows if rows is not None else [f"head{h}" for h in range(m.size(0))]
        cols = cols if cols is not None else [str(c) for c in range(m.size(1))]
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow([""] + list(cols))
        for label, row in zip(rows, m.tolist()):
            writer.writerow([label] + [_csv_number(v) for v in row])
        written.append(atomic_write(directory / f"{name}.csv", buf.getvalue()))
    return written
