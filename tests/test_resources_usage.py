"""Peak RSS of a stage (semid_pipeline.resources_usage): the call's own peak, not the process's."""

import numpy as np

from semid_pipeline import resources_usage as ru


def _touch(mb: int) -> float:
    a = np.ones(mb * 2**20 // 8)  # written, so resident
    return float(a[::4096].sum())


def test_peak_is_the_calls_own_not_an_earlier_one():
    _touch(300)  # an earlier, larger peak of the process
    with ru.stage_peak_rss() as small:
        _touch(20)
    with ru.stage_peak_rss() as big:
        base = ru.current_rss_mb()
        _touch(150)
    assert small.method in ("hwm-reset", "sampled")
    assert big.peak_rss_mb >= base + 140  # the 150 MB array was counted
    assert small.peak_rss_mb < big.peak_rss_mb  # and the earlier 300 MB peak was not
    assert ru.peak_rss_mb() >= big.peak_rss_mb - 1


def test_sampling_fallback_sees_a_held_allocation(monkeypatch):
    monkeypatch.setattr(ru, "reset_high_water_mark", lambda: False)
    import time

    with ru.stage_peak_rss(interval_s=0.005) as mem:
        base = ru.current_rss_mb()
        a = np.ones(120 * 2**20 // 8)
        time.sleep(0.05)
        del a
    assert mem.method == "sampled" and not mem.exact
    assert mem.peak_rss_mb >= base + 110


def test_warehouse_connections_cap_duckdb_memory(tmp_path, monkeypatch):
    from semid_pipeline import warehouse

    def limit() -> str:
        with warehouse.connect(tmp_path / "w.duckdb") as con:
            return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    default = limit()  # DEFAULT_DUCKDB_MEMORY_LIMIT (3GB), not DuckDB's 80% of the machine's RAM
    assert default.endswith("GiB") and 2.0 < float(default.split()[0]) < 3.0
    monkeypatch.setenv("SEMID_DUCKDB_MEMORY_LIMIT", "512MB")
    assert limit() == "488.2 MiB"
