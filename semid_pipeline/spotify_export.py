"""Synthetic Spotify "extended streaming history" exports: files in the real export format.

For tests, the benchmark and a demo without anyone's personal data. Listeners have tastes (a few
favourite genres of a small catalogue whose artists and titles carry the genre), so plays of
tracks of a favourite genre mostly end with ``trackdone`` and the others are mostly skipped: a
recommender has signal to learn. Every record carries the export's personal fields filled with
obviously fake values (IP addresses of the documentation range 203.0.113.0/24, usernames
``fake-user-<listener>``) so tests can check that none of them is ever written anywhere. Also
podcast episodes (no track URI), ``skipped`` = null in a share of the plays, and other
``reason_end`` values. Deterministic: the same config gives byte-identical files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENRES = ("ambient", "techno", "folk", "jazz", "metal", "soul", "house", "baroque", "punk", "reggae",
          "blues", "disco")
WORDS = ("night", "river", "echo", "gold", "static", "bloom", "signal", "ember", "tide", "glass", "motion", "north")
FAKE_IP_PREFIX = "203.0.113."  # TEST-NET-3: never a real address
FAKE_USER_PREFIX = "fake-user-"


@dataclass(frozen=True)
class ExportConfig:
    """What to generate; ``listeners`` sub-folders, each with ``plays_per_listener`` plays."""

    listeners: int = 3
    plays_per_listener: int = 2000
    n_tracks: int = 300
    n_genres: int = 6
    tracks_per_artist: int = 6
    favourite_genres: int = 2
    podcast_share: float = 0.03
    null_skipped_share: float = 0.2
    plays_per_file: int = 12000
    start: str = "2023-01-01"
    days: int = 120
    old_format: bool = False  # endsong_N.json names (older exports) instead of Streaming_History_Audio_*
    seed: int = 0


@dataclass(frozen=True)
class ExportManifest:
    folder: Path
    files: tuple[Path, ...]
    listeners: tuple[str, ...]
    n_plays: int
    fake_ips: tuple[str, ...]
    fake_usernames: tuple[str, ...]


def _catalogue(rng: np.random.Generator, cfg: ExportConfig) -> list[dict]:
    n_gen = min(cfg.n_genres, len(GENRES))
    tracks = []
    for i in range(cfg.n_tracks):
        g = i % n_gen
        artist = i // (cfg.tracks_per_artist * n_gen) * n_gen + g
        words = rng.choice(len(WORDS), 2, replace=False)
        tracks.append({
            "genre": g,
            "uri": f"spotify:track:{i:06d}{GENRES[g][:4]}{int(rng.integers(10**9)):09d}",
            "name": f"{WORDS[words[0]].title()} {WORDS[words[1]].title()} {GENRES[g].title()} {i}",
            "artist": f"The {GENRES[g].title()} Collective {artist}",
            "album": f"{GENRES[g].title()} Sessions Vol. {artist % 7 + 1}",
        })
    return tracks


_PERSONAL = ('"username": {user}, "platform": "Android OS 13 API 33 (Fake, Phone)", "conn_country": "ZZ", '
             '"ip_addr": {ip}, "user_agent_decrypted": "unknown"')
_TEMPLATE = ('{{"ts": "{ts}Z", {personal}, "ms_played": {ms}, {meta}, "audiobook_title": null, "audiobook_uri": null, '
             '"audiobook_chapter_uri": null, "audiobook_chapter_title": null, "reason_start": "{rs}", '
             '"reason_end": "{re}", "shuffle": {sh}, "skipped": {sk}, "offline": false, "offline_timestamp": null, '
             '"incognito_mode": false}}')
_PODCAST_META = ('"master_metadata_track_name": null, "master_metadata_album_artist_name": null, '
                 '"master_metadata_album_album_name": null, "spotify_track_uri": null, '
                 '"episode_name": "Episode about nothing", "episode_show_name": "A Fake Show", '
                 '"spotify_episode_uri": "spotify:episode:000fake000"')


def _track_meta(t: dict) -> str:
    """The track fields of a record, as JSON text (escaped once per track, not per play)."""
    d = json.dumps
    return (f'"master_metadata_track_name": {d(t["name"])}, "master_metadata_album_artist_name": {d(t["artist"])}, '
            f'"master_metadata_album_album_name": {d(t["album"])}, "spotify_track_uri": {d(t["uri"])}, '
            '"episode_name": null, "episode_show_name": null, "spotify_episode_uri": null')


def _plays(rng: np.random.Generator, tracks: list[dict], cfg: ExportConfig, ip: str, user: str) -> list[str]:
    """One listener's records (JSON text) in time order; all draws vectorized (1M plays in seconds)."""
    n_gen = min(cfg.n_genres, len(GENRES))
    fav = set(rng.choice(n_gen, min(cfg.favourite_genres, n_gen), replace=False).tolist())
    genre = np.array([t["genre"] for t in tracks])
    is_fav = np.isin(genre, list(fav))
    weights = np.where(is_fav, 4.0, 1.0)
    n = cfg.plays_per_listener
    span = cfg.days * 86400
    # mean gap between sessions such that the plays (mean session 12 plays of ~2.5 min) fill ``days``
    session_gap = max(span / max(n / 12, 1) - 12 * 160, 600.0)
    lengths = rng.geometric(1 / 12, size=n)
    first = np.zeros(n, dtype=bool)
    first[np.cumsum(lengths)[np.cumsum(lengths) < n]] = True
    first[0] = True
    podcast = rng.random(n) < cfg.podcast_share
    tr = rng.choice(len(tracks), size=n, p=weights / weights.sum())
    liked = rng.random(n) < np.where(is_fav[tr], 0.85, 0.2)
    u, null_skip, shuffle = rng.random(n), rng.random(n) < cfg.null_skipped_share, rng.random(n) < 0.3
    ms = np.where(podcast, rng.integers(60_000, 1_800_000, n),
                  np.where(liked, rng.integers(120_000, 300_000, n), rng.integers(1_000, 29_000, n)))
    gaps = np.where(first, rng.exponential(session_gap, n), 0.0) + ms / 1000 + rng.uniform(0, 5, n) * ~podcast
    t_sec = float(rng.uniform(0, 3600)) + np.cumsum(gaps)
    ts = np.datetime64(cfg.start, "s") + t_sec.astype("int64").astype("timedelta64[s]")
    ts_text = np.datetime_as_string(ts, unit="s")
    reason = np.where(podcast, "trackdone", np.where(liked, np.where(u < 0.93, "trackdone", "logout"),
                      np.where(u < 0.7, "fwdbtn", np.where(u < 0.8, "backbtn", "endplay"))))
    skipped = np.where(podcast | null_skip, "null", np.where(liked, "false", "true"))
    metas = [_track_meta(t) for t in tracks]
    personal = _PERSONAL.format(user=json.dumps(user), ip=json.dumps(ip))
    return [
        _TEMPLATE.format(ts=ts_text[i], personal=personal, ms=int(ms[i]), meta=_PODCAST_META if podcast[i] else
                         metas[tr[i]], rs="trackdone" if shuffle[i] else "clickrow", re=reason[i],
                         sh="true" if shuffle[i] else "false", sk=skipped[i])
        for i in range(n)
    ]


def write_exports(folder: str | Path, *, cfg: ExportConfig = ExportConfig()) -> ExportManifest:
    """Write ``cfg.listeners`` sub-folders of export files under ``folder`` (replacing those files)."""
    root = Path(folder)
    rng = np.random.default_rng(cfg.seed)
    tracks = _catalogue(rng, cfg)
    files, names, ips, users, total = [], [], [], [], 0
    for li in range(cfg.listeners):
        name = f"listener_{li + 1:02d}"
        ip, user = f"{FAKE_IP_PREFIX}{li + 7}", f"{FAKE_USER_PREFIX}{li + 1:02d}"
        sub = root / name
        sub.mkdir(parents=True, exist_ok=True)
        for old in sub.glob("*.json"):
            old.unlink()
        lrng = np.random.default_rng([cfg.seed, li])
        buf: list[str] = []
        part = 0

        def flush() -> None:
            nonlocal buf, part
            stem = f"endsong_{part}" if cfg.old_format else f"Streaming_History_Audio_{cfg.start[:4]}_{part}"
            p = sub / f"{stem}.json"
            p.write_text("[\n" + ",\n".join(buf) + "\n]\n", encoding="utf-8")
            files.append(p)
            buf, part = [], part + 1

        for rec in _plays(lrng, tracks, cfg, ip, user):
            buf.append(rec)
            total += 1
            if len(buf) >= cfg.plays_per_file:
                flush()
        if buf:
            flush()
        names.append(name)
        ips.append(ip)
        users.append(user)
    return ExportManifest(root, tuple(files), tuple(names), total, tuple(ips), tuple(users))


def main(argv: list[str] | None = None) -> None:
    """``python -m semid_pipeline.spotify_export <folder> [listeners] [plays per listener] [seed]``"""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        raise SystemExit(main.__doc__)
    cfg = ExportConfig(listeners=int(args[1]) if len(args) > 1 else 3,
                       plays_per_listener=int(args[2]) if len(args) > 2 else 2000,
                       seed=int(args[3]) if len(args) > 3 else 0)
    m = write_exports(args[0], cfg=cfg)
    print(f"wrote {m.n_plays} plays of {len(m.listeners)} listeners in {len(m.files)} files under {m.folder}")


if __name__ == "__main__":
    main()
