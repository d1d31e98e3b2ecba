"""``mtl-slices``: find where a checkpoint fails on each task's dev split (``mtl.slice_discovery``), write
the discovered slices as keyword SFs (``<task>_slices.py``) and a report that also says how many of the
task's hand-written slices were rediscovered."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig

from mtl.checkpoint import load_checkpoint
from mtl.cli import run_tasks, user_errors
from mtl.cli.evaluate import check_heads, checkpoint_task_options
from mtl.cli.sweep import per_job_output
from mtl.config import CONF_DIR, TaskConfig
from mtl.prepare import load_task_splits
from mtl.slice_discovery import Discovery, discover, markdown_report, sf_source, summary_table
from mtl.task import resolve_tasks


@dataclass
class SlicesConfig:
    """Root config of ``mtl-slices`` (ranges: the ``range`` metadata that ``check_config`` reads).

    Attributes:
        checkpoint: the trained model (a run's ``checkpoint/``).
        tasks: the tasks to look at (default: the checkpoint's own, with the data they were trained on).
        k: k-means clusters of the dev rows (null: about one per 40 rows, between 2 and 30).
        min_size: the fewest dev rows of a discovered slice, and of a hand slice counted as critical.
        n_words: distinctive words per keyword SF.
        examples: example rows shown per slice.
        jaccard: the overlap (Jaccard index) at which a hand slice counts as rediscovered.
        seed: the split seed (as in training) and the k-means seed.
    """

    checkpoint: str = MISSING
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    k: int | None = field(default=None, metadata={"range": "[2, )"})
    min_size: int = field(default=20, metadata={"range": "[1, )"})
    n_words: int = field(default=3, metadata={"range": "[1, )"})
    examples: int = field(default=5, metadata={"range": "[0, )"})
    jaccard: float = field(default=0.3, metadata={"range": "(0, 1]"})
    seed: int = 42
    data_root: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING


ConfigStore.instance().store(name="slices_schema", node=SlicesConfig)


def main() -> None:
    """``mtl-slices``' entry point: the checkpoint's own tasks become ``tasks=`` options, then Hydra runs."""
    checkpoint_task_options(sys.argv[1:])
    slices()


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="slices")
@user_errors
def slices(cfg: DictConfig) -> int:
    """Discover slices of ``cfg.checkpoint`` on each task's dev split; write ``<task>_slices.py``,
    ``report.md`` and ``report.json`` in ``cfg.output_dir``; return the hand slices rediscovered."""
    per_job_output(cfg)
    model, _, saved, _ = load_checkpoint(cfg.checkpoint)
    tasks = run_tasks(cfg) if cfg.tasks else resolve_tasks(saved)
    check_heads(cfg.checkpoint, tasks, saved)
    if torch.cuda.is_available():
        model = model.to("cuda")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    found: dict[str, Discovery] = {}
    for name, task in tasks.items():
        dev = load_task_splits(task, cfg.cache_dir, cfg.seed)["dev"]
        found[name] = d = discover(
            model,
            task,
            dev,
            k=cfg.k,
            min_size=cfg.min_size,
            n_words=cfg.n_words,
            examples=cfg.examples,
            jaccard=cfg.jaccard,
            seed=cfg.seed,
        )
        (out / f"{name}_slices.py").write_text(sf_source(d, f"Checkpoint: {cfg.checkpoint}"))
    report = write_slices_report(out, found, str(Path(cfg.checkpoint).resolve()))
    print(f"\n{report}\nSFs: {out.resolve()}/<task>_slices.py\nreport: {out.resolve() / 'report.md'}")
    return sum(d.rediscovered for d in found.values())


def write_slices_report(folder: Path, found: dict[str, Discovery], checkpoint: str) -> str:
    """Write ``report.md`` and ``report.json`` into ``folder``; return the Markdown."""
    sections = [markdown_report(d) for d in found.values()]
    md = "\n".join(["# mtl-slices report", "", f"checkpoint: {checkpoint}", "", summary_table(found), ""])
    md += "\n" + "\n".join(sections)
    (folder / "report.md").write_text(md)
    data = {"checkpoint": checkpoint, "tasks": {name: d.to_dict() for name, d in found.items()}}
    (folder / "report.json").write_text(json.dumps(data, indent=2) + "\n")
    return md


if __name__ == "__main__":
    main()
