"""HTTP service over one partition's ``Recommender`` (FastAPI; run by ``semid serve``).

Endpoints: ``POST /recommend``, ``GET /healthz``, ``GET /info``, ``POST /reload`` and the
OpenAPI schema at ``/openapi.json`` (docs at ``/docs``). Bad input is a 4xx whose ``detail``
names the field (FastAPI's 422 ``loc``, or a 400/404 message); never a 500.

Reload loads the new partition beside the old one (the old keeps answering), then swaps the
``RecommenderHolder`` reference under a lock: requests in flight finish on the model they
started with, so none is dropped.
"""

# No `from __future__ import annotations`: FastAPI reads the local request models' annotations at runtime.

import threading
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Literal

from fastapi import Body, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from .config import ServeConfig
from .errors import SemidError
from .serving import Recommender, RecommenderHolder, policy_from_config

Loader = Callable[[str], Recommender]  # partition key → a loaded Recommender


def api_models(cfg: ServeConfig) -> SimpleNamespace:
    """The request / response models; the limits (``max_n``, ``max_history``) come from ``[serve]``."""

    class HistoryItem(BaseModel):
        model_config = ConfigDict(extra="forbid")
        track_id: StrictStr = Field(description="a catalogue track id; unknown ids are ignored and counted")
        feedback: Literal[0, 1] = Field(description="1 = played / liked, 0 = skipped / disliked")

    class RecommendRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        history: list[HistoryItem] = Field(min_length=1, max_length=cfg.max_history,
                                           description="the listener's events, oldest first")
        n: int = Field(10, ge=1, le=cfg.max_n, strict=True, description="list length")
        exclude: list[StrictStr] = Field(default_factory=list, max_length=cfg.max_history,
                                         description="track ids never to return")

    class Item(BaseModel):
        rank: int
        track_id: str
        score: float
        cold_start: bool

    class RecommendResponse(BaseModel):
        partition: str
        items: list[Item]
        unknown_tracks: int = Field(description="history entries whose track is not in the catalogue")
        history_used: int
        elapsed_ms: float

    class ReloadRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        partition: StrictStr | None = Field(None, description="another grid partition, e.g. '64|v1-k1024'")

    return SimpleNamespace(HistoryItem=HistoryItem, RecommendRequest=RecommendRequest, Item=Item,
                           RecommendResponse=RecommendResponse, ReloadRequest=ReloadRequest)


def create_app(*, loader: Loader, partition_key: str, cfg: ServeConfig,
               recommender: Recommender | None = None) -> FastAPI:
    """The app for one partition; ``loader`` is also what ``/reload`` calls."""
    holder = RecommenderHolder(recommender or loader(partition_key))
    policy = policy_from_config(cfg)
    reload_lock = threading.Lock()  # one reload at a time; requests never wait on it
    m = api_models(cfg)
    RecommendRequest, RecommendResponse, ReloadRequest, Item = (m.RecommendRequest, m.RecommendResponse,
                                                                 m.ReloadRequest, m.Item)

    app = FastAPI(title="semid recommendations", version="1",
                  description="Next tracks of a listener from one trained semantic-ID partition.")
    app.state.holder = holder

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok", "partition": holder.get().partition_key}

    @app.get("/info")
    def info() -> dict:
        rec = holder.get()
        b = rec.bundle
        return {
            "partition": rec.partition_key, "model_dir": b.model_dir, "model_config": b.config,
            "catalogue_size": rec.n_tracks, "id_table_hash": b.id_table_hash,
            "dataset_fingerprint": b.dataset_fingerprint, "policy": policy.__dict__,
            "limits": {"max_n": cfg.max_n, "max_history": cfg.max_history}, "reloads": holder.reloads,
        }

    @app.post("/recommend", response_model=RecommendResponse)
    def recommend(req: RecommendRequest) -> RecommendResponse:
        t0 = time.perf_counter()
        rec = holder.get()  # this request's model, whatever a reload does meanwhile
        out = rec.recommend([(h.track_id, h.feedback) for h in req.history], n=req.n, exclude=req.exclude,
                            policy=policy)
        cold = rec.is_cold.numpy()
        items = [Item(rank=i + 1, track_id=t, score=s, cold_start=bool(cold[x]))
                 for i, (t, s, x) in enumerate(zip(out.track_ids, out.scores, out.track_idx))]
        return RecommendResponse(partition=rec.partition_key, items=items, unknown_tracks=out.unknown_tracks,
                                 history_used=out.history_used, elapsed_ms=(time.perf_counter() - t0) * 1e3)

    @app.post("/reload")
    def reload(req: ReloadRequest | None = Body(None)) -> dict:
        key = (req.partition if req and req.partition else None) or holder.get().partition_key
        if not reload_lock.acquire(blocking=False):
            raise HTTPException(status_code=409, detail="reload: another reload is in progress")
        try:
            new = loader(key)  # the old model keeps answering while this loads
            old = holder.swap(new)
        except (SemidError, ValueError, OSError) as e:  # unknown partition, no model, bad key
            raise HTTPException(status_code=400, detail=f"partition: {e}") from None
        finally:
            reload_lock.release()
        return {"partition": new.partition_key, "previous": old.partition_key, "model_dir": new.bundle.model_dir,
                "reloads": holder.reloads}

    return app
