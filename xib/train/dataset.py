"""Instruction data joined with cached features, and the task mixture the trainer samples from.

Batches are a pure function of (seed, step, rank, micro-step): a resumed run sees exactly the data
an uninterrupted run would have seen, with no sampler state to checkpoint.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

from xib.data.instructions import instruct_path as instruct_path  # the one reader, shared with eval
from xib.data.instructions import read_instructions as read_instructions
from xib.errors import DataError
from xib.train.config import MIXES


def task_weights(sizes: dict[str, int], mix: str) -> dict[str, float]:
    """Sampling probability per task: sqrt(size) (the paper), proportional to size, or uniform."""
    if mix not in MIXES:
        raise ValueError(f"train.mix={mix!r}: must be one of {', '.join(MIXES)}")
    raw = {
        task: (math.sqrt(n) if mix == "sqrt" else float(n) if mix == "proportional" else 1.0)
        for task, n in sizes.items()
        if n > 0
    }
    total = sum(raw.values())
    return {task: value / total for task, value in sorted(raw.items())}


class InstructionDataset:
    """Records of one modality and split whose item has cached features."""

    def __init__(self, records: list[dict[str, Any]], store: Any, source: str = "") -> None:
        missing = [r["item_id"] for r in records if r["item_id"] not in store]
        if missing:
            raise DataError(
                source or str(store.path),
                "every item_id must have cached features (rerun `xib features`)",
                row=missing[0],
                detail=f"{len(missing)} of {len(records)} records lack features",
            )
        self.records, self.store = records, store
        by_task: dict[str, list[int]] = defaultdict(list)
        for i, record in enumerate(records):
            by_task[record["task"]].append(i)
        self.by_task = dict(sorted(by_task.items()))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict[str, Any]:
        record = self.records[i]
        features, mask = self.store.get(record["item_id"])
        return {**record, "features": features, "mask": mask}


class MixtureSampler:
    """Indices for (step, micro) on this rank: a task drawn by its mixture weight, then an item in it."""

    def __init__(self, dataset: InstructionDataset, mix: str, seed: int, rank: int, world_size: int) -> None:
        self.weights = task_weights({t: len(ix) for t, ix in dataset.by_task.items()}, mix)
        self.tasks = list(self.weights)
        self.probs = np.array([self.weights[t] for t in self.tasks])
        # arrays once: `rng.choice` on a list converts the whole list at every draw (the same draw, slower)
        self.by_task = {task: np.asarray(ix, dtype=np.int64) for task, ix in dataset.by_task.items()}
        self.seed, self.rank, self.world_size = int(seed), int(rank), int(world_size)

    def indices(self, step: int, micro: int, batch_size: int) -> list[int]:
        rng = np.random.default_rng([self.seed, step, micro, self.rank, self.world_size])
        tasks = rng.choice(len(self.tasks), size=batch_size, p=self.probs)
        return [int(rng.choice(self.by_task[self.tasks[t]])) for t in tasks]


def eval_indices(n: int, batches: int, batch_size: int, rank: int, world_size: int) -> list[list[int]]:
    """A fixed slice of the validation set per rank (the same at every evaluation)."""
    order = list(range(n))
    out = []
    for b in range(batches):
        start = (b * world_size + rank) * batch_size
        chunk = [order[(start + j) % n] for j in range(batch_size)] if n else []
        out.append(chunk)
    return out
