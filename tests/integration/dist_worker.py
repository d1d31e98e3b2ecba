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

final: dict[str, torch.Tensor] = {}
_finish = mtl.trainer.Trainer._finish


def _record_finish(self: mtl.trainer.Trainer, run: object) -> object:
    # every process, before the main one reloads the best checkpoint and sends it to the others
    final.update({k: v.detach().clone() for k, v in self.model.state_dict().items()})
    return _finish(self, run)  # type: ignore[arg-type]


mtl.trainer.Trainer._finish = _record_finish  # type: ignore[method-assign,assignment]

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
