"""Stage 6: the top-N next tracks of every active listener, per trained grid partition."""


import dagster as dg

from resources import ArtifactStore, ComputeResource, DuckDBWarehouse
from semid_pipeline import serving
from semid_pipeline import serving_table as st
from semid_pipeline.errors import SemidError
from semid_pipeline.serving_load import find_model_dir, load_partition

from ._meta import number
from .partitions import cell_of, grid_partitions, settings
from .recommender import recommender


def serve_policy() -> serving.ServePolicy:
    return serving.policy_from_config(settings().serve)


def _bundle(context, warehouse: DuckDBWarehouse, artifacts: ArtifactStore):
    """The partition's model: the fingerprint folder `recommender` trained it into."""
    cell, cfg, layout = cell_of(context), settings(), artifacts.layout()
    try:
        mdir = find_model_dir(warehouse=warehouse.file, layout=layout, cell=cell, cfg=cfg)
    except SemidError as e:
        raise dg.Failure(description=str(e)) from e
    return load_partition(warehouse=warehouse.file, layout=layout, cell=cell, cfg=cfg, model_dir=mdir)


@dg.asset(
    partitions_def=grid_partitions,
    deps=[recommender],
    group_name="serving",
    kinds={"pytorch", "duckdb"},
    pool="warehouse",
    description="Top-N tracks ([serve] n) for every active listener (events in the last [serve] "
    "active_days; for session data every session of the last day), scored over the whole catalogue "
    "by codeword decomposition, under the [serve] policy. DuckDB table `recommendations`, one "
    "partition_key per grid partition, replaced in one transaction.",
)
def recommendations(context: dg.AssetExecutionContext, warehouse: DuckDBWarehouse, artifacts: ArtifactStore,
                    compute: ComputeResource):
    compute.configure_torch()
    cfg = settings()
    bundle = _bundle(context, warehouse, artifacts)
    rec = serving.Recommender(bundle=bundle, max_len=cfg.train.max_len)
    with warehouse.connect(read_only=True) as con:
        listeners = st.active_listeners(con, kind=bundle.extra["kind"], active_days=cfg.serve.active_days)
    df, timing = st.build_recommendations(rec, listeners, n=cfg.serve.n, policy=serve_policy())
    with warehouse.connect() as con:
        st.write_recommendations(con, bundle.partition_key, df)
    cat = bundle.catalog
    artist_of = _artist_of(cat)
    summ = st.summary(df, n_catalogue=rec.n_tracks, artist_of=artist_of)
    context.log.info(f"{bundle.partition_key}: {summ['listeners_served']} lists in {timing['seconds']:.2f}s")
    return dg.MaterializeResult(metadata={
        "listeners_served": dg.MetadataValue.int(summ["listeners_served"]),
        "rows": dg.MetadataValue.int(summ["rows"]),
        "seconds": number(timing["seconds"]),
        "lists_per_s": number(timing["lists_per_s"]),
        "catalogue_coverage": number(summ["catalogue_coverage"]),
        "cold_start_share": number(summ["cold_start_share"]),
        "distinct_artists_per_list": number(summ["distinct_artists_per_list"]),
        "n": dg.MetadataValue.int(cfg.serve.n),
        "served": dg.MetadataValue.text(f"{listeners.kind}s active since {listeners.since}"),
        "sample_lists": dg.MetadataValue.md(serving.render_sample_lists(df, cat, listeners=5, top=10)),
        "model_dir": dg.MetadataValue.path(bundle.model_dir),
        "id_table_hash": dg.MetadataValue.text(str(bundle.id_table_hash)),
    })


def _artist_of(cat) -> dict:
    if cat is None or "artist_id" not in cat:
        return {}
    c = cat.dropna(subset=["artist_id"])
    return dict(zip(c["track_id"].astype(str), c["artist_id"].astype(str)))


def _check_inputs(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
    """The stored rows plus what the checks compare them with (served listeners, catalogue, cold tracks)."""
    from semid_pipeline import splits as splits_mod
    from semid_pipeline.serving_load import read_catalog

    cfg = settings()
    with warehouse.connect(read_only=True) as con:
        recs = st.read_recommendations(con, cell_of(context).partition_key)
        splits = splits_mod.load_splits(con, cfg.split)
        listeners = st.active_listeners(con, kind=splits.kind, active_days=cfg.serve.active_days)
        cat = read_catalog(con)
    cold = set(splits.vocab.decode(list((splits.train_track_counts[1:] == 0).nonzero()[0] + 1)))
    return recs, listeners, cat, cold, splits.vocab.n_tracks


def _result(passed_meta) -> dg.AssetCheckResult:
    passed, meta = passed_meta
    return dg.AssetCheckResult(passed=bool(passed), metadata={k: _meta(v) for k, v in meta.items()})


def _meta(v):
    return dg.MetadataValue.json(v) if isinstance(v, (list, dict)) else v


@dg.asset_check(asset=recommendations, blocking=True,
                description="Exactly [serve] n rows per served listener (fewer only when the catalogue leaves fewer).")
def recommendations_list_length(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
    recs, listeners, _, cold, n_cat = _check_inputs(context, warehouse)
    pol, n = serve_policy(), settings().serve.n
    excl = st.excluded_sets(listeners, pol)
    expected = st.expected_lengths(listeners, excl, n=n, n_catalogue=n_cat,
                                   n_cold_excluded=0 if pol.include_cold_start else len(cold))
    return _result(st.check_list_lengths(recs, n=n, expected=expected))


@dg.asset_check(asset=recommendations, blocking=True, description="No track twice in a listener's list.")
def recommendations_no_duplicates(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
    recs, *_ = _check_inputs(context, warehouse)
    return _result(st.check_no_duplicates(recs))


@dg.asset_check(asset=recommendations, blocking=True, description="Ranks 1..len and scores non-increasing with rank.")
def recommendations_scores_sorted(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
    recs, *_ = _check_inputs(context, warehouse)
    return _result(st.check_scores_sorted(recs))


@dg.asset_check(asset=recommendations, blocking=True, description="Every recommended track is in track_catalog.")
def recommendations_in_catalogue(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
    recs, _, cat, _, _ = _check_inputs(context, warehouse)
    return _result(st.check_in_catalogue(recs, [] if cat is None else cat["track_id"]))


@dg.asset_check(asset=recommendations, blocking=True,
                description="Policy kept: no already-heard / skipped track, cold-start rule, per-artist cap.")
def recommendations_policy(context: dg.AssetCheckExecutionContext, warehouse: DuckDBWarehouse):
    recs, listeners, cat, cold, _ = _check_inputs(context, warehouse)
    pol = serve_policy()
    return _result(st.check_policy(recs, policy=pol, excluded=st.excluded_sets(listeners, pol),
                                   cold_ids=cold, artist_of=_artist_of(cat)))


recommendations_job = dg.define_asset_job(
    "recommendations_job",
    selection=dg.AssetSelection.assets("recommendations"),
    description="Rebuild one partition's recommendations table (and its blocking checks).",
)

CHECKS = [recommendations_list_length, recommendations_no_duplicates, recommendations_scores_sorted,
          recommendations_in_catalogue, recommendations_policy]
