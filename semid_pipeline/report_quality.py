"""The report's quality sections (issue 10): how much is left, and whether a model is worth shipping.

* ``lead_section``: a one-line headline (does the best model beat the best model-free baseline,
  with both CIs) and the paper's findings as verdicts on this data (``findings``), for the top.
* ``ceiling_table``: the synthetic world's oracle ceiling (and the learnable
  ceiling: the best a model can expect from this data), every baseline and every model side by
  side (test AUC + 95% CI), so "how much is left" is one glance.
* ``diagnostics_table``: the bias-only and shuffled-history models (``stages.diagnostics_record``).
* ``popularity_table``: AUC by track-popularity bucket (head / torso / tail / unseen) for models
  and baselines: semantic-ID gains are expected on the tail.

Input: the evaluation records (``experiment.partition_record`` + ``oracle`` from ``stages``).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

import pandas as pd

from .findings import compare, findings_html, findings_markdown, oracle_of, paper_findings, representation_view
from .popularity import POPULARITY_BUCKETS

_CI_COLS = ("test AUC", "CI lo", "CI hi")
#: A synthetic world's learnable ceiling (``synthetic.ceiling``): taste and appeal estimated from the data.
LEARNABLE_NAME = "learnable ceiling (taste + appeal estimated from the data)"


def _num(v) -> float:
    try:
        return float("nan") if v is None else float(v)
    except (TypeError, ValueError):
        return float("nan")


def _triple(d: dict | None) -> tuple[float, float, float]:
    d = d or {}
    return _num(d.get("auc")), _num(d.get("ci_lo")), _num(d.get("ci_hi"))


def _key(rec: dict) -> str:
    return str(rec.get("partition_key") or f"{rec.get('h')}|{rec.get('scheme_key', rec.get('scheme'))}")


def _baselines(records: Sequence[dict]) -> dict[str, dict]:
    """name → baseline record (they depend on the data only: the first record's copy)."""
    out: dict[str, dict] = {}
    for r in records:
        for name, b in (r.get("baseline_details") or {}).items():
            if isinstance(b, dict) and b.get("auc") is not None:
                out.setdefault(name, b)
    return out


def ceiling_table(records: Sequence[dict]) -> pd.DataFrame:
    """One row per oracle / baseline / model, best first within each kind."""
    rows = []
    oracle = oracle_of(records)
    if oracle is not None:
        rows.append(("ceiling", "oracle (generator's P(positive))", *_triple(oracle)))
        if isinstance(oracle.get("learnable"), dict):
            rows.append(("ceiling", LEARNABLE_NAME, *_triple(oracle["learnable"])))
    base = sorted(_baselines(records).items(), key=lambda kv: -_num(kv[1].get("auc")))
    rows += [("baseline", name, *_triple(b)) for name, b in base]
    models = sorted(records, key=lambda r: -_triple(r.get("test"))[0])
    rows += [("model", _key(r), *_triple(r.get("test"))) for r in models if not math.isnan(_triple(r.get("test"))[0])]
    return pd.DataFrame(rows, columns=["kind", "name", *_CI_COLS])


def headline(records: Sequence[dict]) -> str:
    """Whether the best model beats the best baseline: its CI lower bound above the baseline's AUC."""
    models = [r for r in records if not math.isnan(_triple(r.get("test"))[0])]
    base = _baselines(records)
    if not models or not base:
        return "Best model vs best baseline: not measurable (no evaluated model or no baseline)."
    best = max(models, key=lambda r: _triple(r.get("test"))[0])
    bname, b = max(base.items(), key=lambda kv: _num(kv[1].get("auc")))
    m, bt = _triple(best.get("test")), _triple(b)
    verdict = {"better": "beats", "worse": "is below", "tie": "does not beat (CI overlaps)"}.get(compare(m, bt[0]), "n/a vs")

    def fmt(t):
        return f"{t[0]:.4f} [{t[1]:.4f}, {t[2]:.4f}]"

    line = f"Best model {_key(best)} {fmt(m)} {verdict} the best baseline {bname} {fmt(bt)} (test AUC, 95% CI)."
    oracle = oracle_of(records)
    if oracle is not None:
        line += f" Ceiling (oracle): {fmt(_triple(oracle))}"
        if isinstance(oracle.get("learnable"), dict):
            line += f"; learnable from this data: {fmt(_triple(oracle['learnable']))}"
        line += "."
    return line


def popularity_table(records: Sequence[dict]) -> pd.DataFrame:
    """Rows: models and baselines; columns: test AUC within each popularity bucket."""
    rows = []
    entries = [(_key(r), (r.get("test") or {}).get("by_popularity")) for r in records]
    entries += [(f"baseline {n}", b.get("by_popularity")) for n, b in _baselines(records).items()]
    for name, buckets in entries:
        if not buckets:
            continue
        by = {b["bucket"]: _num(b.get("auc")) for b in buckets}
        rows.append({"name": name, **{k: by.get(k, float("nan")) for k in POPULARITY_BUCKETS}})
    return pd.DataFrame(rows, columns=["name", *POPULARITY_BUCKETS])


def _cell(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return str(v)


def _md(df: pd.DataFrame) -> str:
    if df.empty:
        return "_no data_\n"
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _html(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p class='note'>no data</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table class='tbl'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def diagnostics_table(diagnostics: dict | None, records: Sequence[dict]) -> pd.DataFrame:
    """One row per diagnostic model (``stages.diagnostics_record``): its test AUC [CI] and own score
    (without the score terms); a shuffled run also the grid cell it is read against, that cell's own
    score and the difference: what order is worth."""
    by_key = {_key(r): r for r in records}
    rows = []
    for d in (diagnostics or {}).get("rows", []):
        cell = by_key.get(d.get("compare_to") or "")
        cell_own = _triple(representation_view(cell).get("test"))[0] if cell else float("nan")
        own = _num((d.get("own") or {}).get("auc"))
        rows.append((d.get("name"), *_triple(d.get("test")), own, d.get("compare_to") or "", cell_own, cell_own - own))
    return pd.DataFrame(rows, columns=["diagnostic", *_CI_COLS, "own score", "read against", "its own score",
                                       "order is worth"])


def quality_sections(records: Sequence[dict], section_type, diagnostics: dict | None = None) -> tuple[list, list]:
    """(lead sections for the top of the report, sections for its end), as ``section_type``
    (``report.ReportSection``: passed in so this module does not import the report)."""
    records = list(records)
    line = headline(records)
    found = paper_findings(records)
    note = ""
    if any(r.get("test_without_prior") for r in records):
        note = ("The models carry the popularity prior, the content affinity with the personal taste and "
                "the listener memory ([train] popularity_prior, content_affinity, personal_taste, "
                "listener_memory; weights chosen on validation): the first finding and the tables judge them "
                "with these; the other findings compare representations on the models' own scores, "
                "without them, as the paper does.")
    lead = section_type(title="Verdict on this data",
                        html=f"<p><b>{html.escape(line)}</b></p>" + findings_html(found)
                        + (f"<p class='note'>{html.escape(note)}</p>" if note else ""),
                        markdown=f"**{line}**\n\n" + findings_markdown(found) + (f"\n\n{note}" if note else ""))
    ceiling, pop = ceiling_table(records), popularity_table(records)
    tail = [
        section_type(title="Ceiling, baselines and models (test AUC)", html=_html(ceiling), markdown=_md(ceiling)),
        section_type(title="AUC by track popularity (head / torso / tail / unseen in training)",
                     html=_html(pop), markdown=_md(pop)),
    ]
    if diagnostics is not None:
        diag = diagnostics_table(diagnostics, records)
        note = DIAGNOSTICS_NOTE + "".join(f" Left out: {x}." for x in diagnostics.get("skipped") or [])
        tail.insert(1, section_type(title="Diagnostics: order and popularity alone (test AUC)",
                                    html=_html(diag) + f"<p class='note'>{html.escape(note)}</p>",
                                    markdown=_md(diag) + f"\n{note}\n"))
    return [lead], tail


DIAGNOSTICS_NOTE = ("Bias-only models: no sequence and no score terms, the score is the summed learned biases "
                    "of the track's codes (per track for id, per codeword over the levels and the tie for "
                    "semantic IDs): how much each representation gets from popularity alone. Shuffled: the "
                    "same id model trained and evaluated on histories permuted within each stratum; its own "
                    "score against the grid cell's is what the order of the history is worth.")
