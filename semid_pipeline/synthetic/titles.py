"""Realistic generated names: song titles, album titles, artist names (hard-catalogue modes only).

Word lists × a dozen title patterns give well over a million distinct titles, so a 100k-track
catalogue has (almost) no accidental repeats: repeats that remain are the deliberate ones
(covers). Data tables, not logic.
"""

from __future__ import annotations

import numpy as np

ADJ = (
    "Blue", "Golden", "Silent", "Electric", "Midnight", "Broken", "Wild", "Velvet", "Lonely", "Neon",
    "Crimson", "Summer", "Winter", "Hollow", "Burning", "Paper", "Silver", "Distant", "Sweet", "Heavy",
    "Little", "Last", "Secret", "Tender", "Restless", "Empty", "Bright", "Dark", "Cold", "Wicked",
    "Crazy", "Lost", "Open", "Faded", "Quiet", "Endless", "Savage", "Gentle", "Strange", "Holy",
    "Young", "Frozen", "Sacred", "Purple", "Scarlet", "Lucky", "Hungry", "Rusty", "Shining", "Brave",
    "Dusty", "Fragile", "Glass", "Honey", "Iron", "Jealous", "Kind", "Lazy", "Magic", "Northern",
)
NOUN = (
    "River", "Heart", "Road", "Sky", "Dream", "Fire", "Rain", "Train", "Light", "City",
    "Ocean", "Garden", "Mirror", "Shadow", "Highway", "Morning", "Echo", "Stone", "Wave", "Song",
    "Love", "Night", "Moon", "Sun", "Star", "Girl", "Boy", "Town", "House", "Door",
    "Window", "Letter", "Summer", "Angel", "Devil", "Kiss", "Ghost", "Bird", "Horse", "Wolf",
    "Storm", "Thunder", "Smoke", "Diamond", "Rose", "Flower", "Island", "Mountain", "Valley", "Desert",
    "Street", "Bridge", "Tower", "Harbor", "Forest", "Field", "Candle", "Feather", "Crown", "Sword",
    "Machine", "Radio", "Telephone", "Engine", "Paradise", "Heaven", "Memory", "Promise", "Secret", "Lie",
    "Truth", "Time", "World", "Fever", "Silence", "Dance", "Party", "Gold", "Blood", "Tears",
    "Eyes", "Hands", "Lips", "Soul", "Mind", "Body", "Home", "Lullaby", "Anthem", "Parade",
)
VERB = (
    "Dance", "Run", "Fall", "Fly", "Wait", "Stay", "Burn", "Shine", "Cry", "Sing",
    "Dream", "Breathe", "Hold", "Leave", "Drive", "Walk", "Call", "Follow", "Forget", "Remember",
    "Believe", "Hide", "Break", "Lose", "Find", "Touch", "Chase", "Save", "Carry", "Kiss",
)
VERB_ING = (
    "Dancing", "Running", "Falling", "Flying", "Waiting", "Staying", "Burning", "Shining", "Crying", "Singing",
    "Dreaming", "Breathing", "Holding", "Leaving", "Driving", "Walking", "Calling", "Following", "Forgetting",
    "Remembering", "Believing", "Hiding", "Breaking", "Losing", "Finding", "Chasing", "Saving", "Carrying",
)
def _third_person(v: str) -> str:
    if v.endswith("y") and v[-2] not in "aeiou":
        return v[:-1] + "ies"
    return v + "es" if v.endswith(("s", "sh", "ch")) else v + "s"


VERB_S = tuple(_third_person(v) for v in VERB)
PREP = ("Into", "Through", "Under", "Over", "Across", "Beyond", "Behind", "Inside", "Around", "After")
PLACE = (
    "Memphis", "Paris", "Berlin", "Tokyo", "Lisbon", "Detroit", "Chicago", "Havana", "Dublin", "Oslo",
    "Madrid", "Nashville", "Brooklyn", "Soho", "Rio", "Vienna", "Cairo", "Seoul", "Austin", "Glasgow",
    "the Harbour", "the Station", "the Palace", "the Fillmore", "Red Rocks", "the Roundhouse",
)
NAME = (
    "Mary", "Johnny", "Rosa", "Billy", "Lucy", "Jack", "Sally", "Eddie", "Maria", "Frankie",
    "Josephine", "Louie", "Annie", "Danny", "Ruby", "Charlie", "Stella", "Tommy", "Delilah", "Marco",
)
SURNAME = (
    "Carter", "Hayes", "Moreno", "Quinn", "Walsh", "Okafor", "Lindqvist", "Duarte", "Kowalski", "Tanaka",
    "Brennan", "Sorensen", "Vance", "Alvarez", "Mercer", "Novak", "Hale", "Baptiste", "Ferreira", "Ivanova",
)

_PATTERNS = (
    lambda r: f"{r(ADJ)} {r(NOUN)}",
    lambda r: f"{r(NOUN)} of {r(ADJ)} {r(NOUN)}",
    lambda r: f"{r(VERB_ING)} {r(PREP)} the {r(NOUN)}",
    lambda r: f"{r(NAME)}'s {r(ADJ)} {r(NOUN)}",
    lambda r: f"{r(ADJ)} {r(NOUN)} in {r(PLACE)}",
    lambda r: f"Don't {r(VERB)} My {r(ADJ)} {r(NOUN)}",
    lambda r: f"{r(NOUN)} and {r(ADJ)} {r(NOUN)}",
    lambda r: f"When the {r(NOUN)} {r(VERB_S)} {r(PREP)} the {r(NOUN)}",
    lambda r: f"{r(VERB)} Me {r(PREP)} the {r(ADJ)} {r(NOUN)}",
    lambda r: f"The {r(ADJ)} {r(NOUN)} of {r(NAME)}",
)


def _picker(rng: np.random.Generator):
    return lambda words: words[int(rng.integers(0, len(words)))]


def song_titles(rng: np.random.Generator, n: int, *, rounds: int = 20) -> list[str]:
    """``n`` titles; accidental repeats are redrawn ``rounds`` times (a few may remain)."""
    r = _picker(rng)
    titles = [_PATTERNS[int(rng.integers(0, len(_PATTERNS)))](r) for _ in range(n)]
    for _ in range(rounds):
        seen: set[str] = set()
        dup = []
        for i, t in enumerate(titles):
            (dup.append(i) if t in seen else seen.add(t))
        if not dup:
            break
        for i in dup:
            titles[i] = _PATTERNS[int(rng.integers(0, len(_PATTERNS)))](r)
    return titles


def album_titles(rng: np.random.Generator, n: int) -> list[str]:
    r = _picker(rng)
    forms = (
        lambda: f"{r(ADJ)} {r(NOUN)}s",
        lambda: f"The {r(NOUN)} Sessions",
        lambda: f"{r(NOUN)} & {r(NOUN)}",
        lambda: f"Songs from the {r(ADJ)} {r(NOUN)}",
    )
    return [forms[int(rng.integers(0, len(forms)))]() for _ in range(n)]


def artist_names(rng: np.random.Generator, n: int) -> list[str]:
    r = _picker(rng)
    forms = (
        lambda: f"{r(NAME)} {r(SURNAME)}",
        lambda: f"The {r(ADJ)} {r(NOUN)}s",
        lambda: f"{r(NOUN)} {r(NOUN)}",
        lambda: f"{r(NAME)} {r(SURNAME)} & the {r(NOUN)}s",
    )
    return [forms[int(rng.integers(0, len(forms)))]() for _ in range(n)]
