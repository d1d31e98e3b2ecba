"""One rank of the multi-process test (``test_distributed.py``): runs ``mtl-train``'s ``train`` on the
overrides in argv and writes, per rank, the world size, the metrics and the parameters as they were at
the end of training (before the best checkpoint is reloaded) to ``<output_dir>/rank<r>.pt``."""

from __future__ import annotations

import sys

import torch
from hydra import compose, initialize_config_dir

import mtl.trainer
from mtl.cli.train import train
from mtl.config import CONF_DIR
from mtl.dist import release, state

models: list[torch.nn.Module] = []
final: dict[str, torch.Tensor] = {}
_init, _load = mtl.trainer.Trainer.__init__, mtl.trainer.load_checkpoint


def _record_init(self: mtl.trainer.Trainer, *args: object, **kwargs: object) -> None:
    _init(self, *args, **kwargs)  # type: ignore[arg-type]
    models.append(self.model)


def _record_load(path: object) -> object:
    final.update({k: v.detach().clone() for k, v in models[-1].state_dict().items()})
    return _load(path)  # type: ignore[arg-type]


mtl.trainer.Trainer.__init__ = _record_init  # type: ignore[method-assign]
mtl.trainer.load_checkpoint = _record_load  # type: ignore[assignment]

if __name__ == "__main__":
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("train", overrides=sys.argv[1:])
    s = state()
    report = train(cfg, echo=False)
    torch.save(
        {"world_size": s.num_processes, "rank": s.process_index, "metrics": report["metrics"]}
        | {"params": final},
        f"{cfg.output_dir}/rank{s.process_index}.pt",
    )
    release()
