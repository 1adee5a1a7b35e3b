"""The synthetic world: kinds of entity, their attributes, and what each modality shows of them.

This module is the world's *language*: captions, facts and comparison questions. Rendering the
world into media lives in `xib.data.render`; generation of data sets in `xib.data.generate`.

Each kind has a distinct (colour, shape) pair (so an image or video names the kind), a distinct
(shape, size) pair (so a point cloud names the kind) and a distinct sound (so audio names the
kind). Comparison questions then need world knowledge the LLM learned from text: the habitat,
liveliness, speed or loudness of the kind a caption describes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from xib.config import XibConfig

SIZES = ("small", "medium", "large")
SHAPES = ("sphere", "cone", "cylinder", "cube", "ring", "cross")
COLOURS = {
    "brown": (140, 90, 40),
    "grey": (128, 128, 128),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 30),
    "green": (40, 170, 60),
    "orange": (245, 140, 20),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
    "red": (210, 30, 30),
}
HABITATS = ("home", "forest", "ocean", "city", "farm", "sky")
HABITAT_PHRASE = {
    "home": "in a home",
    "forest": "in a forest",
    "ocean": "in the ocean",
    "city": "in a city",
    "farm": "on a farm",
    "sky": "in the sky",
}
# Background colours that let an image show its setting.
HABITAT_BACKGROUND = {
    "home": (200, 170, 150),
    "forest": (30, 90, 40),
    "ocean": (20, 60, 140),
    "city": (110, 110, 120),
    "farm": (170, 150, 70),
    "sky": (150, 200, 240),
}
MOTIONS = ("running", "walking", "flying", "swimming", "driving", "rolling", "swaying", "galloping", "still")


@dataclass(frozen=True)
class Kind:
    name: str
    shape: str
    size: str
    colour: str
    habitat: str
    alive: bool
    sound: str  # a noun phrase: "the sound of {sound}"
    pitch_hz: float  # the base pitch the audio renderer uses
    motion: str
    speed: int  # 0 still .. 3 very fast
    loudness: int  # 1 quiet .. 3 loud
    flies: bool


KINDS: tuple[Kind, ...] = (
    Kind("dog", "sphere", "medium", "brown", "home", True, "barking", 420.0, "running", 2, 2, False),
    Kind("cat", "sphere", "small", "grey", "home", True, "meowing", 700.0, "walking", 1, 1, False),
    Kind("whale", "sphere", "large", "blue", "ocean", True, "singing", 160.0, "swimming", 1, 3, False),
    Kind("bird", "cone", "small", "yellow", "forest", True, "chirping", 2400.0, "flying", 2, 1, True),
    Kind("tree", "cone", "large", "green", "forest", True, "rustling", 900.0, "swaying", 0, 1, False),
    Kind("fish", "cylinder", "small", "orange", "ocean", True, "bubbling", 1200.0, "swimming", 1, 1, False),
    Kind("horse", "cylinder", "medium", "black", "farm", True, "neighing", 520.0, "galloping", 3, 2, False),
    Kind("cow", "cylinder", "large", "white", "farm", True, "mooing", 220.0, "walking", 1, 2, False),
    Kind("boat", "cube", "small", "white", "ocean", False, "foghorn", 110.0, "rolling", 1, 3, False),
    Kind("car", "cube", "medium", "red", "city", False, "engine", 140.0, "driving", 3, 2, False),
    Kind("bus", "cube", "large", "yellow", "city", False, "honking", 330.0, "driving", 2, 3, False),
    Kind("bicycle", "ring", "small", "blue", "city", False, "ringing", 1800.0, "rolling", 2, 1, False),
    Kind("clock", "ring", "medium", "black", "home", False, "ticking", 3000.0, "still", 0, 1, False),
    Kind("drum", "ring", "large", "red", "city", False, "drumming", 90.0, "still", 0, 3, False),
    Kind("bee", "cross", "small", "yellow", "farm", True, "buzzing", 250.0, "flying", 2, 1, True),
    Kind("plane", "cross", "large", "grey", "sky", False, "roaring", 180.0, "flying", 3, 3, True),
)
KINDS_BY_NAME = {kind.name: kind for kind in KINDS}
ATTRIBUTES = ("shape", "size", "colour", "habitat", "alive", "sound", "motion", "speed", "loudness", "flies")


def caption(kind: Kind, modality: str) -> str:
    """What `modality` shows of an entity of `kind`, in words; nothing it cannot show."""
    if modality == "image":
        return f"a {kind.colour} {kind.shape} {HABITAT_PHRASE[kind.habitat]}"
    if modality == "pc":
        return f"a {kind.size} {kind.shape}"
    if modality == "audio":
        return f"the sound of {kind.sound}"
    if modality == "video":
        return f"a {kind.colour} {kind.shape} {kind.motion}"
    raise ValueError(f"unknown modality {modality!r}")


def facts(kind: Kind) -> list[str]:
    """World knowledge about a kind, as plain sentences for the demo LLM's corpus."""
    article = "an" if kind.name[0] in "aeiou" else "a"
    subject = f"{article} {kind.name}"
    return [
        f"{subject} is {kind.colour}.",
        f"{subject} is shaped like a {kind.shape}.",
        f"{subject} is {kind.size}.",
        f"{subject} lives {HABITAT_PHRASE[kind.habitat]}.",
        f"{subject} is {'alive' if kind.alive else 'not alive'}.",
        f"{subject} makes the sound of {kind.sound}.",
        f"{subject} is usually {kind.motion}.",
        f"{subject} {'can fly' if kind.flies else 'cannot fly'}.",
    ]


@dataclass(frozen=True)
class Question:
    """A comparison between two kinds with a ground truth, or None where it does not apply."""

    attribute: str
    text: str
    answer: Callable[[Kind, Kind], int | None]  # 0 = first, 1 = second, None = not applicable


def _exactly_one(pred: Callable[[Kind], bool]) -> Callable[[Kind, Kind], int | None]:
    def answer(first: Kind, second: Kind) -> int | None:
        a, b = pred(first), pred(second)
        return None if a == b else (0 if a else 1)

    return answer


def _more(value: Callable[[Kind], int]) -> Callable[[Kind, Kind], int | None]:
    def answer(first: Kind, second: Kind) -> int | None:
        a, b = value(first), value(second)
        return None if a == b else (0 if a > b else 1)

    return answer


def _habitat_question(habitat: str) -> Question:
    return Question(
        "habitat",
        f"which of the two options is more likely to be found {HABITAT_PHRASE[habitat]}?",
        _exactly_one(lambda k: k.habitat == habitat),
    )


QUESTIONS: tuple[Question, ...] = (
    *(_habitat_question(h) for h in HABITATS),
    Question("alive", "which of the two options is alive?", _exactly_one(lambda k: k.alive)),
    Question("flies", "which of the two options can fly?", _exactly_one(lambda k: k.flies)),
    Question("size", "which of the two options is larger?", _more(lambda k: SIZES.index(k.size))),
    Question("size", "which of the two options is smaller?", _more(lambda k: -SIZES.index(k.size))),
    Question("speed", "which of the two options moves faster?", _more(lambda k: k.speed)),
    Question("loudness", "which of the two options is louder?", _more(lambda k: k.loudness)),
)


def applicable_questions(first: Kind, second: Kind) -> list[tuple[Question, int]]:
    """Every question with a ground truth for this ordered pair, with its label (0 first, 1 second)."""
    out = []
    for question in QUESTIONS:
        label = question.answer(first, second)
        if label is not None:
            out.append((question, label))
    return out


# ------------------------------------------------------------------------------------------ entities
@dataclass(frozen=True)
class Entity:
    """One individual of the world: its kind (whose attributes it has) and the split it belongs to."""

    entity_id: str
    kind: str
    split: str

    @property
    def spec(self) -> Kind:
        return KINDS_BY_NAME[self.kind]

    def attributes(self) -> dict[str, object]:
        return {name: getattr(self.spec, name) for name in ATTRIBUTES}


def split_counts(n: int, fractions: dict[str, float]) -> dict[str, int]:
    """`n` entities split by `fractions` (largest remainder); every split gets one when n allows."""
    names = list(fractions)
    total = sum(fractions.values())
    if total <= 0 or any(f < 0 for f in fractions.values()):
        raise ValueError(f"split fractions must be >= 0 with a positive sum, got {fractions}")
    exact = [n * fractions[s] / total for s in names]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(names)), key=lambda i: exact[i] - counts[i], reverse=True)[: n - sum(counts)]:
        counts[i] += 1
    if n >= len(names):  # evaluation needs every kind in every split with a positive fraction
        for i, name in enumerate(names):
            if counts[i] == 0 and fractions[name] > 0:
                counts[counts.index(max(counts))] -= 1
                counts[i] += 1
    return dict(zip(names, counts))


def sample_entities(seed: int, entities_per_kind: int, splits: dict[str, float]) -> list[Entity]:
    """`entities_per_kind` entities of every kind, each in one split: splits are disjoint by entity."""
    import numpy as np

    counts = split_counts(int(entities_per_kind), dict(splits))
    labels = [name for name, count in counts.items() for _ in range(count)]
    out = []
    for k, kind in enumerate(KINDS):
        order = np.random.default_rng([int(seed), 7, k]).permutation(len(labels))
        for i, j in enumerate(order):
            out.append(Entity(f"{kind.name}-{i:04d}", kind.name, labels[j]))
    return out


def entities_frame(entities: list[Entity]) -> pd.DataFrame:
    """entity_id, kind, split, then one column per attribute (`entities.parquet`)."""
    import pandas as pd

    rows = [{"entity_id": e.entity_id, "kind": e.kind, "split": e.split, **e.attributes()} for e in entities]
    return pd.DataFrame(rows, columns=["entity_id", "kind", "split", *ATTRIBUTES])


def load_entities(cfg: XibConfig) -> pd.DataFrame:
    """`<paths.data>/world/entities.parquet`, written by `xib world`."""
    from pathlib import Path

    import pandas as pd

    from xib.errors import DataError

    path = Path(cfg.paths.data) / "world" / "entities.parquet"
    if not path.is_file():
        raise DataError(str(path), "entities file exists (run `xib world` first)")
    return pd.read_parquet(path)
