import gzip

import numpy as np
import pytest
import torch

from graphformer.data import (
    Scaler,
    TimeSeries,
    WindowDataset,
    load_series,
    prepare_forecast_data,
    read_csv_series,
    read_exchange_rate,
    split_borders,
    split_scheme_for,
)
from graphformer.encodings import time_features


def _hourly(num_rows: int, num_vars: int = 3, seed: int = 0, name: str = "toy") -> TimeSeries:
    rng = np.random.default_rng(seed)
    dates = np.datetime64("2020-01-01T00:00", "s") + np.arange(num_rows) * np.timedelta64(1, "h")
    return TimeSeries(rng.normal(size=(num_rows, num_vars)), [f"v{i}" for i in range(num_vars)], dates, name)


def _write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(map(str, r)) for r in rows]) + "\n")
    return path


# ------------------------------------------------------------ splits
def test_ett_borders_exact():
    assert split_borders(17420, 96, "ett_hour") == {"train": (0, 8640), "val": (8544, 11520), "test": (11424, 14400)}
    assert split_borders(69680, 96, "ett_minute") == {
        "train": (0, 34560),
        "val": (34464, 46080),
        "test": (45984, 57600),
    }
    assert split_scheme_for("ETTh2") == "ett_hour" and split_scheme_for("ETTm1") == "ett_minute"
    assert split_scheme_for("exchange_rate") == "ratio"


def test_ratio_and_tgcn_borders():
    # exchange rate: 7588 rows -> train 5311, test 1517, val 760 (data README)
    assert split_borders(7588, 96, "ratio") == {"train": (0, 5311), "val": (5215, 6071), "test": (5975, 7588)}
    assert split_borders(2016, 12, "tgcn") == {"train": (0, 1612), "test": (1612, 2016)}


def test_ett_split_needs_enough_rows():
    with pytest.raises(ValueError, match="14400 rows"):
        split_borders(10000, 96, "ett_hour")
    with pytest.raises(ValueError, match="split scheme"):
        split_borders(10000, 96, "thirds")


def test_etth1_window_counts(shared_data):
    series = load_series(shared_data / "ett" / "ETTh1.csv")
    assert series.values.shape == (17420, 7) and series.columns[-1] == "OT"
    for horizon, expected in ((96, 2785), (192, 2689), (336, 2545), (720, 2161)):
        data = prepare_forecast_data(series, 96, horizon)
        assert data.scheme == "ett_hour"
        assert len(data.test) == expected
        assert len(data.val) == 2880 - horizon + 1
        assert len(data.train) == 8640 - 96 - horizon + 1
        # first forecast origins sit on the borders, the last target row is the last test row
        assert data.val.origin(0) == 8640 and data.test.origin(0) == 11520
        assert data.test.origin(len(data.test) - 1) + horizon == 14400


def test_etth1_scaler_and_time_features(shared_data):
    series = load_series(shared_data / "ett" / "ETTh1.csv")
    data = prepare_forecast_data(series, 96, 96)
    np.testing.assert_allclose(data.scaler.mean, series.values[:8640].mean(0))
    np.testing.assert_allclose(data.scaler.scale, series.values[:8640].std(0))
    assert data.num_time_features == 4
    torch.testing.assert_close(data.test.marks, time_features(series.dates[11424:14400], "h"))
    x, y, x_mark, y_mark = data.test[0]
    expected = (series.values[11424:11520] - data.scaler.mean) / data.scaler.scale
    torch.testing.assert_close(x, torch.tensor(expected, dtype=torch.float32))


def test_scaler_sees_training_rows_only():
    series = _hourly(500)
    base = prepare_forecast_data(series, 24, 12, split="ratio")
    changed = series.values.copy()
    changed[350:] = 1e6  # everything after the training block
    other = prepare_forecast_data(TimeSeries(changed, series.columns, series.dates, "toy"), 24, 12, split="ratio")
    np.testing.assert_array_equal(base.scaler.mean, other.scaler.mean)
    np.testing.assert_array_equal(base.scaler.scale, other.scaler.scale)
    np.testing.assert_allclose(base.scaler.mean, series.values[:350].mean(0))


def test_max_scaler_uses_training_maximum():
    series = _hourly(100)
    series.values[90, 0] = 1e3  # in the test block: must not be seen
    data = prepare_forecast_data(series, 8, 4, split="tgcn", scale="max")
    assert data.val is None
    np.testing.assert_allclose(data.scaler.scale, np.abs(series.values[:80]).max())
    values = np.random.default_rng(1).normal(size=(5, 3))
    np.testing.assert_allclose(data.scaler.inverse_transform(data.scaler.transform(values)), values)


def test_no_window_reaches_past_its_origin():
    num_rows = 400
    rows = np.arange(num_rows, dtype=np.float64)[:, None].repeat(2, 1)  # value = row index
    series = TimeSeries(rows, ["a", "b"], name="rows")
    data = prepare_forecast_data(series, 24, 12, split="ratio", scale="none")
    for block in (data.train, data.val, data.test):
        x, y, _, _ = block[torch.arange(len(block))]
        origin = torch.tensor([block.origin(i) for i in range(len(block))], dtype=torch.float32)
        assert bool((x < origin[:, None, None]).all())
        torch.testing.assert_close(x[:, -1, 0], origin - 1)
        torch.testing.assert_close(y[:, 0, 0], origin)
        torch.testing.assert_close(y[:, -1, 0], origin + 11)
    assert data.val.origin(0) == int(0.7 * num_rows)
    assert data.test.origin(len(data.test) - 1) + 12 == num_rows
    # tgcn: test windows stay inside the test block
    tgcn = prepare_forecast_data(series, 24, 12, split="tgcn", scale="none")
    assert tgcn.test[0][0][0, 0] == int(0.8 * num_rows)


def test_batch_indexing_equals_single_windows():
    data = prepare_forecast_data(_hourly(300), 16, 8, split="ratio")
    idx = [0, 5, len(data.train) - 1]
    batch = data.train[idx]
    for b, i in enumerate(idx):
        for part_batch, part_single in zip(batch, data.train[i]):
            torch.testing.assert_close(part_batch[b], part_single)
    x, y, x_mark, y_mark = batch
    assert x.shape == (3, 16, 3) and y.shape == (3, 8, 3) and x_mark.shape == (3, 16, 4)
    assert y_mark.shape == (3, 8, 4)
    with pytest.raises(IndexError):
        data.train[len(data.train)]


def test_test_loader_keeps_every_window():
    data = prepare_forecast_data(_hourly(500), 24, 12, split="ratio")
    sizes = [x.size(0) for x, *_ in data.test.loader(32)]
    assert sum(sizes) == len(data.test) and sizes[-1] == len(data.test) % 32
    origins = torch.cat([y[:, 0, 0] for _, y, *_ in data.test.loader(32)])
    torch.testing.assert_close(origins, data.test.values[24 : 24 + len(data.test), 0])
    train_sizes = [
        x.size(0)
        for x, *_ in data.train.loader(32, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0))
    ]
    assert set(train_sizes) == {32} and len(train_sizes) == len(data.train) // 32


def test_shuffle_is_reproducible_from_generator_state():
    data = prepare_forecast_data(_hourly(500), 24, 12, split="ratio")
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    first = [y[:, 0, 0] for _, y, *_ in data.train.loader(16, shuffle=True, generator=gen)]
    gen.set_state(state)
    again = [y[:, 0, 0] for _, y, *_ in data.train.loader(16, shuffle=True, generator=gen)]
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)


def test_block_too_short_for_window():
    with pytest.raises(ValueError, match="look-back \\+ horizon"):
        prepare_forecast_data(_hourly(200), 96, 96, split="ratio")
    with pytest.raises(ValueError, match="fewer than look-back"):
        WindowDataset(torch.zeros(10, 2), None, 8, 4)


# ------------------------------------------------------------ files and bad input
def test_read_csv_roundtrip(tmp_path):
    path = _write_csv(
        tmp_path / "ok.csv", ["date", "a", "b"], [["2020-01-01 00:00:00", 1, 2.5], ["2020-01-01 01:00:00", 3, 4.5]]
    )
    series = read_csv_series(path)
    np.testing.assert_array_equal(series.values, [[1, 2.5], [3, 4.5]])
    assert series.columns == ["a", "b"] and series.name == "ok"
    assert series.dates[1] == np.datetime64("2020-01-01T01:00:00")


def test_non_numeric_column_names_row_and_column(tmp_path):
    path = _write_csv(
        tmp_path / "bad.csv", ["date", "a", "b"], [["2020-01-01 00:00", 1, 2], ["2020-01-01 01:00", 3, "high"]]
    )
    with pytest.raises(ValueError, match=r"'high' in column 'b' at data row 1"):
        read_csv_series(path)


def test_missing_value_fails_or_fills(tmp_path):
    rows = [["2020-01-01 00:00", 1, 2], ["2020-01-01 01:00", "", 4], ["2020-01-01 02:00", 5, 6]]
    path = _write_csv(tmp_path / "gap.csv", ["date", "a", "b"], rows)
    with pytest.raises(ValueError, match=r"missing value in column 'a' at data row 1.*fill="):
        read_csv_series(path)
    np.testing.assert_array_equal(read_csv_series(path, fill="ffill").values[:, 0], [1, 1, 5])
    np.testing.assert_array_equal(read_csv_series(path, fill="interpolate").values[:, 0], [1, 3, 5])
    lead = _write_csv(tmp_path / "lead.csv", ["date", "a"], [["2020-01-01 00:00", ""], ["2020-01-01 01:00", 1]])
    with pytest.raises(ValueError, match="leading"):
        read_csv_series(lead, fill="ffill")


def test_unsorted_and_duplicated_timestamps(tmp_path):
    unsorted = _write_csv(
        tmp_path / "u.csv", ["date", "a"], [["2020-01-01 01:00", 1], ["2020-01-01 00:00", 2], ["2020-01-01 02:00", 3]]
    )
    with pytest.raises(ValueError, match="not sorted.*data row 1"):
        read_csv_series(unsorted)
    dup = _write_csv(
        tmp_path / "d.csv", ["date", "a"], [["2020-01-01 00:00", 1], ["2020-01-01 01:00", 2], ["2020-01-01 01:00", 3]]
    )
    with pytest.raises(ValueError, match="duplicated timestamp.*rows 1 and 2"):
        read_csv_series(dup)
    bad_date = _write_csv(tmp_path / "b.csv", ["date", "a"], [["yesterday", 1]])
    with pytest.raises(ValueError, match="cannot read timestamp 'yesterday'"):
        read_csv_series(bad_date)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_series(tmp_path / "nope.csv")
    odd = tmp_path / "series.parquet"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="cannot tell the format"):
        load_series(odd)


def test_headerless_text_layouts(tmp_path):
    raw = np.arange(40, dtype=np.float64).reshape(5, 8) / 10
    path = tmp_path / "rates.txt.gz"
    with gzip.open(path, "wt") as f:
        np.savetxt(f, raw, delimiter=",", fmt="%.6f")
    lstnet = read_exchange_rate(path, "lstnet")
    np.testing.assert_allclose(lstnet.values, raw)
    assert lstnet.dates is None and lstnet.name == "rates"
    auto = read_exchange_rate(path, "autoformer")
    np.testing.assert_allclose(auto.values[:, 7], raw[:, 6])  # column 6 becomes the target OT
    np.testing.assert_allclose(auto.values[:, 6], raw[:, 7])
    np.testing.assert_allclose(auto.values[:, :6], raw[:, :6])
    assert auto.columns[-1] == "OT" and auto.dates[1] == np.datetime64("1990-01-02")
    bad = tmp_path / "bad.txt"
    bad.write_text("1,2\n3,x\n")
    with pytest.raises(ValueError, match="comma-separated table of numbers"):
        read_exchange_rate(bad)


def test_exchange_rate_file(shared_data):
    series = load_series(shared_data / "lstnet" / "exchange_rate.txt.gz")
    assert series.values.shape == (7588, 8)
    assert series.dates[0] == np.datetime64("1990-01-01") and series.dates[-1] == np.datetime64("2010-10-10")
    raw = np.loadtxt(shared_data / "lstnet" / "exchange_rate.txt.gz", delimiter=",")
    np.testing.assert_array_equal(series.values[:, -1], raw[:, 6])
    data = prepare_forecast_data(series, 96, 96)
    assert data.borders == {"train": (0, 5311), "val": (5215, 6071), "test": (5975, 7588)}


def test_scaler_state_dict_roundtrip():
    scaler = Scaler.standard(np.random.default_rng(0).normal(size=(50, 3)))
    back = Scaler.from_state_dict(scaler.state_dict())
    np.testing.assert_allclose(back.mean, scaler.mean)
    x = torch.randn(4, 3, dtype=torch.float64)
    torch.testing.assert_close(back.inverse_transform(back.transform(x)), x)


# ------------------------------------------------------------ Weather and ILI (Time-Series-Library "custom" data)
def _custom_file(relative: str):
    """A file of ../shared/data; a missing file fails under CI (env ``CI`` set) instead of skipping."""
    from conftest import DATA, require_data

    return require_data(DATA / relative)


def test_weather_is_read_as_it_is():
    from graphformer.data import read_weather

    path = _custom_file("weather/weather.csv")
    raw = path.read_bytes()
    assert raw.count(b"\r\n") == 52697  # header + 52,696 rows, Windows line endings
    series = read_weather(path)
    assert series.values.shape == (52696, 21) and series.name == "weather"
    assert series.columns[-1] == "OT" and series.columns[0] == "p (mbar)"
    assert "SWDR (W/m\ufffd)" in series.columns  # the replacement character stays in the name
    assert not any("\r" in c for c in series.columns)
    assert str(series.dates[0]) == "2020-01-01T00:10:00" and str(series.dates[-1]) == "2021-01-01T00:00:00"
    # every row is kept, the repeated timestamp included; the values match the file's first data row
    assert series.dates[19043] == series.dates[19044]
    first = [float(v) for v in raw.split(b"\r\n")[1].decode().split(",")[1:]]
    np.testing.assert_allclose(series.values[0], first)
    assert load_series(path).values.shape == (52696, 21)  # the CLI's reader picks the same loader


def test_weather_custom_split_borders_and_scaler():
    from graphformer.data import read_weather

    series = read_weather(_custom_file("weather/weather.csv"))
    # custom split: train int(0.7 N) = 36887, test int(0.2 N) = 10539, validation the 5270 between
    assert split_borders(52696, 96, "ratio") == {"train": (0, 36887), "val": (36791, 42157), "test": (42061, 52696)}
    data = prepare_forecast_data(series, 96, 96)
    assert data.scheme == "ratio"
    assert len(data.train) == 36887 - 96 - 96 + 1
    assert len(data.val) == 5270 - 96 + 1 and len(data.test) == 10539 - 96 + 1
    assert data.val.origin(0) == 36887 and data.test.origin(0) == 42157
    assert data.test.origin(len(data.test) - 1) + 96 == 52696
    np.testing.assert_allclose(data.scaler.mean, series.values[:36887].mean(0))
    np.testing.assert_allclose(data.scaler.scale, series.values[:36887].std(0))


def test_ili_protocol_split_and_windows():
    from graphformer.data import PROTOCOLS, protocol_for, read_illness

    series = read_illness(_custom_file("illness/national_illness.csv"))
    assert series.values.shape == (966, 7) and series.columns[-1] == "OT" and series.name == "national_illness"
    assert str(series.dates[0])[:10] == "2002-01-01" and str(series.dates[-1])[:10] == "2020-06-30"
    protocol = protocol_for(series.name)
    assert (protocol.seq_len, protocol.label_len, protocol.horizons) == (36, 18, (24, 36, 48, 60))
    assert PROTOCOLS["weather"].cycle_len == 144 and protocol.cycle_len == 52
    # 966 rows: train 676, test 193, validation 97
    for horizon in protocol.horizons:
        data = prepare_forecast_data(series, 36, horizon)
        assert data.borders == {"train": (0, 676), "val": (640, 773), "test": (737, 966)}
        assert len(data.train) == 676 - 36 - horizon + 1
        assert len(data.val) == 97 - horizon + 1 and len(data.test) == 193 - horizon + 1
        assert data.val.origin(0) == 676 and data.test.origin(0) == 773
    np.testing.assert_allclose(data.scaler.mean, series.values[:676].mean(0))
    with pytest.raises(ValueError, match="cycle-len"):
        protocol_for("my_series")


def test_custom_readers_reject_other_files(tmp_path):
    from graphformer.data import read_illness, read_weather

    path = _write_csv(tmp_path / "weather.csv", ["date", "a", "OT"], [["2020-01-01 00:10:00", 1, 2]])
    with pytest.raises(ValueError, match="21 value columns"):
        read_weather(path)
    with pytest.raises(ValueError, match="7 value columns"):
        read_illness(path)
    with pytest.raises(FileNotFoundError):
        read_weather(tmp_path / "missing.csv")
