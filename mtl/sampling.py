"""Task mixing: which task each training step draws a batch from.

The order of an epoch depends only on ``(seed, epoch)``, so every process of a distributed run draws the
same task at the same step (each process then takes its own shard of that task's batch).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mtl.config import Sampling, parse_choice


def task_weights(num_batches: Mapping[str, int], strategy: str, temperature: float = 1.0) -> dict[str, float]:
    """Sampling probability per task: ``proportional`` to its batches, ``temperature``-flattened
    (``n ** (1/T)``), or ``uniform``."""
    parse_choice(Sampling, strategy, "trainer.sampling")
    if strategy == "temperature" and temperature <= 0:
        raise ValueError(f"trainer.temperature must be > 0, got {temperature}")
    n = np.array([max(0, v) for v in num_batches.values()], dtype=float)
    if strategy == "uniform":
        w = (n > 0).astype(float)
    else:
        w = n ** (1.0 / (temperature if strategy == "temperature" else 1.0))
    if w.sum() == 0:
        raise ValueError("no task has any training batch")
    return dict(zip(num_batches, (w / w.sum()).tolist(), strict=True))


def epoch_schedule(
    num_batches: Mapping[str, int], strategy: str, seed: int, epoch: int, temperature: float = 1.0
) -> list[str]:
    """The task of every step of one epoch. An epoch has as many steps as all tasks have batches.

    ``proportional`` visits every batch of every task exactly once, in a shuffled order; ``temperature``
    draws tasks i.i.d. by the flattened weights; ``uniform`` is round-robin over tasks (starting from a
    seeded task order), so small tasks are revisited and large ones are not exhausted.

    Example:
        >>> epoch_schedule({"a": 2, "b": 1}, "proportional", seed=0, epoch=0)
        ['b', 'a', 'a']
        >>> epoch_schedule({"a": 2, "b": 1}, "uniform", seed=0, epoch=0)
        ['a', 'b', 'a']
    """
    weights = task_weights(num_batches, strategy, temperature)
    tasks = list(num_batches)
    total = int(sum(num_batches.values()))
    rng = np.random.default_rng([seed, epoch])
    if strategy == "proportional":
        order = [t for t in tasks for _ in range(num_batches[t])]
        return [order[i] for i in rng.permutation(len(order))]
    if strategy == "temperature":
        p = np.array([weights[t] for t in tasks])
        return [tasks[i] for i in rng.choice(len(tasks), size=total, p=p)]
    active = [tasks[i] for i in rng.permutation(len(tasks)) if num_batches[tasks[i]] > 0]
    return [active[i % len(active)] for i in range(total)]
