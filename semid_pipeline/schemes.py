"""ID schemes and grid cells: the one definition of what ``v1-k256`` and ``64|v1-k256`` mean.

An ID scheme is how a track becomes tokens for the recommender: ``id`` (one row per track, the
baseline) or a semantic-ID family with a codebook size k (``v0-k64``, ``v1-k256``,
``rqkmeans-k1024``). A grid cell is one (scheme, hidden size h) model of the experiment grid.

Every key is parsed and written here, and nowhere else, so that adding a family means adding one
row to ``FAMILIES`` (and its fit/extend in ``semantic_ids``). A key may end in ``+ag`` (song
decomposition: artist + genre fields added to the track vector); the suffix is parsed and kept
so that a later family variant does not need a new key syntax.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Family:
    """One row of the family table: what a key's family name promises."""

    name: str
    sized: bool  # True: the key carries a codebook size (``<name>-k<k>``); False: the key is the name
    learned: bool  # True: codes are fitted on content features (an artifact holds the codebooks)
    description: str
    random: bool = False  # True: codes carry no content by design (the control): never content-initialised


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family(name="id", sized=False, learned=False, description="one embedding row per track (the baseline)"),
        Family(name="v0", sized=True, learned=False, description="uniform random L-tuples (the paper's control)",
               random=True),
        Family(name="v1", sized=True, learned=True, description="RQ-VAE on content features (semantic IDs)"),
        Family(name="rqkmeans", sized=True, learned=True, description="residual k-means on content features"),
        Family(name="hybrid", sized=True, learned=False,
               description="per-track row + the v1-k<k> codewords, summed (not the paper's method)"),
    )
}
CODES_FROM = {"hybrid": "v1"}  # families that reuse another family's table (no fit of their own)
DECOMPOSITION_SUFFIX = "+ag"  # song decomposition: artist + genre fields
_KEY = re.compile(r"^(?P<family>[a-z][a-z0-9_]*)(?:-k(?P<k>\d+))?(?P<ag>\+ag)?$")
_CODE_COLUMN = re.compile(r"^c(\d+)$")


def code_columns(columns: Iterable) -> list[str]:
    """The learned levels ``c1..cL`` among ``columns`` (a DataFrame works too), in level order."""
    found = [str(c) for c in columns if _CODE_COLUMN.match(str(c))]
    return sorted(found, key=lambda c: int(c[1:]))


@dataclass(frozen=True)
class IdScheme:
    """``family`` in ``FAMILIES``; ``k`` the codebook size (None for unsized families)."""

    family: str
    k: int | None = None
    decomposition: bool = False

    def __post_init__(self) -> None:
        fam = FAMILIES.get(self.family)
        if fam is None:
            raise ConfigError(f"unknown ID scheme family {self.family!r}; expected one of {', '.join(FAMILIES)}")
        if fam.sized and (self.k is None or int(self.k) < 1):
            raise ConfigError(f"ID scheme {self.family!r} needs a codebook size k >= 1, got {self.k!r}")
        if not fam.sized and self.k is not None:
            raise ConfigError(f"ID scheme {self.family!r} takes no codebook size, got k={self.k!r}")

    @classmethod
    def parse(cls, key: str) -> IdScheme:
        """``'v1-k256'`` → IdScheme('v1', 256); ``'id'`` → IdScheme('id'); ``'v1-k256+ag'`` → decomposition."""
        m = _KEY.match(str(key).strip())
        if not m:
            raise ConfigError(
                f"ID scheme {key!r}: expected 'id' or '<family>-k<size>' (e.g. v1-k256) with family in "
                f"{', '.join(FAMILIES)}"
            )
        k = int(m["k"]) if m["k"] is not None else None
        return cls(family=m["family"], k=k, decomposition=m["ag"] is not None)

    @property
    def key(self) -> str:
        """The partition key: ``id``, ``v1-k256``, ``v1-k256+ag``."""
        base = self.family if self.k is None else f"{self.family}-k{int(self.k)}"
        return base + (DECOMPOSITION_SUFFIX if self.decomposition else "")

    @property
    def series(self) -> str:
        """The grid row without its size: ``v1``, ``v1+ag``, ``hybrid``, ``id`` (a line in the report's figures)."""
        return self.family + (DECOMPOSITION_SUFFIX if self.decomposition else "")

    @property
    def is_id(self) -> bool:
        return self.family == "id"

    @property
    def learned(self) -> bool:
        return FAMILIES[self.family].learned

    @property
    def random_codes(self) -> bool:
        """The codes are random by design (``v0``): ``[train] content_init`` leaves the tables random."""
        return FAMILIES[self.family].random

    @property
    def hybrid(self) -> bool:
        """The encoder adds a per-track field to the codewords (``hybrid-k<k>``)."""
        return self.family == "hybrid"

    @property
    def codes_scheme(self) -> IdScheme:
        """The scheme whose ID table supplies this one's codes: ``v1-k<k>`` for ``hybrid-k<k>``, the
        key without ``+ag`` for a decomposition variant (artist / genre come from the catalogue)."""
        family = CODES_FROM.get(self.family, self.family)
        return IdScheme(family=family, k=self.k)

    def code_columns(self, levels: int) -> list[str]:
        """The code columns of this scheme's table: ``c1`` for ``id``, ``c1..c<levels>`` otherwise."""
        return ["c1"] if self.is_id else [f"c{i + 1}" for i in range(int(levels))]

    def __str__(self) -> str:
        return self.key


def scheme_keys(schemes: Mapping[str, Iterable[int]], *, include_id: bool) -> list[str]:
    """Partition keys of a ``[semantic_ids.schemes]`` table (family → sizes), ``id`` first."""
    keys = [IdScheme(family=f, k=int(k)).key for f, ks in schemes.items() for k in ks]
    return (["id"] if include_id else []) + keys


@dataclass(frozen=True)
class GridCell:
    """One model of the grid: an ID scheme at a hidden size h.

    Dagster orders multi-partition dimensions alphabetically (``h``, then ``scheme``), so the
    partition key reads ``<h>|<scheme>``; file names use ``<h>_<scheme>``.
    """

    scheme: IdScheme
    h: int

    @classmethod
    def parse(cls, key) -> GridCell:
        """``'64|v1-k256'`` (or a Dagster MultiPartitionKey, whose str is that) → GridCell."""
        dims = getattr(key, "keys_by_dimension", None)
        if dims is not None:
            return cls.of(dims["scheme"], dims["h"])
        h, sep, scheme = str(key).strip().partition("|")
        if not sep or not h.strip().isdigit():
            raise ConfigError(f"grid key {key!r}: expected '<h>|<scheme>', e.g. 64|v1-k256")
        return cls.of(scheme.strip(), h.strip())

    @classmethod
    def of(cls, scheme: str | IdScheme, h: int | str) -> GridCell:
        return cls(scheme=scheme if isinstance(scheme, IdScheme) else IdScheme.parse(scheme), h=int(h))

    @property
    def dimensions(self) -> dict[str, str]:
        """Dagster multi-partition dimensions."""
        return {"h": str(self.h), "scheme": self.scheme.key}

    @property
    def partition_key(self) -> str:
        return f"{self.h}|{self.scheme.key}"

    @property
    def file_name(self) -> str:
        return f"{self.h}_{self.scheme.key}"

    def __str__(self) -> str:
        return self.partition_key
