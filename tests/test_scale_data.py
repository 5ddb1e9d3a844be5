"""Scale data path (issue #26): the panel generator, Parquet streamed into a memory-mapped store, statistics in
one chunked pass, windows gathered and standardised on the fly, an index that costs O(series)."""

from __future__ import annotations

import logging
import pickle
import sys

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("pyarrow")

from attnlab.data import store as store_module  # noqa: E402
from attnlab.data.forecasting import mase_denominator, mase_scales, prepare_forecast, series_stats  # noqa: E402
from attnlab.data.generate import BLOCK, generate_panel  # noqa: E402
from attnlab.data.panel import load_panel, panel_from_frame  # noqa: E402
from attnlab.data.store import open_store, store_bytes, store_of  # noqa: E402
from attnlab.data.windows import WindowSet  # noqa: E402


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = tmp_path_factory.mktemp("gen") / "panel.parquet"
    return generate_panel(path, 30, 120, seed=3)


def frame_of(path):
    return pd.read_parquet(path)


# ---------------------------------------------------------------------------------------------- generator


def test_generator_is_seeded_ragged_and_has_a_future_covariate(small, tmp_path):
    frame = frame_of(small.path)
    assert list(frame.columns) == ["unique_id", "ds", "y", "promo"]
    assert small.rows == len(frame) and frame.unique_id.nunique() == small.n_series == 30
    lengths = frame.groupby("unique_id", observed=True).size()
    assert lengths.min() >= small.min_length == 96 and lengths.max() <= 120 and lengths.nunique() > 5  # ragged
    ends = frame.groupby("unique_id", observed=True).ds.max()
    assert ends.nunique() == 1  # every series ends at the same hour
    assert (frame.groupby("unique_id", observed=True).ds.diff().dropna() == pd.Timedelta("1h")).all()
    assert set(frame.promo.unique()) == {0, 1} and 0.02 < frame.promo.mean() < 0.15
    assert np.isfinite(frame.y).all()
    again = frame_of(generate_panel(tmp_path / "again.parquet", 30, 120, seed=3).path)
    pd.testing.assert_frame_equal(frame, again)
    other = frame_of(generate_panel(tmp_path / "other.parquet", 30, 120, seed=4).path)
    assert not np.allclose(other.y.to_numpy()[:50], frame.y.to_numpy()[:50])


def test_generator_series_do_not_depend_on_how_many_are_generated(tmp_path):
    few = frame_of(generate_panel(tmp_path / "few.parquet", 3, 60, seed=0).path)
    many = frame_of(generate_panel(tmp_path / "many.parquet", BLOCK + 5, 60, seed=0).path)
    # ids are zero-padded to the panel's width, so compare by position within the block
    first = many[many.unique_id.astype(str).isin([f"s{i:04d}" for i in range(3)])]
    np.testing.assert_array_equal(first.y.to_numpy(), few.y.to_numpy())
    np.testing.assert_array_equal(first.promo.to_numpy(), few.promo.to_numpy())


def test_generator_checks_sizes(tmp_path):
    with pytest.raises(ValueError, match="n_series"):
        generate_panel(tmp_path / "x.parquet", 0, 10)
    with pytest.raises(ValueError, match="min_length"):
        generate_panel(tmp_path / "x.parquet", 2, 10, min_length=2)


# ---------------------------------------------------------------------------------------------- store


def assert_same_panel(a, b, exact=False):
    assert a.ids == b.ids and a.freq == b.freq and a.time_kind == b.time_kind
    assert list(a.starts) == list(b.starts)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    assert (a.target_names, a.hist_names, a.futr_names) == (b.target_names, b.hist_names, b.futr_names)
    for name in ("target", "hist", "futr"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        if exact:
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-5)  # the store keeps float32


def test_parquet_streams_into_a_mapped_store_equal_to_the_in_memory_reader(small, cache):
    panel = load_panel(small.path, futr=["promo"])
    assert store_of(panel) is not None and isinstance(panel.target, np.memmap) and panel.target.dtype == np.float32
    reference = panel_from_frame(frame_of(small.path), str(small.path), futr=["promo"])
    assert_same_panel(panel, reference)
    assert panel.freq == "h" and panel.futr_names == ("promo",) and panel.source == str(small.path)
    folder = store_of(panel)
    assert folder.parent.parent == cache and store_bytes(folder) >= panel.target.nbytes + panel.futr.nbytes
    # the second read opens the same store (the file is not read again)
    again = load_panel(small.path, futr=["promo"])
    assert store_of(again) == folder
    # other options, another store
    assert store_of(load_panel(small.path, exclude=["promo"])) != folder


def test_csv_and_parquet_of_the_same_data_give_the_same_panel(small, tmp_path):
    csv = tmp_path / "panel.csv"
    frame_of(small.path).to_csv(csv, index=False)
    assert_same_panel(load_panel(small.path, futr=["promo"]), load_panel(csv, futr=["promo"]))


def test_grouped_rows_out_of_id_order_stream_and_are_ordered_by_id(small, tmp_path, caplog):
    frame = frame_of(small.path)
    frame["unique_id"] = frame.unique_id.astype(str)
    order = frame.unique_id.unique()[::-1]
    shuffled = pd.concat([frame[frame.unique_id == s] for s in order], ignore_index=True)
    path = tmp_path / "reversed.parquet"
    shuffled.to_parquet(path, row_group_size=500)  # several batches, series across their boundaries
    with caplog.at_level(logging.WARNING):
        panel = load_panel(path, futr=["promo"])
    assert "in memory" not in caplog.text  # streamed, then ordered by id
    assert_same_panel(panel, panel_from_frame(frame, "x", futr=["promo"]), exact=False)


def test_files_the_stream_cannot_take_are_read_in_memory_then_stored(small, tmp_path, caplog):
    frame = frame_of(small.path)
    frame["unique_id"] = frame.unique_id.astype(str)
    rows = frame.sample(frac=1.0, random_state=0)  # unsorted rows
    rows.loc[rows.index[5], "y"] = np.nan
    path = tmp_path / "messy.parquet"
    rows.to_parquet(path)
    with caplog.at_level(logging.WARNING):
        panel = load_panel(path, futr=["promo"], fill="ffill")
    assert "in memory" in caplog.text and store_of(panel) is not None
    assert_same_panel(panel, panel_from_frame(rows, "x", futr=["promo"], fill="ffill"))


def test_the_stream_reports_problems_as_the_in_memory_reader_does(small, tmp_path):
    from attnlab.errors import UserError

    frame = frame_of(small.path)
    frame.loc[7, "y"] = np.nan
    path = tmp_path / "hole.parquet"
    frame.to_parquet(path)
    with pytest.raises(UserError, match="missing value"):
        load_panel(path, futr=["promo"])
    assert not list((store_module.cache_root() / "panels").glob("*"))  # nothing half-written is left


def test_integer_periods_and_calendar_features_stream(tmp_path):
    n = 40
    frame = pd.DataFrame({"unique_id": np.repeat(["a", "b"], n), "ds": np.tile(np.arange(n) * 2 + 1900, 2),
                          "y": np.arange(2 * n, dtype=float)})
    path = tmp_path / "years.parquet"
    frame.to_parquet(path)
    panel = load_panel(path)
    assert store_of(panel) is not None and panel.time_kind == "int" and panel.freq == "2" and panel.starts == [1900] * 2
    assert_same_panel(panel, panel_from_frame(frame, "x"))
    hourly = frame.assign(ds=pd.Timestamp("2024-03-01") + pd.to_timedelta(np.tile(np.arange(n), 2), "h"))
    path = tmp_path / "hours.parquet"
    hourly.to_parquet(path)
    streamed = load_panel(path, calendar=["hour"])
    assert streamed.futr_names == ("hour_sin", "hour_cos")
    assert_same_panel(streamed, load_panel(hourly, calendar=["hour"]))


def test_select_of_a_mapped_panel_is_a_mapped_panel(small):
    panel = load_panel(small.path, futr=["promo"])
    keep = np.zeros(panel.n_series, dtype=bool)
    keep[[1, 4, 5]] = True
    selected = panel.select(keep)
    assert store_of(selected) is not None and store_of(selected) != store_of(panel)
    assert selected.ids == tuple(panel.ids[i] for i in (1, 4, 5))
    np.testing.assert_array_equal(selected.target[: selected.lengths[0]], panel.target[panel.rows(1)])
    np.testing.assert_array_equal(selected.futr[-selected.lengths[-1]:], panel.futr[panel.rows(5)])
    memory = panel_from_frame(frame_of(small.path), "x", futr=["promo"])
    assert_same_panel(selected, memory.select(keep))


def test_truncate_and_static_covariates_at_many_series():
    from attnlab.data.panel import Panel, static_from_frame

    S = 20_000
    lengths = np.full(S, 5)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    panel = Panel(ids=tuple(f"s{i}" for i in range(S)), time_kind="int", freq="1", starts=[0] * S, offsets=offsets,
                  target=np.arange(5 * S, dtype=float)[:, None], target_names=("y",))
    short = panel.truncate(2)
    np.testing.assert_array_equal(short.target[:6, 0], [0, 1, 2, 5, 6, 7])
    static = pd.DataFrame({"unique_id": panel.ids[::-1], "size": np.arange(S, dtype=float)[::-1]})
    with_static = static_from_frame(panel, static, "static.csv")  # one set, not one per series
    np.testing.assert_array_equal(with_static.static[:3, 0], [0, 1, 2])


# ---------------------------------------------------------------------------------------------- statistics


def ragged_panel(seed=0, S=40):
    from attnlab.data.panel import Panel

    rng = np.random.default_rng(seed)
    lengths = rng.integers(30, 90, size=S)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    n = int(offsets[-1])
    target = rng.normal(50, 10, size=(n, 2)) * rng.uniform(0.1, 100, size=(n, 1))
    target[offsets[3]: offsets[4]] = 0.1  # a constant series
    futr = rng.integers(0, 2, size=(n, 1)).astype(float)
    return Panel(ids=tuple(f"s{i:03d}" for i in range(S)), time_kind="int", freq="1", starts=[0] * S,
                 offsets=offsets, target=target, target_names=("a", "b"), futr=futr, futr_names=("f",))


def test_chunked_statistics_match_each_series_own(monkeypatch):
    from attnlab.data import forecasting

    panel = ragged_panel()
    train = (panel.lengths * 0.7).astype(np.int64)
    monkeypatch.setattr(forecasting, "STATS_ROWS", 100)  # many chunks
    stats = series_stats(panel.target, panel.offsets, train)
    scales = mase_scales(panel.target, panel.offsets, train, season=7)
    for s in range(panel.n_series):
        rows = panel.target[panel.offsets[s]: panel.offsets[s] + train[s]]
        np.testing.assert_allclose(stats.mean[s], rows.mean(axis=0), rtol=1e-12)
        std = rows.std(axis=0)
        np.testing.assert_allclose(stats.std[s], np.where(rows.max(0) == rows.min(0), 1.0, std), rtol=1e-10)
        np.testing.assert_allclose(scales[s], mase_denominator(rows, 7), rtol=1e-12)
    assert stats.flat[3].all() and not stats.flat[4].any()


def test_batches_standardised_on_the_fly_equal_a_standardised_copy():
    panel = ragged_panel()
    data = prepare_forecast(panel, input_len=12, horizon=4, season=7, split="last", train_stride=3)
    whole = data.tensors  # standardised copy of every row, the former layout
    for split in ("train", "val", "test"):
        dataset = data.dataset(split)
        index = np.arange(len(dataset))
        batch = dataset.batch(index)
        series, origin = data.locate(split, index)
        rows = (panel.offsets[series] + origin - 12)[:, None] + np.arange(16)
        torch.testing.assert_close(batch.x, whole["target"][rows[:, :12]], rtol=0, atol=0)
        torch.testing.assert_close(batch.y, whole["target"][rows[:, 12:]], rtol=0, atol=0)
        torch.testing.assert_close(batch.futr, whole["futr"][rows], rtol=0, atol=0)
        assert batch.x.dtype == torch.float32 and batch.series.dtype == torch.int64


def test_a_stored_panel_trains_on_the_same_windows_as_in_memory(small):
    mapped = load_panel(small.path, futr=["promo"])
    memory = panel_from_frame(frame_of(small.path), "x", futr=["promo"])
    a = prepare_forecast(mapped, input_len=48, horizon=12, season=24, split="last", train_stride=5)
    b = prepare_forecast(memory, input_len=48, horizon=12, season=24, split="last", train_stride=5)
    assert {k: len(w) for k, w in a.windows.items()} == {k: len(w) for k, w in b.windows.items()}
    index = np.arange(len(a.windows["train"]))
    x, y = a.dataset("train").batch(index), b.dataset("train").batch(index)
    torch.testing.assert_close(x.x, y.x, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.futr, y.futr, rtol=1e-5, atol=1e-5)


def test_a_mapped_dataset_pickles_as_file_names(small):
    data = prepare_forecast(load_panel(small.path, futr=["promo"]), input_len=48, horizon=12, season=24,
                            split="last")
    dataset = data.dataset("train")
    blob = pickle.dumps(dataset)
    assert len(blob) < dataset.target.nbytes  # the rows are not in the pickle
    back = pickle.loads(blob)
    assert isinstance(back.target, np.memmap)
    index = np.arange(0, len(dataset), 7)
    torch.testing.assert_close(back.batch(index).x, dataset.batch(index).x, rtol=0, atol=0)


@pytest.mark.skipif(sys.platform != "linux", reason="fork-started workers")
def test_loader_workers_read_the_mapped_store(small):
    from torch.utils.data import DataLoader

    from attnlab.data.windows import keep_batch

    data = prepare_forecast(load_panel(small.path, futr=["promo"]), input_len=48, horizon=12, season=24,
                            split="last")
    dataset = data.dataset("val")
    batches = [list(range(i, min(i + 8, len(dataset)))) for i in range(0, len(dataset), 8)]
    alone = [b.x for b in DataLoader(dataset, batch_sampler=batches, collate_fn=keep_batch)]
    workers = [b.x for b in DataLoader(dataset, batch_sampler=batches, collate_fn=keep_batch, num_workers=2)]
    for a, b in zip(alone, workers, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_window_index_costs_o_series_not_o_windows():
    S = 100_000
    rng = np.random.default_rng(0)
    counts = rng.integers(300, 500, size=S)
    windows = WindowSet(np.full(S, 168), counts, stride=1)
    assert len(windows) == counts.sum() > 3e7
    held = windows.first.nbytes + windows.count.nbytes + windows.cumulative.nbytes
    assert held < 3e6  # 24 bytes a series, whatever the number of windows (~40 M here)
    index = rng.integers(0, len(windows), size=1000)
    series, origin = windows.locate(index)
    assert ((windows.cumulative[series] <= index) & (index < windows.cumulative[series + 1])).all()
    np.testing.assert_array_equal(origin, 168 + index - windows.cumulative[series])


def test_open_store_refuses_a_folder_that_is_not_one(tmp_path):
    from attnlab.errors import UserError

    with pytest.raises(UserError, match="not a panel store"):
        open_store(tmp_path)
