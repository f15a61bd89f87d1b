"""The paper's findings as verdicts on THIS data: held / not held / not measurable, with numbers.

Input: the evaluation records of ``experiment.partition_record`` (one per trained partition;
keys used: scheme_key, scheme, k, h, test{auc, ci_lo, ci_hi, by_history, cold_start},
params_total, params_track, baseline_details). Output: a list of ``Finding`` rows, rendered as
markdown or HTML by ``findings_markdown`` / ``findings_html`` for the top of the report.

A comparison "A beats B" is decided with A's bootstrap CI against B's point estimate:
A.ci_lo > B.auc → A better; A.ci_hi < B.auc → A worse; otherwise a tie (within noise).

With the popularity prior (``track_prior``), the content affinity (``content_affinity``) and the
listener memory (``listener_memory``) the first finding judges the model as it ships (score +
w · z + the affinity + the memory); the others compare
representations, as the paper does, on the model's own score (``test_without_prior``: the same
trained model with every such weight 0). The prior gives every scheme the same per-track
popularity, which would hide the differences between representations the paper is about.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

from .track_prior import stored_numbers

HELD, NOT_HELD, NOT_MEASURABLE = "held", "not held", "not measurable"


@dataclass(frozen=True)
class Finding:
    claim: str  # the paper's finding in one line
    verdict: str  # held | not held | not measurable
    evidence: str  # the numbers behind the verdict


def _auc(rec: dict | None, period: str = "test") -> tuple[float, float, float]:
    t = (rec or {}).get(period) or {}
    vals = [t.get("auc"), t.get("ci_lo"), t.get("ci_hi")]
    return tuple(float("nan") if v is None else float(v) for v in vals)  # type: ignore[return-value]


def _fmt(a: tuple[float, float, float]) -> str:
    return "n/a" if math.isnan(a[0]) else f"{a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}]"


def compare(a: tuple[float, float, float], b_auc: float) -> str:
    """'better' | 'worse' | 'tie' | 'n/a' for A (auc, lo, hi) against B's point estimate."""
    auc, lo, hi = a
    if any(math.isnan(x) for x in (auc, lo, hi, b_auc)):
        return "n/a"
    return "better" if lo > b_auc else "worse" if hi < b_auc else "tie"


def _models(records: list[dict]) -> list[dict]:
    return [r for r in records if not math.isnan(_auc(r)[0])]


def _find(records, scheme_key: str, h: int) -> dict | None:
    return next((r for r in records if r.get("scheme_key") == scheme_key and int(r.get("h", -1)) == h), None)


def _best_baseline(records: list[dict]) -> tuple[str, float] | None:
    best = None
    for r in records:
        for name, b in (r.get("baseline_details") or {}).items():
            if b.get("auc") is not None and (best is None or b["auc"] > best[1]):
                best = (name, float(b["auc"]))
    return best


def oracle_of(records) -> dict | None:
    """The synthetic world's oracle record (``oracle`` of any record: they share it), else None."""
    return next((r["oracle"] for r in records if isinstance(r.get("oracle"), dict)), None)


def finding_beats_baselines(records: list[dict]) -> Finding:
    claim = "The sequence model beats every model-free baseline on the same test pairs"
    models, base = _models(records), _best_baseline(records)
    if not models or base is None:
        return Finding(claim, NOT_MEASURABLE, "no evaluated model or no baseline")
    best = max(models, key=lambda r: _auc(r)[0])
    c = compare(_auc(best), base[1])
    evidence = (f"best model {best['scheme_key']} h={best['h']} {_fmt(_auc(best))} vs best baseline "
                f"{base[0]} {base[1]:.3f} (margin {_auc(best)[0] - base[1]:+.3f})")
    learn = (oracle_of(records) or {}).get("learnable")
    if isinstance(learn, dict):  # synthetic worlds: how much room the data leaves above the baseline
        evidence += (f"; learnable ceiling of this data {_fmt(_auc({'test': learn}))}, "
                     f"{learn['auc'] - base[1]:+.3f} above the best baseline")
        if _auc(best)[0] > learn["auc"]:  # an estimator's result, not a bound
            evidence += " (the best model passes it: that estimate is one estimator's, not a bound)"
    if base[0] == "adjusted_popularity_by_plays" and not any((r.get("prior") or {}).get("by_plays") for r in models):
        evidence += ("; the play count predicts the tracks' effects here and no model's prior took that: "
                     "[train] prior_by_plays = true lets validation choose it")
    return Finding(claim, HELD if c == "better" else NOT_HELD, evidence)


def _semantic(records, scheme: str) -> list[dict]:
    return [r for r in _models(records) if r.get("scheme") == scheme and "+" not in str(r.get("scheme_key"))]


def finding_v1_matches_id(records: list[dict]) -> Finding:
    claim = "v1 semantic IDs at the largest k match the per-track id model with far fewer parameters"
    v1 = _semantic(records, "v1")
    pairs = [(r, _find(records, "id", int(r["h"]))) for r in v1 if r.get("k") == max(x["k"] for x in v1)] if v1 else []
    pairs = [(a, b) for a, b in pairs if b is not None and not math.isnan(_auc(b)[0])]
    if not pairs:
        return Finding(claim, NOT_MEASURABLE, "needs v1 and id at the same h")
    parts, ok = [], True
    for v, i in sorted(pairs, key=lambda p: p[0]["h"]):
        inside = _auc(i)[1] <= _auc(v)[0]  # at or above id's CI lower bound
        ok &= inside
        red = 1 - stored_numbers(v) / max(stored_numbers(i), 1)  # + the popularity prior's z where it is used
        parts.append(f"h={v['h']}: {v['scheme_key']} {_fmt(_auc(v))} vs id {_fmt(_auc(i))}, {red:.0%} fewer parameters"
                     + (" (counting the prior's per-track values)" if stored_numbers(v) != (v.get("params_total") or 0) else ""))
    return Finding(claim, HELD if ok else NOT_HELD, "; ".join(parts))


def finding_v1_vs_v0(records: list[dict], decomposed: bool) -> Finding:
    suffix = "+ag"
    claim = ("With song decomposition, v1 and v0 are about equal" if decomposed
             else "Song-only: trained v1 IDs beat random v0 IDs at the same k and h")
    pick = (lambda r: str(r.get("scheme_key", "")).endswith(suffix)) if decomposed else (lambda r: "+" not in str(r.get("scheme_key", "")))
    rows = [r for r in _models(records) if pick(r)]
    pairs = []
    for v in (r for r in rows if r.get("scheme") == "v1"):
        o = next((r for r in rows if r.get("scheme") == "v0" and r.get("k") == v.get("k") and r.get("h") == v.get("h")), None)
        if o is not None:
            pairs.append((v, o))
    if not pairs:
        return Finding(claim, NOT_MEASURABLE, "needs v1 and v0 at the same k and h" + (" with +ag" if decomposed else ""))
    if decomposed and not _decomposition_adds_fields(records, [r for pair in pairs for r in pair]):
        return Finding(claim, NOT_MEASURABLE, "the data has no artist or genre: the +ag models are the song-only ones")
    verdicts = [compare(_auc(v), _auc(o)[0]) for v, o in pairs]
    want = "tie" if decomposed else "better"
    held = sum(x == want for x in verdicts) * 2 > len(verdicts)
    ev = "; ".join(f"k={v['k']} h={v['h']}: v1 {_auc(v)[0]:.3f} vs v0 {_auc(o)[0]:.3f} ({c})" for (v, o), c in zip(pairs, verdicts))
    return Finding(claim, HELD if held else NOT_HELD, ev)


def _decomposition_adds_fields(records: list[dict], decomposed: list[dict]) -> bool:
    """Whether any ``+ag`` model has more track parameters than its song-only twin (same scheme,
    k, h): without artist / genre in the data, song decomposition adds no field."""
    for r in decomposed:
        key = str(r.get("scheme_key", "")).removesuffix("+ag")
        twin = next((o for o in _models(records) if o.get("scheme_key") == key and o.get("h") == r.get("h")), None)
        if twin is None or r.get("params_track") is None or r.get("params_track") != twin.get("params_track"):
            return True
    return False


def finding_lift_low_activity(records: list[dict]) -> Finding:
    claim = "The semantic-ID lift over id is highest for low-activity listeners (short histories)"
    v1 = _semantic(records, "v1")
    lifts = {}
    for v in v1:
        i = _find(records, "id", int(v["h"]))
        if i is None:
            continue
        vb = {b.get("bucket"): b.get("auc") for b in (v.get("test") or {}).get("by_history") or []}
        ib = {b.get("bucket"): b.get("auc") for b in (i.get("test") or {}).get("by_history") or []}
        for bucket in vb:
            if vb[bucket] is not None and ib.get(bucket) is not None:
                lifts.setdefault(bucket, []).append(vb[bucket] - ib[bucket])
    if len(lifts) < 2:
        return Finding(claim, NOT_MEASURABLE, "needs ≥ 2 history buckets with v1 and id scored")
    mean = {b: sum(x) / len(x) for b, x in lifts.items()}
    first = next(iter(mean))  # buckets are in increasing history order
    ev = ", ".join(f"{b}: {m:+.3f}" for b, m in mean.items())
    return Finding(claim, HELD if mean[first] >= max(mean.values()) else NOT_HELD, f"mean v1 − id lift by history bucket: {ev}")


def finding_k_over_h(records: list[dict]) -> Finding:
    claim = "Per parameter, a larger codebook k is worth more than a larger hidden size h"
    v1 = _semantic(records, "v1")
    ks, hs = sorted({r["k"] for r in v1}), sorted({int(r["h"]) for r in v1})
    if len(ks) < 2 or len(hs) < 2:
        return Finding(claim, NOT_MEASURABLE, "needs ≥ 2 k and ≥ 2 h values of v1")
    grid = {(r["k"], int(r["h"])): r for r in v1}
    base = grid.get((ks[0], hs[0]))
    up_k, up_h = grid.get((ks[-1], hs[0])), grid.get((ks[0], hs[-1]))
    if base is None or up_k is None or up_h is None:
        return Finding(claim, NOT_MEASURABLE, "grid corners missing")

    def slope(r):
        dp = (r.get("params_total") or 0) - (base.get("params_total") or 0)
        return (_auc(r)[0] - _auc(base)[0]) / dp * 1e6 if dp else float("nan")

    sk, sh = slope(up_k), slope(up_h)
    return Finding(claim, NOT_MEASURABLE if math.isnan(sk) or math.isnan(sh) else HELD if sk > sh else NOT_HELD,
                   f"AUC per million parameters: k {ks[0]}→{ks[-1]} {sk:+.3f}, h {hs[0]}→{hs[-1]} {sh:+.3f}")


def finding_cold_start(records: list[dict]) -> Finding:
    claim = "Semantic IDs score tracks unseen in training better than id (cold start)"
    rows = []
    for v in _semantic(records, "v1"):
        i = _find(records, "id", int(v["h"]))
        cv, ci = ((r.get("test") or {}).get("cold_start") or {} for r in (v, i or {}))
        if cv.get("auc") is not None and ci.get("auc") is not None:
            rows.append((v, cv, ci))
    if not rows:
        return Finding(claim, NOT_MEASURABLE, "no cold-start pairs (no test track unseen in training)")
    verdicts = [compare((cv["auc"], cv.get("ci_lo", float("nan")), cv.get("ci_hi", float("nan"))), ci["auc"]) for _, cv, ci in rows]
    ev = "; ".join(f"{v['scheme_key']} h={v['h']}: {cv['auc']:.3f} vs id {ci['auc']:.3f}" for v, cv, ci in rows)
    return Finding(claim, HELD if verdicts.count("better") * 2 > len(verdicts) else NOT_HELD, ev)


def representation_view(rec: dict) -> dict:
    """A record as the paper's comparisons see it: the model's own test scores (w = 0) when it has
    a popularity prior in use, else as it is."""
    bare = rec.get("test_without_prior")
    return {**rec, "test": bare, "prior": None} if bare else rec


def paper_findings(records: list[dict]) -> list[Finding]:
    """Every finding's verdict on these records (always the same rows, in the paper's order): the
    first on the models as they ship, the others on ``representation_view``."""
    rep = [representation_view(r) for r in records]
    return [finding_beats_baselines(records), finding_v1_matches_id(rep),
            finding_v1_vs_v0(rep, decomposed=False), finding_v1_vs_v0(rep, decomposed=True),
            finding_lift_low_activity(rep), finding_k_over_h(rep), finding_cold_start(rep)]


def findings_markdown(findings: list[Finding]) -> str:
    lines = ["| Paper's finding | On this data | Evidence (test AUC [95% CI]) |", "|---|---|---|"]
    for f in findings:
        lines.append(f"| {f.claim} | **{f.verdict}** | {f.evidence.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def findings_html(findings: list[Finding]) -> str:
    rows = "".join(f"<tr><td>{html.escape(f.claim)}</td><td><b>{html.escape(f.verdict)}</b></td>"
                   f"<td>{html.escape(f.evidence)}</td></tr>" for f in findings)
    return ("<table class='findings'><thead><tr><th>Paper's finding</th><th>On this data</th>"
            f"<th>Evidence (test AUC [95% CI])</th></tr></thead><tbody>{rows}</tbody></table>")
