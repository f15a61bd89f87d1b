"""Shared fixtures and test-data builders (hand-made data only).

The suite runs on the CPU, also on a machine with a GPU: its tests assert bit-for-bit results
(same seed → same weights, w = 0 → the same weights as without the term, saved = loaded) that
CUDA's kernels do not give, and they build their CPU tensors beside the model's. So CUDA is hidden
from this process and the workers it starts (Dagster Pipes, torchrun) before torch initialises
it. ``SEMID_TEST_CUDA=1`` leaves the GPUs visible. GPU checks live in ``bench/`` (``bench_train.py
--device cuda``, ``check_determinism.py``; ``sweep_recommender.py`` trains on CUDA when it is there).
"""

from __future__ import annotations

import os

if os.environ.get("SEMID_TEST_CUDA") != "1":
    os.environ["CUDA_VISIBLE_DEVICES"] = ""  # before torch's first CUDA call (torch reads it then)

import duckdb
import numpy as np
import pandas as pd
import pytest
import torch

T0 = pd.Timestamp("2024-01-01")
EVENT_COLUMNS = ["stratum_id", "position", "stratum_length", "ts", "track_id", "feedback", "context_type",
                 "artist_id", "genre_id"]


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread is fastest and avoids oversubscribing a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_id_table(track_ids, k: int, levels: int = 4, seed: int = 0) -> pd.DataFrame:
    """A semantic-ID table (track_id, c1..cL, tie) with uniform random codes and a valid tie level."""
    rng = np.random.default_rng(seed)
    cols = [f"c{i + 1}" for i in range(levels)]
    df = pd.DataFrame(rng.integers(0, k, size=(len(track_ids), levels)), columns=cols)
    df["tie"] = df.groupby(cols).cumcount()
    df.insert(0, "track_id", list(track_ids))
    return df


def user_feedback(*, n_users: int, n_tracks: int, days: float, seed: int, min_events: int, max_events: int,
                  feedback=None, time_grid: float | None = None, artists: int = 7) -> pd.DataFrame:
    """Per-user feedback events shaped like ``feedback_events``. ``feedback(rng, user, track)`` → 0/1
    (default: a coin flip); ``time_grid`` rounds times to that many days (equal times on purpose)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        n = int(rng.integers(min_events, max_events))
        ts = np.sort(rng.uniform(0, days, n))
        if time_grid:
            ts = np.sort(np.round(ts / time_grid) * time_grid)
        for p, t in enumerate(ts):
            k = int(rng.integers(0, n_tracks))
            fb = int(rng.integers(0, 2)) if feedback is None else int(feedback(rng, u, k))
            rows.append((f"u{u:03d}", p + 1, n, T0 + pd.Timedelta(days=float(t)), f"t{k:03d}", fb, None,
                         f"a{k % artists}", f"g{k % 3}"))
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def reloaded(result, splits):
    """The `id` model the evaluation loads from a training result's model.pt (``load_recommender``)."""
    from semid_pipeline.checkpoints import load_recommender

    return load_recommender(result.checkpoint.parent, splits_vocab=splits.vocab, id_table=None, id_table_hash=None)


def create_feedback_events(con, events: pd.DataFrame) -> None:
    """``events`` (EVENT_COLUMNS) as the warehouse's ``feedback_events`` table, typed as ingestion writes it."""
    con.register("ev_df", events)
    con.execute("""CREATE TABLE feedback_events AS SELECT stratum_id, position::INTEGER AS position,
                   stratum_length::INTEGER AS stratum_length, ts::TIMESTAMP AS ts, track_id,
                   feedback::TINYINT AS feedback, context_type::VARCHAR AS context_type, artist_id, genre_id,
                   'x.csv' AS source_file FROM ev_df""")
    con.unregister("ev_df")


@pytest.fixture
def con(tmp_path):
    """An open DuckDB warehouse file in the test's own folder (closed afterwards)."""
    c = duckdb.connect(str(tmp_path / "wh.duckdb"))
    yield c
    c.close()


def assert_names_the_problem(err, needles) -> None:
    """An InputDataError that says what is wrong (every needle) and names the file and column."""
    msg = str(err)
    for n in needles:
        assert n in msg, f"{n!r} not in message:\n{msg}"
    assert err.file and err.column
