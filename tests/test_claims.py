"""One ingestion at a time: a second ingestion while one is active fails fast naming the holder;
a stale claim (its run ended or its process died) is taken over; only the owner releases."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from assets import ingestion
from resources import ArtifactStore, ComputeResource, DatasetResource, DuckDBWarehouse
from resources.runs import process_tags
from semid_pipeline import claims
from semid_pipeline.errors import WarehouseBusyError


def test_claim_is_exclusive_while_its_owner_is_active(tmp_path):
    wh = tmp_path / "wh.duckdb"
    active = {"run-a"}
    is_active = lambda c: c.owner in active  # noqa: E731
    claims.acquire(wh, owner="run-a", what="synthetic:tiny", is_active=is_active)
    with pytest.raises(WarehouseBusyError, match="run run-a .* ingests 'synthetic:tiny'"):
        claims.acquire(wh, owner="run-b", what="events:x", is_active=is_active)
    assert not claims.release(wh, owner="run-b")  # not the owner: the claim stays
    assert claims.current(wh).owner == "run-a"
    active.clear()  # run-a ended (or died) without releasing: its claim is stale
    assert claims.acquire(wh, owner="run-b", what="events:x", is_active=is_active).owner == "run-b"
    assert claims.release(wh, owner="run-b") and claims.current(wh) is None


@pytest.mark.slow
def test_ingestion_fails_fast_while_another_ingestion_run_is_active(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    other = DagsterRun(job_name="ingest_job", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED,
                       tags=process_tags())  # a live run: this very process
    instance.add_run(other)
    wh = tmp_path / "wh.duckdb"
    claims.acquire(wh, owner=other.run_id, what="synthetic:tiny", is_active=lambda c: False)
    resources = {"warehouse": DuckDBWarehouse(path=str(wh)), "artifacts": ArtifactStore(root=str(tmp_path / "a")),
                 "dataset": DatasetResource(spec="synthetic:tiny", data_dir=str(tmp_path / "data")),
                 "compute": ComputeResource(threads=1)}

    def ingest():
        return dg.materialize([ingestion.raw_feedback], resources=resources, instance=instance, raise_on_error=False)

    busy = ingest()
    assert not busy.success
    failure = next(e for e in busy.all_events if e.event_type_value == "STEP_FAILURE")
    assert "another ingestion is writing" in str(failure.step_failure_data.error.to_string())
    assert not wh.exists()  # nothing was written
    instance.report_run_failed(instance.get_run_by_id(other.run_id))  # the other run ends
    assert ingest().success
    assert claims.current(wh) is not None  # held until this run's content features are built
