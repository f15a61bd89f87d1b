"""Content affinity (``[train] content_affinity``): how close a candidate's content is to what the
listener liked and disliked, as a term of the feedback score.

A sequence model learns what a track is from its plays. A track with few or none (the tail, new
releases) keeps roughly its initial vector, and its score says little; the boosted-trees baseline
scores such a track by the cosine of its content to the mean content of the listener's liked (and
disliked) history, and that one feature made the trees win on sparse catalogues (README, "The same
sparse catalogue in the per-user format"). With the switch, the feedback score becomes

    score + w · z(track)  (``track_prior``)  + a₊ · cos(v_c, p₊) − a₋ · cos(v_c, p₋)  [+ b · û_c · β]

    v_i  = Σ_f A_f[code_f(i)]          the content the track's ID fields say (``field_table``)
    p₊/₋ = mean v of the liked / disliked events of the input the model reads (its last max_len)
    β    = the listener's personal taste (``[train] personal_taste``, ``personal_tastes``): the MAP of
           a logistic regression of the feedback of the whole input (≤ 400 events, as the listener
           memory reads it) on the unit content vectors û = v / |v|, with the prior β ~ N(0, 1/λ),
           λ = ``TASTE_PRECISION``, and a free intercept (the listener's own like rate). The cosines
           are the quick version of this (Rocchio: the mean of the likes, the mean of the dislikes);
           the regression weighs each content direction by what separates this listener's likes from
           their dislikes and shrinks a short history toward no preference. It is the learnable
           ceiling's own taste estimator (``synthetic.ceiling``), on content instead of the truth.

``A`` is fitted once, before training, by the same ridge backfitting as content initialisation
(``content_init.backfit``) to the top ``AFFINITY_DIMS`` principal components of the content, over
every field but the tie counter: for ``id`` ``v_i`` is the track's own PC scores (halved: cosine
ignores it), for semantic IDs the content its codewords share (L·k rows, not N: the parameter
reduction stays), with song decomposition the artist and genre rows add theirs. Random codes
(``v0``) never read content (``content_init.uses_content``): the control stays content-free.

``A`` and (a₊, a₋) are buffers of the model (saved in its state_dict, never trained). Training never
sees the term; (w, a₊, a₋) are chosen together on the VALIDATION period (``score_terms.choose_weights``:
coordinate ascent of the stratified AUC over the grids, the smallest weights on ties, so 0 where
the term does not help; b with them, ``TASTE_WEIGHTS``). Like the prior it scores feedback on a play; the full-catalogue top-k and
serving rank by the model's own score. Its stored numbers (rows of A × dims) are counted next to
the parameters wherever the term is in use (``track_prior.stored_numbers``).
"""

from __future__ import annotations

import numpy as np
import torch

from .content_init import backfit, content_fields, content_targets
from .model import TrackEncoder

AFFINITY_DIMS = 32  # principal components of the content kept (fewer when the content has fewer)
# the validation grid of a₊ and a₋ (cosines lie in [−1, 1]; the model's scores span a few units)
AFFINITY_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)
# the personal taste: the prior precision λ of β (validation, demo users h=64: 1 and 3 about equal,
# 0.3 worse; README "Personal taste"), its Newton steps, and the validation grid of its weight b
TASTE_PRECISION = 3.0
TASTE_ITERS = 12  # at most; the steps stop at TASTE_TOLERANCE
TASTE_TOLERANCE = 1e-10  # the largest |Δ weight| of a Newton step that ends the steps
TASTE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def field_table(encoder: TrackEncoder, content: np.ndarray, *, dims: int = AFFINITY_DIMS) -> torch.Tensor:
    """(rows of ``encoder.table``, d) content rows of the encoder's content fields, d = min(dims, D):
    Σ_f table[codes_f(i)] ≈ the top-d principal-component scores of track i's content (``backfit``).
    Rows of the tie field, the pad and codes no track with content uses are 0."""
    d = max(1, min(int(dims), int(np.asarray(content).shape[1])))
    target = content_targets(content, hidden=d).to(encoder.codes.device)  # (N+1, d)
    fitted, _, _, _ = backfit(encoder, target, fields=content_fields(encoder))
    return fitted


def profiles(vecs: torch.Tensor, feedback: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """vecs (B, T, d) of a padded history, feedback (B, T) in {0, 1}, valid (B, T) bool →
    (liked mean (B, d), disliked mean (B, d)); a zero vector where the history has none."""
    pos = (valid & (feedback > 0)).to(vecs.dtype).unsqueeze(-1)  # (B, T, 1)
    neg = (valid & (feedback <= 0)).to(vecs.dtype).unsqueeze(-1)
    return ((vecs * pos).sum(1) / pos.sum(1).clamp_min(1.0),
            (vecs * neg).sum(1) / neg.sum(1).clamp_min(1.0))


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to length 1 (a zero row stays 0)."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-9)


def cosines(cand: torch.Tensor, liked: torch.Tensor, disliked: torch.Tensor) -> torch.Tensor:
    """cand, liked, disliked (E, d) → (E, 2): cos(cand, liked), cos(cand, disliked) (0 for a zero vector)."""
    c = unit(cand)
    return torch.stack([(c * unit(liked)).sum(-1), (c * unit(disliked)).sum(-1)], dim=-1)


def personal_tastes(vecs: torch.Tensor, feedback: torch.Tensor, valid: torch.Tensor, *,
                    precision: float = TASTE_PRECISION, iters: int = TASTE_ITERS) -> torch.Tensor:
    """vecs (B, T, d) of a padded history, feedback (B, T) in {0, 1}, valid (B, T) bool → β (B, d):
    per row the MAP of P(like) = σ(û · β + c) over its valid events, û = vecs / |vecs|, under
    β ~ N(0, I/precision), c ~ N(0, 4) (Newton's method, all rows at once, float64; an empty history
    gives β = 0). Newton converges quadratically: the steps stop once the largest change of any
    row's weights is below ``TASTE_TOLERANCE`` (5–7 steps on random histories of 10 and 400 events;
    the weights then move ~1e-16 more; the demo's tastes are the same to the last float32 bit as
    with all 12), at most ``iters``."""
    B, T, d = vecs.shape
    X = torch.cat([unit(vecs.double()), torch.ones(B, T, 1, dtype=torch.float64, device=vecs.device)], -1)  # (B, T, d+1)
    m = valid.double()  # (B, T)
    y = (feedback > 0).double() * m
    P = torch.full((d + 1,), float(precision), dtype=torch.float64, device=vecs.device)
    P[d] = 0.25
    W = torch.zeros(B, d + 1, dtype=torch.float64, device=vecs.device)
    for _ in range(iters):
        p = torch.sigmoid((X * W[:, None, :]).sum(-1))  # (B, T)
        g = (X * ((p - y) * m).unsqueeze(-1)).sum(1) + W * P  # (B, d+1)
        H = torch.einsum("btd,bt,bte->bde", X, p * (1 - p) * m, X) + torch.diag(P)  # (B, d+1, d+1)
        step = torch.linalg.solve(H, g.unsqueeze(-1)).squeeze(-1)  # (B, d+1)
        W = W - step
        if B == 0 or float(step.abs().max()) <= TASTE_TOLERANCE:
            break
    return W[:, :d].float()
