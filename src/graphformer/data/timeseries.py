"""Multivariate time series: loading, standard splits, scaling and sliding windows.

A multivariate series is a table of T time steps (rows) by V variables
(columns). A forecasting sample is a window: ``seq_len`` rows of look-back
``x`` and the next ``pred_len`` rows ``y`` to predict, plus calendar features
of both (``x_mark``, ``y_mark``). The first row of ``y`` is the window's
forecast origin; nothing in ``x`` lies at or after it.

The splits follow the long-term forecasting protocol of Informer /
Autoformer / iTransformer (Time-Series-Library):

* ETTh1/ETTh2 (hourly): train rows [0, 8640), validation [8640, 11520),
  test [11520, 14400) -- 12/4/4 months of 30 days; ETTm1/ETTm2 (15-minute)
  the same borders times 4. Rows after the test block are unused.
* anything else (``"ratio"``): train = int(0.7 N) rows, test = int(0.2 N)
  rows at the end, validation = the rest in between.
* ``"tgcn"`` (T-GCN traffic protocol): the first int(0.8 N) rows train, the
  rest test, no validation block.

Validation and test windows begin ``seq_len`` rows before their border, so
the first forecast origin is the border itself (``"tgcn"`` keeps the test
windows inside the test block, as T-GCN does). Scalers are fitted on the
training rows only.

Legend: T time steps, V variables, F time features, L look-back (``seq_len``),
H horizon (``pred_len``), B batch, W windows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ..encodings import time_features

__all__ = [
    "PROTOCOLS",
    "ForecastData",
    "ForecastProtocol",
    "Scaler",
    "TimeSeries",
    "WindowDataset",
    "cycle_phase",
    "load_series",
    "prepare_forecast_data",
    "protocol_for",
    "read_csv_series",
    "read_exchange_rate",
    "read_illness",
    "read_weather",
    "split_borders",
    "split_scheme_for",
]

SCHEMES = ("ett_hour", "ett_minute", "ratio", "tgcn")
_ETT_HOUR_BORDERS = (8640, 11520, 14400)  # 12 / 4 / 4 months of 30 days, hourly rows
FILLS = ("ffill", "bfill", "interpolate", "zero")


# ------------------------------------------------------------------ series
@dataclass
class TimeSeries:
    """A multivariate series: ``values`` ``[T, V]`` (float64), column names and optional timestamps.

    Attributes:
        values: ``[T, V]`` float64 array, rows in time order.
        columns: the V variable names.
        dates: ``[T]`` ``datetime64[s]`` timestamps, strictly increasing, or None.
        name: a short name (the file stem), used to pick the standard split.
    """

    values: np.ndarray
    columns: list[str]
    dates: np.ndarray | None = None
    name: str = ""

    def __post_init__(self):
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.values.ndim != 2:
            raise ValueError(f"values must be a [T, V] table, got shape {self.values.shape}")
        if len(self.columns) != self.values.shape[1]:
            raise ValueError(f"{len(self.columns)} column names for {self.values.shape[1]} columns")
        if self.dates is not None:
            self.dates = np.asarray(self.dates, dtype="datetime64[s]")
            if self.dates.shape != (self.values.shape[0],):
                raise ValueError(
                    f"dates must have one entry per row ({self.values.shape[0]}), got shape {self.dates.shape}"
                )
            _check_dates(self.dates, self.name or "series")

    def __len__(self) -> int:
        return self.values.shape[0]

    @property
    def num_variables(self) -> int:
        """The number of variables V."""
        return self.values.shape[1]

    def head(self, num_rows: int) -> TimeSeries:
        """The first ``num_rows`` rows (a quick slice for tests and trial runs)."""
        if num_rows < 1:
            raise ValueError(f"num_rows must be >= 1, got {num_rows}")
        dates = None if self.dates is None else self.dates[:num_rows]
        return replace(self, values=self.values[:num_rows], dates=dates)


def _check_dates(dates: np.ndarray, where: str) -> None:
    if np.isnat(dates).any():
        row = int(np.flatnonzero(np.isnat(dates))[0])
        raise ValueError(f"{where}: missing timestamp at data row {row}")
    step = np.diff(dates.astype(np.int64))
    if (step == 0).any():
        row = int(np.flatnonzero(step == 0)[0]) + 1
        raise ValueError(
            f"{where}: duplicated timestamp {dates[row]} at data rows {row - 1} and {row}; "
            "remove or aggregate the duplicates"
        )
    if (step < 0).any():
        row = int(np.flatnonzero(step < 0)[0]) + 1
        raise ValueError(
            f"{where}: timestamps are not sorted: data row {row} ({dates[row]}) comes before "
            f"row {row - 1} ({dates[row - 1]}); sort the file by time"
        )


def _fill_missing(frame: pd.DataFrame, fill: str | None, where: str) -> pd.DataFrame:
    missing = frame.isna().to_numpy()
    if not missing.any():
        return frame
    if fill is None:
        row, col = (int(i) for i in np.argwhere(missing)[0])
        raise ValueError(
            f"{where}: missing value in column {frame.columns[col]!r} at data row {row} "
            f"({int(missing.sum())} missing in all); fill them with --fill ffill (or bfill, "
            "interpolate, zero; fill='ffill' in Python)"
        )
    if fill not in FILLS:
        raise ValueError(f"--fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if fill == "zero":
        return frame.fillna(0.0)
    if fill == "interpolate":
        frame = frame.interpolate(method="linear", limit_direction="both")
    else:
        frame = frame.ffill() if fill == "ffill" else frame.bfill()
    if frame.isna().to_numpy().any():
        row, col = (int(i) for i in np.argwhere(frame.isna().to_numpy())[0])
        edge = "leading" if fill == "ffill" else "trailing"
        raise ValueError(
            f"{where}: fill={fill!r} cannot fill the {edge} missing value in column "
            f"{frame.columns[col]!r} at data row {row}; use --fill interpolate"
        )
    return frame


def read_csv_series(
    path: str | os.PathLike,
    *,
    date_column: str | None = "date",
    fill: str | None = None,
    name: str | None = None,
    date_format: str | None = None,
    sep: str = ",",
    date_required: bool = False,
) -> TimeSeries:
    """Read a CSV with a header row: an optional date column, then numeric columns.

    This is the layout of the ETT files (``date,HUFL,...,OT``) and of
    ``los_speed.csv`` (sensor ids as header, no date column).

    Args:
        path: the CSV file.
        date_column: name of the timestamp column; if the file has no column
            of that name the series has no timestamps (and no time features).
        fill: how to fill missing values (``"ffill"``, ``"bfill"``,
            ``"interpolate"``, ``"zero"``); None raises on the first one.
        name: the series name (default: the file stem).
        date_format: ``strftime`` format of the timestamps (``"%d.%m.%Y %H:%M"``);
            None lets pandas infer it (``--date-format``).
        sep: the column separator (``--sep``; ``"\\t"`` for tabs).
        date_required: the date column must exist (it was named explicitly,
            ``--date-column``).

    Raises:
        ValueError: a non-numeric cell, a missing value (without ``fill``),
            unparsable, duplicated or unsorted timestamps; each names the row
            (0-based data row, header excluded) and column.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such data file: {path}")
    if not sep:
        raise ValueError("--sep must be a character such as ',' or ';', got an empty string")
    sep = "\t" if sep in ("\\t", "tab") else sep
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=["", "NA", "NaN", "nan", "null"], sep=sep)
    name = name or _stem(path)
    if frame.shape[1] == 1:
        header = str(frame.columns[0])
        other = next((c for c in (";", "\t", ",", "|") if c != sep and c in header), None)
        if other is not None:
            shown = "\\t" if other == "\t" else other
            raise ValueError(
                f"{path}: every row is read as one value with --sep {sep!r}; the header "
                f"{header[:60]!r} looks separated by {shown!r}: pass --sep '{shown}'"
            )
    dates = None
    if date_column is not None and date_column not in frame.columns and date_required:
        raise ValueError(
            f"{path}: --date-column {date_column!r} is not a column; the columns are "
            f"{', '.join(map(repr, list(frame.columns)[:12]))}"
        )
    if date_column is not None and date_column in frame.columns:
        raw = frame.pop(date_column)
        parsed = pd.to_datetime(raw, errors="coerce", format=date_format)
        bad = parsed.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            hint = (
                f"it does not match --date-format {date_format!r}"
                if date_format is not None
                else "give its format with --date-format (e.g. '%d.%m.%Y %H:%M')"
            )
            raise ValueError(
                f"{path}: cannot read timestamp {raw.iloc[row]!r} in column {date_column!r} at data row {row}; {hint}"
            )
        dates = parsed.to_numpy().astype("datetime64[s]")
    if frame.shape[1] == 0:
        raise ValueError(f"{path}: no value columns besides the date column {date_column!r}")
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna().to_numpy() & frame.notna().to_numpy()
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{path}: non-numeric value {frame.iat[row, col]!r} in column {frame.columns[col]!r} "
            f"at data row {row}; every column but the date column ({date_column!r}, see "
            "--date-column) must be numeric (other separator? see --sep)"
        )
    numeric = _fill_missing(numeric, fill, path)
    values = numeric.to_numpy(dtype=np.float64)
    if dates is not None:
        _check_dates(dates, path)
    return TimeSeries(values, [str(c) for c in numeric.columns], dates, name)


def read_exchange_rate(
    path: str | os.PathLike, layout: str = "autoformer", *, fill: str | None = None, name: str | None = None
) -> TimeSeries:
    """Read a header-less numeric text file (LSTNet's ``exchange_rate.txt.gz`` and kin).

    The file is read with ``numpy.loadtxt(path, delimiter=",")`` (``.gz`` is
    decompressed on the fly).

    Args:
        layout: ``"lstnet"`` keeps the 8 columns as they are, with no dates.
            ``"autoformer"`` rebuilds the ``exchange_rate.csv`` of
            Autoformer / iTransformer: daily dates from 1990-01-01 and the
            last two columns swapped, so that this file's column 6 becomes
            the last column, the target ``OT`` (columns named
            ``"0" ... "5", "6", "OT"``). Other files: ``"autoformer"`` only
            adds daily dates.
        fill: as :func:`read_csv_series`.
    """
    if layout not in ("autoformer", "lstnet"):
        raise ValueError(f"layout must be 'autoformer' or 'lstnet', got {layout!r}")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        values = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path}: not a comma-separated table of numbers ({err})") from None
    frame = pd.DataFrame(values, columns=[str(i) for i in range(values.shape[1])])
    frame = _fill_missing(frame, fill, path)
    values = frame.to_numpy()
    columns = list(frame.columns)
    dates = None
    if layout == "autoformer":
        if values.shape[1] == 8:
            values = values[:, [0, 1, 2, 3, 4, 5, 7, 6]]
            columns = ["0", "1", "2", "3", "4", "5", "6", "OT"]
        dates = np.datetime64("1990-01-01", "s") + np.arange(len(values)) * np.timedelta64(1, "D")
    return TimeSeries(values, columns, dates, name or _stem(path))


def load_series(
    path: str | os.PathLike,
    *,
    fill: str | None = None,
    layout: str = "autoformer",
    date_column: str | None = None,
    date_format: str | None = None,
    sep: str = ",",
) -> TimeSeries:
    """Read a series from a file, choosing the reader by its extension.

    ``.csv`` goes to :func:`read_csv_series` (date column ``date_column``,
    which must then exist, else ``"date"`` if present; ``date_format`` and
    ``sep`` as there), ``.txt``/``.txt.gz``/``.gz`` to :func:`read_exchange_rate`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such data file: {path}")
    if os.path.basename(path) == "weather.csv" and fill is None:  # the published file repeats a timestamp
        return read_weather(path)
    if path.endswith(".csv"):
        return read_csv_series(
            path,
            fill=fill,
            date_column=date_column or "date",
            date_format=date_format,
            sep=sep,
            date_required=date_column is not None,
        )
    if path.endswith((".txt", ".txt.gz", ".gz")):
        return read_exchange_rate(path, layout, fill=fill)
    raise ValueError(
        f"cannot tell the format of {path}: use a .csv file (header row, optional 'date' column) "
        "or a comma-separated .txt / .txt.gz without header"
    )


def _stem(path: str) -> str:
    base = os.path.basename(path)
    for suffix in (".gz", ".csv", ".txt"):
        base = base.removesuffix(suffix)
    return base


# ------------------------------------------------------------------ splits
def split_scheme_for(name: str) -> str:
    """The standard split of a series called ``name``: ETTh* -> ``"ett_hour"``, ETTm* -> ``"ett_minute"``,
    anything else ``"ratio"`` (70/10/20)."""
    if name.startswith("ETTh"):
        return "ett_hour"
    if name.startswith("ETTm"):
        return "ett_minute"
    return "ratio"


def split_borders(num_rows: int, seq_len: int, scheme: str = "ratio") -> dict[str, tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the train / val / test blocks, look-back included.

    The validation and test ranges start ``seq_len`` rows before their border
    (except ``"tgcn"``, whose test windows stay inside the test block);
    ``"tgcn"`` has no ``"val"`` entry.

    >>> split_borders(17420, 96, "ett_hour")
    {'train': (0, 8640), 'val': (8544, 11520), 'test': (11424, 14400)}
    """
    if scheme not in SCHEMES:
        raise ValueError(f"split scheme must be one of {SCHEMES}, got {scheme!r}")
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    if scheme in ("ett_hour", "ett_minute"):
        mult = 1 if scheme == "ett_hour" else 4
        train, val, test = (b * mult for b in _ETT_HOUR_BORDERS)
        if num_rows < test:
            raise ValueError(
                f"the {scheme} split needs {test} rows but the series has {num_rows}; "
                "use split='ratio' for a shorter series"
            )
        return {"train": (0, train), "val": (train - seq_len, val), "test": (val - seq_len, test)}
    if scheme == "tgcn":
        train = int(0.8 * num_rows)
        return {"train": (0, train), "test": (train, num_rows)}
    num_train, num_test = int(0.7 * num_rows), int(0.2 * num_rows)
    num_val = num_rows - num_train - num_test
    return {
        "train": (0, num_train),
        "val": (num_train - seq_len, num_train + num_val),
        "test": (num_rows - num_test - seq_len, num_rows),
    }


# ------------------------------------------------------------------ scaling
@dataclass
class Scaler:
    r"""Per-variable affine scaling, :math:`z = (x - \mu) / s`, fitted on training rows.

    Build it with :meth:`standard` (mean and population std, as scikit-learn's
    ``StandardScaler``) or :meth:`maximum` (:math:`\mu = 0`, :math:`s` = the
    largest training value over all variables, as T-GCN).

    Attributes:
        mean: ``[V]`` offsets.
        scale: ``[V]`` divisors (a constant column gets 1).
    """

    mean: np.ndarray
    scale: np.ndarray
    kind: str = "standard"

    @classmethod
    def standard(cls, train: np.ndarray) -> Scaler:
        """Mean and standard deviation (ddof 0) of each column of ``train`` ``[T, V]``."""
        mean = train.mean(axis=0)
        std = train.std(axis=0)
        return cls(mean, np.where(std > 0, std, 1.0), "standard")

    @classmethod
    def maximum(cls, train: np.ndarray) -> Scaler:
        """Divide every column by the largest absolute value in ``train``."""
        top = float(np.abs(train).max())
        top = top if top > 0 else 1.0
        return cls(np.zeros(train.shape[1]), np.full(train.shape[1], top), "max")

    @classmethod
    def identity(cls, num_variables: int) -> Scaler:
        """No scaling."""
        return cls(np.zeros(num_variables), np.ones(num_variables), "none")

    def transform(self, values):
        """``(values - mean) / scale``; numpy arrays or tensors ``[..., V]``."""
        mean, scale = self._like(values)
        return (values - mean) / scale

    def inverse_transform(self, values):
        """``values * scale + mean``; numpy arrays or tensors ``[..., V]``."""
        mean, scale = self._like(values)
        return values * scale + mean

    def _like(self, values):
        if isinstance(values, Tensor):
            return (
                torch.as_tensor(self.mean, dtype=values.dtype, device=values.device),
                torch.as_tensor(self.scale, dtype=values.dtype, device=values.device),
            )
        return self.mean, self.scale

    def state_dict(self) -> dict:
        """Tensors and strings only (loadable with ``torch.load(..., weights_only=True)``)."""
        return {"mean": torch.as_tensor(self.mean), "scale": torch.as_tensor(self.scale), "kind": self.kind}

    @classmethod
    def from_state_dict(cls, state: dict) -> Scaler:
        """Inverse of :meth:`state_dict`."""
        return cls(np.asarray(state["mean"]), np.asarray(state["scale"]), state["kind"])


# ------------------------------------------------------------------ windows
class WindowDataset(Dataset):
    """Sliding windows over one block of a series.

    Window ``i`` is ``x = values[i : i+L]``, ``y = values[i+L : i+L+H]``
    and the time features of the same rows. Indexing with an int gives one
    window; indexing with a list or 1-D tensor of ints gives a batch (one
    gather, no per-window Python work), so a ``DataLoader`` built by
    :meth:`loader` hands out whole batches.

    Args:
        values: ``[T, V]`` (scaled) values of the block, look-back included.
        marks: ``[T, F]`` time features of the same rows (F may be 0).
        seq_len: look-back L.
        pred_len: horizon H.
        offset: row of the series where the block starts (for :meth:`origin`).
        name: block name used in error messages.

    Shapes: ``x [L, V]``, ``y [H, V]``, ``x_mark [L, F]``, ``y_mark [H, F]``
    (with a leading ``B`` for a batch).
    """

    def __init__(
        self, values: Tensor, marks: Tensor | None, seq_len: int, pred_len: int, offset: int = 0, name: str = "block"
    ):
        if seq_len < 1 or pred_len < 1:
            raise ValueError(f"seq_len and pred_len must be >= 1, got {seq_len} and {pred_len}")
        values = torch.as_tensor(values, dtype=torch.float32)
        if values.dim() != 2:
            raise ValueError(f"values must be [T, V], got shape {tuple(values.shape)}")
        if marks is None:
            marks = values.new_zeros(values.size(0), 0)
        if marks.size(0) != values.size(0):
            raise ValueError(f"marks has {marks.size(0)} rows but values has {values.size(0)}")
        if values.size(0) < seq_len + pred_len:
            raise ValueError(
                f"the {name} block has {values.size(0)} rows, fewer than look-back + horizon = "
                f"{seq_len} + {pred_len}; shorten seq_len / pred_len or use more data"
            )
        self.values, self.marks = values, marks.float()
        self.seq_len, self.pred_len, self.offset, self.name = seq_len, pred_len, offset, name
        self._x_steps = torch.arange(seq_len)
        self._y_steps = torch.arange(seq_len, seq_len + pred_len)

    def __len__(self) -> int:
        return self.values.size(0) - self.seq_len - self.pred_len + 1

    def origin(self, index: int) -> int:
        """The series row of window ``index``'s first forecast step."""
        return self.offset + index + self.seq_len

    def __getitem__(self, index):
        """``(x, y, x_mark, y_mark)`` of one window (int) or a batch (list / tensor of ints)."""
        if isinstance(index, int):
            if not -len(self) <= index < len(self):
                raise IndexError(f"window {index} out of range for {len(self)} windows")
            i = index % len(self)
            mid, end = i + self.seq_len, i + self.seq_len + self.pred_len
            return self.values[i:mid], self.values[mid:end], self.marks[i:mid], self.marks[mid:end]
        idx = torch.as_tensor(index, dtype=torch.long).view(-1, 1)  # [B, 1]
        xi, yi = idx + self._x_steps, idx + self._y_steps  # [B, L], [B, H]
        return self.values[xi], self.values[yi], self.marks[xi], self.marks[yi]

    def loader(
        self, batch_size: int, shuffle: bool = False, drop_last: bool = False, generator: torch.Generator | None = None
    ) -> DataLoader:
        """A ``DataLoader`` of batches ``(x [B, L, V], y [B, H, V], x_mark, y_mark)``.

        Evaluation loaders keep every window (``drop_last=False``); training
        loaders shuffle with ``generator`` (its state makes a run resumable).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        sampler = RandomSampler(self, generator=generator) if shuffle else SequentialSampler(self)
        return DataLoader(self, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last))


# ------------------------------------------------------------------ all together
@dataclass
class ForecastData:
    """A series cut into train / val / test windows, scaled with training statistics.

    Attributes:
        series: the raw series.
        scaler: fitted on the training rows.
        scheme: the split scheme (see :func:`split_borders`).
        borders: row ranges of each block, look-back included.
        train, val, test: :class:`WindowDataset` of each block (``val`` is
            None for the ``"tgcn"`` split).
        freq: the time-feature frequency code, or None without timestamps.
    """

    series: TimeSeries
    scaler: Scaler
    scheme: str
    borders: dict[str, tuple[int, int]]
    train: WindowDataset
    val: WindowDataset | None
    test: WindowDataset
    freq: str | None = None

    @property
    def num_variables(self) -> int:
        """V."""
        return self.series.num_variables

    @property
    def num_time_features(self) -> int:
        """F (0 without timestamps)."""
        return self.train.marks.size(1)

    def train_values(self) -> np.ndarray:
        """The scaled training rows ``[T_train, V]``."""
        return self.train.values.numpy()


def prepare_forecast_data(
    series: TimeSeries,
    seq_len: int = 96,
    pred_len: int = 96,
    *,
    split: str = "auto",
    scale: str = "standard",
    freq: str | None = "h",
) -> ForecastData:
    """Split, scale and window a series following the standard protocol.

    Args:
        series: the raw series.
        seq_len: look-back L.
        pred_len: horizon H.
        split: a scheme of :func:`split_borders`, or ``"auto"`` (ETT files by
            name, 70/10/20 otherwise).
        scale: ``"standard"`` (per-variable mean/std), ``"max"`` (the training
            maximum, T-GCN) or ``"none"``; fitted on the training rows only.
        freq: time-feature frequency for :func:`graphformer.encodings.time_features`
            (``"h"``, the default of the reference code, also for 15-minute
            ETT data), or None for no time features. Ignored without timestamps.

    Raises:
        ValueError: an unknown scheme, or a block too short for L + H.
    """
    if split == "auto":
        split = split_scheme_for(series.name)
    borders = split_borders(len(series), seq_len, split)
    train_start, train_stop = borders["train"]
    if scale == "standard":
        scaler = Scaler.standard(series.values[train_start:train_stop])
    elif scale == "max":
        scaler = Scaler.maximum(series.values[train_start:train_stop])
    elif scale == "none":
        scaler = Scaler.identity(series.num_variables)
    else:
        raise ValueError(f"scale must be 'standard', 'max' or 'none', got {scale!r}")
    scaled = torch.as_tensor(scaler.transform(series.values), dtype=torch.float32)
    marks = None
    if series.dates is not None and freq is not None:
        marks = time_features(series.dates, freq)
    else:
        freq = None
    blocks = {}
    for name, (start, stop) in borders.items():
        blocks[name] = WindowDataset(
            scaled[start:stop],
            None if marks is None else marks[start:stop],
            seq_len,
            pred_len,
            offset=start,
            name=f"{split} {name}",
        )
    return ForecastData(series, scaler, split, borders, blocks["train"], blocks.get("val"), blocks["test"], freq)


# ------------------------------------------------------------ Weather and ILI ("custom" data)
@dataclass(frozen=True)
class ForecastProtocol:
    """The look-back, decoder start length and horizons a benchmark is reported at.

    Attributes:
        seq_len: look-back L.
        label_len: rows of the look-back that a decoder (Autoformer) starts from.
        horizons: the horizons H of the published tables.
        cycle_len: the period W (rows) of the data's dominant cycle, as CycleNet / TQNet use it.
    """

    seq_len: int
    label_len: int
    horizons: tuple[int, ...]
    cycle_len: int


#: Time-Series-Library long-term protocols: look-back 96 (label 48) for ETT and Weather,
#: look-back 36 (label 18) and horizons 24 / 36 / 48 / 60 for ILI. ``cycle_len`` is one day
#: (24 hourly, 96 quarter-hourly, 144 ten-minute rows) or one year of weeks (52).
PROTOCOLS = {
    "ETTh1": ForecastProtocol(96, 48, (96, 192, 336, 720), 24),
    "ETTh2": ForecastProtocol(96, 48, (96, 192, 336, 720), 24),
    "ETTm1": ForecastProtocol(96, 48, (96, 192, 336, 720), 96),
    "ETTm2": ForecastProtocol(96, 48, (96, 192, 336, 720), 96),
    "weather": ForecastProtocol(96, 48, (96, 192, 336, 720), 144),
    "national_illness": ForecastProtocol(36, 18, (24, 36, 48, 60), 52),
}


def protocol_for(name: str) -> ForecastProtocol:
    """The :data:`PROTOCOLS` entry of a series called ``name`` (file stem), or ``ValueError``."""
    if name not in PROTOCOLS:
        raise ValueError(
            f"no standard protocol for a series named {name!r} (known: {sorted(PROTOCOLS)}); "
            "give the cycle length explicitly (--cycle-len)"
        )
    return PROTOCOLS[name]


def _read_custom(
    path: str | os.PathLike, expected_columns: int, what: str, *, keep_duplicate_dates: bool = False
) -> TimeSeries:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such data file: {path}")
    if keep_duplicate_dates:
        frame = pd.read_csv(path)
        if "date" not in frame.columns:
            raise ValueError(f"{path}: no 'date' column; is this the {what} file?")
        dates = pd.to_datetime(frame.pop("date")).to_numpy().astype("datetime64[s]")
        if (np.diff(dates.astype(np.int64)) < 0).any():
            raise ValueError(f"{path}: timestamps are not sorted; is this the {what} file?")
        if frame.isna().to_numpy().any():
            raise ValueError(f"{path}: missing values; the published {what} file has none")
        series = TimeSeries(frame.to_numpy(dtype=np.float64), [str(c) for c in frame.columns], None, _stem(path))
        # The published file repeats one timestamp; the rows are kept as they are, in file order (as
        # the reference loader reads them), so the dates are set after TimeSeries' strict-order check.
        series.dates = dates
    else:
        series = read_csv_series(path)
    if series.dates is None:
        raise ValueError(f"{path}: no 'date' column; is this the {what} file?")
    if series.num_variables != expected_columns or series.columns[-1] != "OT":
        raise ValueError(
            f"{path}: expected {expected_columns} value columns ending in 'OT' ({what}), got "
            f"{series.num_variables} ending in {series.columns[-1]!r}"
        )
    return series


def read_weather(path: str | os.PathLike) -> TimeSeries:
    """Read ``weather.csv`` (Autoformer / Time-Series-Library copy) as it is.

    21 meteorological variables every 10 minutes through 2020 (52,696 rows),
    target ``OT`` last. The file has Windows line endings and U+FFFD
    replacement characters in its header (``SWDR (W/m\\ufffd)``); both are
    kept as they are (the column names keep the U+FFFD). It also repeats
    one timestamp (data rows 19043 and 19044 are both 2020-05-12 06:00) and
    jumps 100 minutes once between two rows; every row is kept, in file order, as the
    reference loader keeps them. Its standard split
    is the "custom" one (:func:`split_borders` ``"ratio"``: 70 % train, 20 %
    test, the rest validation), picked by ``prepare_forecast_data`` from the
    name ``"weather"``.

    Raises:
        ValueError: the file does not have 21 value columns ending in ``OT``.
    """
    return _read_custom(path, 21, "Weather", keep_duplicate_dates=True)


def read_illness(path: str | os.PathLike) -> TimeSeries:
    """Read ``national_illness.csv`` (weekly influenza-like illness, 966 rows, 7 variables, target ``OT``).

    The ILI protocol is ``PROTOCOLS["national_illness"]``: look-back 36,
    label 18, horizons 24 / 36 / 48 / 60, "custom" split (70 / 10 / 20 by
    rows, as :func:`read_weather`).
    """
    return _read_custom(path, 7, "ILI")


def cycle_phase(data: ForecastData, cycle_len: int) -> ForecastData:
    """The same windows with one more mark column: the row's phase in a cycle of ``cycle_len`` rows.

    Row ``t`` of the series (0-based, the file's row order) gets phase
    ``t mod cycle_len``, as CycleNet's ``cycle_index``; the column is appended
    after the time features, so ``x_mark[..., -1]`` of a window is its phase
    per step and ``x_mark[:, 0, -1]`` the phase of its first row. Periodic
    priors (:class:`~graphformer.models.CycleForecaster`,
    :class:`~graphformer.models.TemporalQueryForecaster`) read it and hand the
    other marks on.

    Returns:
        a new :class:`ForecastData` (the values are shared, not copied).
    """
    if not isinstance(cycle_len, int) or cycle_len < 1:
        raise ValueError(f"cycle_len must be a positive integer, got {cycle_len!r}")

    def extend(block: WindowDataset | None) -> WindowDataset | None:
        if block is None:
            return None
        rows = torch.arange(block.offset, block.offset + block.values.size(0))
        phase = (rows % cycle_len).float().unsqueeze(1)  # [T, 1]
        return WindowDataset(
            block.values,
            torch.cat([block.marks, phase], dim=1),
            block.seq_len,
            block.pred_len,
            block.offset,
            block.name,
        )

    return replace(data, train=extend(data.train), val=extend(data.val), test=extend(data.test))
