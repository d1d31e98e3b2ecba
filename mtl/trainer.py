"""The one training loop: plain PyTorch over accelerate's small surface.

Each step draws a task from ``epoch_schedule`` and a batch from that task's loader; the loss of the
task's head (weighted by the task's ``loss_weight``) is back-propagated through the shared encoder.
Dev metrics are computed every epoch (or every N steps); the checkpoint with the best mean dev metric
is kept and reloaded at the end, and training stops early after ``early_stopping_patience`` evaluations
without improvement.

``Trainer.fit`` reads top to bottom in named steps: ``_start`` (optimizer, loaders, schedule, resumed
state), then per micro-batch of ``_schedule`` a ``_train_step``, ``_evaluate_select_save`` where an
evaluation is due, ``_save_resumable`` where the state is; ``_finish`` reloads the best weights.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import hydra
import torch
from accelerate import Accelerator
from accelerate.utils import (
    DataLoaderConfiguration,
    DistributedDataParallelKwargs,
    GradientAccumulationPlugin,
    broadcast_object_list,
    set_seed,
)
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_scheduler

from mtl.augment import OnTheFly
from mtl.checkpoint import load_checkpoint, save_checkpoint
from mtl.config import TaskConfig, TrainerConfig
from mtl.data import Collator, LengthGroupedBatchSampler
from mtl.dist import accelerator_kwargs, broadcast_weights, check_batches, check_sizes
from mtl.evaluate import TaskMetrics, evaluate_tasks, mean_metric
from mtl.features import add_features, encoder_fingerprint
from mtl.heads import GroupDRO
from mtl.logger import MetricsLogger
from mtl.model import MultitaskModel
from mtl.resume import load_state, restore_rng, save_state, truncate_log
from mtl.sampling import epoch_schedule
from mtl.task import Task

log = logging.getLogger("mtl.trainer")


@dataclass
class FitResult:
    """What ``Trainer.fit`` returns: the best dev metrics, where they were saved, and run statistics."""

    best_dev: TaskMetrics
    best_step: int
    checkpoint: Path
    steps: int
    train_examples: int
    train_seconds: float
    history: list[dict[str, Any]] = field(default_factory=list)
    group_weights: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def examples_per_second(self) -> float:
        return self.train_examples / self.train_seconds if self.train_seconds > 0 else float("nan")


@dataclass
class _LoopState:
    """The training loop's bookkeeping."""

    step: int = 0
    examples: int = 0
    train_seconds: float = 0.0
    tick: float = 0.0
    losses: list[float] = field(default_factory=list)
    best: float = -math.inf
    best_dev: TaskMetrics = field(default_factory=dict)
    best_step: int = 0
    stale: int = 0
    last_eval: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    pos: int = 0  # micro-batches of ``epoch``'s schedule done
    drawn: dict[str, int] = field(default_factory=dict)  # batches drawn per task since the start
    group_q: dict[str, list[float]] = field(default_factory=dict)  # group DRO's weights per task

    def saved(self) -> dict[str, Any]:
        """What ``mtl.resume`` keeps of it (all but the wall-clock tick)."""
        return {k: v for k, v in vars(self).items() if k != "tick"}


@dataclass
class _Run:
    """What one ``fit`` works with: the prepared model, optimizer, scheduler and loaders, its plan
    (optimizer steps, epochs), its log, progress bar and bookkeeping."""

    model: Any
    optimizer: Any
    scheduler: Any
    train: dict[str, DataLoader]
    dev: dict[str, DataLoader]
    num_batches: dict[str, int]
    total: int
    epochs: int
    logger: MetricsLogger = field(init=False)
    bar: Any = field(init=False)
    state: _LoopState = field(init=False)
    iters: dict[str, Iterator[dict[str, torch.Tensor]]] = field(default_factory=dict)
    dro: dict[str, GroupDRO] = field(default_factory=dict)

    def next_batch(self, task: str) -> dict[str, torch.Tensor]:
        """The task's next training batch; a new pass over its loader when one ends."""
        self.state.drawn[task] += 1
        try:
            return next(self.iters[task])
        except (KeyError, StopIteration):
            self.iters[task] = iter(self.train[task])
            return next(self.iters[task])


class Trainer:
    """Trains a ``MultitaskModel`` on several tasks at once.

    Args:
        model: the shared encoder and heads.
        tokenizer: saved with every checkpoint.
        tasks: task name to ``Task`` (metric, loss weight, slicing and transformation functions).
        data: task name to tokenized ``train``/``dev`` (and ``test``) datasets.
        cfg: the trainer config.
        output_dir: where ``checkpoint/``, ``metrics.jsonl`` and TensorBoard logs go.
        max_length: recorded in checkpoints for inference.
        seed: seeds model init, shuffling and the task schedule.
        run_config: the resolved run config, saved with checkpoints.
        passengers: configs of heads in ``model`` that are not trained (old tasks kept from
            ``init_from``): saved with every checkpoint, never trained.
    """

    def __init__(
        self,
        model: MultitaskModel,
        tokenizer: PreTrainedTokenizerBase,
        tasks: Mapping[str, Task],
        data: Mapping[str, datasets.DatasetDict],
        cfg: TrainerConfig,
        output_dir: str | Path,
        *,
        max_length: int,
        seed: int = 42,
        run_config: Mapping[str, Any] | None = None,
        passengers: Mapping[str, TaskConfig] | None = None,
    ) -> None:
        self.accelerator = Accelerator(
            gradient_accumulation_plugin=GradientAccumulationPlugin(
                num_steps=cfg.grad_accum_steps, sync_with_dataloader=False
            ),
            # Each step uses one task's head, so the other heads get no gradient in that step.
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            # batch_size is the global batch: N processes take batch_size / N rows each (mtl.dist)
            dataloader_config=DataLoaderConfiguration(split_batches=True),
            **accelerator_kwargs(),
        )
        n = self.accelerator.num_processes
        check_batches(cfg.batch_size, cfg.eval_batch_size, n)
        check_sizes({t: {s: len(d) for s, d in dsd.items()} for t, dsd in data.items()}, n)
        self.model, self.tokenizer, self.tasks, self.data = model, tokenizer, dict(tasks), data
        self.cfg, self.seed, self.max_length = cfg, seed, max_length
        # one folder for every process (the main process's: launches on several machines start at
        # different times); the main process alone writes there, and only a resumed run reads it back on
        # the other processes, so training needs no filesystem shared between machines (mtl.dist)
        self.output_dir = Path(broadcast_object_list([str(output_dir)])[0]) if n > 1 else Path(output_dir)
        self.checkpoint_dir, self.state_dir = self.output_dir / "checkpoint", self.output_dir / "state"
        self.run_config = dict(run_config or {})
        self.passengers = dict(passengers or {})
        self.collate = Collator(tokenizer)
        unknown = sorted(set(cfg.train_heads or []) - set(self.tasks))
        if unknown:
            raise ValueError(f"trainer.train_heads names tasks not in this run: {unknown}")
        idle = [t for t in self.tasks if cfg.train_heads is not None and t not in cfg.train_heads]
        if cfg.freeze_encoder and idle:
            raise ValueError(
                f"trainer.train_heads with trainer.freeze_encoder leaves nothing to train for tasks {idle}: "
                "drop them from tasks (init_from keeps their heads) or train their heads"
            )

    def _train_data(self, task: str) -> datasets.Dataset | OnTheFly:
        """The task's training split, wrapped to augment as it is read when its augment mode says so."""
        t, ds = self.tasks[task], self.data[task]["train"]
        if not t.augments_on_the_fly or t.policy is None:
            return ds
        aug = t.config.augment
        return OnTheFly(
            ds,
            t.policy,
            self.tokenizer,
            self.max_length,
            copies=aug.copies,
            keep_original=aug.keep_original,
            seed=self.seed,
            sfs=t.sfs,
        )

    def _loader(self, ds: datasets.Dataset | OnTheFly, batch_size: int, shuffle: bool) -> DataLoader:
        if shuffle and self.cfg.group_by_length:
            lengths = ds.lengths if isinstance(ds, OnTheFly) else [len(x) for x in ds["input_ids"]]
            sampler = LengthGroupedBatchSampler(lengths, batch_size, self.seed)
            return DataLoader(
                ds, batch_sampler=sampler, collate_fn=self.collate, num_workers=self.cfg.num_workers
            )
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=self.collate,
            num_workers=self.cfg.num_workers,
            generator=gen,
        )

    def eval_loaders(
        self, split: str, data: Mapping[str, datasets.DatasetDict] | None = None
    ) -> dict[str, DataLoader]:
        """Prepared loaders of one split for every task (of ``data``, default the run's)."""
        return {
            t: self.accelerator.prepare(self._loader(d[split], self.cfg.eval_batch_size, False))
            for t, d in (self.data if data is None else data).items()
        }

    def _with_features(self) -> dict[str, datasets.DatasetDict]:
        """Every split with the frozen encoder's pooled features (``mtl.features``), computed once by
        the main process and cached; not the train split of tasks augmented on the fly."""
        self.model.to(self.accelerator.device)
        key = encoder_fingerprint(self.model)
        out = {}
        # under the run's mixed precision, like the encoder would run in training
        acc = self.accelerator  # main process first, then each other machine's first, then the rest
        with acc.main_process_first(), acc.local_main_process_first(), acc.autocast():
            for task, dsd in self.data.items():
                fly = self.tasks[task].augments_on_the_fly
                out[task] = datasets.DatasetDict(
                    {
                        s: ds
                        if s == "train" and fly
                        else add_features(ds, self.model, self.collate, key, self.cfg.eval_batch_size)
                        for s, ds in dsd.items()
                    }
                )
        return out

    def _optimizer(self) -> torch.optim.Optimizer:
        """The optimizer over the parameters that train: the encoder unless frozen (at ``encoder_lr``
        when set), the heads of ``train_heads`` (all by default), never the passengers'."""
        cfg, model = self.cfg, self.model
        model.freeze_encoder(cfg.freeze_encoder)
        for task, head in model.heads.items():
            trains = task in self.tasks and (cfg.train_heads is None or task in cfg.train_heads)
            head.requires_grad_(trains)
        heads = [p for p in model.heads.parameters() if p.requires_grad]
        groups: list[dict[str, Any]] = [{"params": heads}]
        if not cfg.freeze_encoder:
            enc = list(model.encoder.parameters())
            groups.append({"params": enc} | ({"lr": cfg.encoder_lr} if cfg.encoder_lr is not None else {}))
        optimizer: torch.optim.Optimizer = hydra.utils.instantiate(cfg.optimizer)(groups)
        return optimizer

    def fit(self, resume: bool = False) -> FitResult:
        """Train, evaluating on dev and keeping the best checkpoint; return the best dev metrics.

        With ``resume``, continue from ``<output_dir>/state`` (see ``mtl.resume``): the same batches,
        in the same order, with the same random numbers, as if the run had not been interrupted."""
        run = self._start(resume)
        every, state = self.cfg.eval_every_steps, run.state
        try:  # the bar and the metrics log are closed (flushed) even when training raises
            run.model.train()  # a frozen encoder stays in eval mode (MultitaskModel.train)
            state.tick = time.perf_counter()
            for epoch, task in self._schedule(run):
                if task is None:  # the end of an epoch: evaluated then unless every N steps
                    due = every <= 0 and state.last_eval != state.step
                elif self._train_step(run, task, epoch):
                    due = (every > 0 and state.step % every == 0) or state.step == run.total
                else:
                    continue  # a micro-batch inside an accumulation group
                if due:
                    self._evaluate_select_save(run, epoch)
                if self._finished(run):
                    break
                if self._state_due(run, due, end_of_epoch=task is None):
                    self._save_resumable(run)
        finally:
            run.bar.close()
            run.logger.close()
        return self._finish(run)

    # --------------------------------------------------------------------------- the steps of fit()

    def _start(self, resume: bool) -> _Run:
        """Everything the loop needs, prepared by accelerate; with ``resume``, restored to the saved point."""
        cfg, acc = self.cfg, self.accelerator
        set_seed(self.seed)
        for task, dsd in self.data.items():
            for split in ("train", "dev"):
                if split not in dsd or len(dsd[split]) == 0:
                    raise ValueError(f"task {task!r}: split {split!r} is empty")
        optimizer = self._optimizer()
        if cfg.freeze_encoder and cfg.feature_cache:
            self.data = self._with_features()
        train = {t: self._loader(self._train_data(t), cfg.batch_size, True) for t in self.data}
        prepared = acc.prepare(self.model, optimizer, *train.values())
        model, optimizer, train = prepared[0], prepared[1], dict(zip(train, prepared[2:], strict=True))
        dev = self.eval_loaders("dev")
        num_batches = {t: len(loader) for t, loader in train.items()}
        total, epochs = self._plan(sum(num_batches.values()))
        # Stepped by hand on each optimizer step (not prepared), so its length is in optimizer steps
        # whatever the number of processes.
        scheduler = get_scheduler(
            cfg.scheduler, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total), num_training_steps=total
        )
        run = _Run(model, optimizer, scheduler, train, dev, num_batches, total, epochs)
        run.logger = MetricsLogger(self.output_dir, acc.is_main_process)
        run.state = _LoopState(drawn={t: 0 for t in train})
        run.dro = self._group_dro()
        if resume:
            loop = load_state(self.state_dir, acc, model, optimizer, scheduler, self.run_config)
            drawn = loop.pop("drawn")
            for task, n in drawn.items():  # replay the data order (no model compute) to the saved point
                for _ in range(n):
                    run.next_batch(task)
            run.state = _LoopState(**loop, drawn=drawn)
            for task, q in run.state.group_q.items():
                run.dro[task].q = torch.tensor(q)
            restore_rng(self.state_dir, acc)
            log.info(
                "resumed from %s: step %d of %d (epoch %d), best mean dev so far %.4f at step %d",
                self.state_dir,
                run.state.step,
                total,
                run.state.epoch + 1,
                run.state.best,
                run.state.best_step,
            )
            if acc.is_main_process:
                truncate_log(self.output_dir / "metrics.jsonl", run.state.step)
        run.bar = tqdm(
            total=total,
            initial=run.state.step,
            desc="train",
            disable=not acc.is_local_main_process,
            dynamic_ncols=True,
        )
        return run

    def _plan(self, per_epoch: int) -> tuple[int, int]:
        """Optimizer steps and epochs of the run, from the micro-batches in one epoch. With
        accumulation, a partial group carries over into the next epoch."""
        cfg = self.cfg
        epochs = cfg.epochs
        total = per_epoch * epochs // cfg.grad_accum_steps
        if cfg.min_steps > total:  # small data: more epochs, stopping at min_steps
            total, epochs = cfg.min_steps, math.ceil(cfg.min_steps * cfg.grad_accum_steps / per_epoch)
        if cfg.max_steps >= 0:
            total = min(total, cfg.max_steps)
        return total, epochs

    def _schedule(self, run: _Run) -> Iterator[tuple[int, str | None]]:
        """``(epoch, task)`` of every micro-batch from the loop's position on (each epoch's task order
        from ``epoch_schedule``), and ``(epoch, None)`` at the end of each epoch."""
        state = run.state
        start_epoch, start_pos = state.epoch, state.pos
        for epoch in range(start_epoch, run.epochs):
            schedule = epoch_schedule(
                run.num_batches, self.cfg.sampling, self.seed, epoch, self.cfg.temperature
            )
            state.epoch, state.pos = epoch, start_pos if epoch == start_epoch else 0
            for task in schedule[state.pos :]:
                yield epoch, task
            yield epoch, None

    def _train_step(self, run: _Run, task: str, epoch: int) -> bool:
        """One micro-batch of ``task``: forward, backward and, at the end of an accumulation group, the
        optimizer step (logged every ``log_every_steps``). True when an optimizer step was taken."""
        cfg, acc, state = self.cfg, self.accelerator, run.state
        batch = run.next_batch(task)
        state.pos += 1
        with acc.accumulate(run.model):
            dro = run.dro.get(task)
            reduce = (lambda t: acc.reduce(t, "sum")) if dro and acc.num_processes > 1 else None
            loss = run.model(batch, task, loss=True, weigh=dro, reduce=reduce)
            if dro:
                state.group_q[task] = dro.q.tolist()
            acc.backward(loss * self.tasks[task].config.loss_weight)
            if state.step < cfg.freeze_encoder_steps:
                # grads dropped rather than requires_grad toggled: DDP fixes its set at wrap time
                for p in self.model.encoder.parameters():
                    p.grad = None
            if acc.sync_gradients and cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(run.model.parameters(), cfg.max_grad_norm)
            run.optimizer.step()
            run.optimizer.zero_grad()
        state.examples += batch["input_ids"].shape[0] * acc.num_processes
        state.losses.append(float(loss.detach()))
        if not acc.sync_gradients:
            return False
        run.scheduler.step()
        state.step += 1
        run.bar.update(1)
        if state.step % cfg.log_every_steps == 0 or state.step == run.total:
            elapsed = state.train_seconds + time.perf_counter() - state.tick
            # the mean over processes: each saw its share of the global batches
            mean_loss = acc.reduce(torch.tensor(sum(state.losses) / len(state.losses)), "mean")
            rec = {
                "type": "train",
                "step": state.step,
                "epoch": epoch,
                "loss": float(mean_loss),
                "lr": run.scheduler.get_last_lr()[0],
                "examples_per_s": state.examples / max(elapsed, 1e-9),
            }
            run.bar.set_postfix(loss=f"{rec['loss']:.4f}", ex_s=f"{rec['examples_per_s']:.1f}")
            run.logger.log(rec, state.step, "train/")
            state.losses = []
        return True

    def _evaluate_select_save(self, run: _Run, epoch: int) -> None:
        """Dev metrics now; save the checkpoint if they are the best so far; count evaluations without
        improvement (early stopping). Evaluation time is not training time."""
        state = run.state
        state.train_seconds += time.perf_counter() - state.tick
        metrics = evaluate_tasks(run.model, run.dev, self.tasks, self.accelerator)
        score = mean_metric(metrics)
        rec = {
            "type": "eval",
            "split": "dev",
            "step": state.step,
            "epoch": epoch,
            "mean": score,
            "tasks": metrics,
        }
        run.logger.log(rec, state.step, "dev/")
        state.history.append(rec)
        state.last_eval = state.step
        if self.accelerator.is_main_process:
            run.bar.write(
                f"step {state.step} dev mean {score:.4f}  "
                + "  ".join(f"{t}={m['metric']:.4f}" for t, m in metrics.items())
            )
        if score > state.best or not state.best_dev:  # the first evaluation is kept even if NaN
            state.best, state.best_dev, state.best_step, state.stale = score, metrics, state.step, 0
            self._save(self.checkpoint_dir, {"step": state.step, "dev": metrics, "dev_mean": score})
        else:
            state.stale += 1
        state.tick = time.perf_counter()

    def _finished(self, run: _Run) -> bool:
        patience = self.cfg.early_stopping_patience
        return run.state.step >= run.total or (patience > 0 and run.state.stale >= patience)

    def _state_due(self, run: _Run, evaluated: bool, end_of_epoch: bool) -> bool:
        """Whether to write the resumable state now (``save_state_every_steps``: 0 after each evaluation,
        N > 0 also every N optimizer steps, -1 never)."""
        every = self.cfg.save_state_every_steps
        by_steps = not end_of_epoch and every > 0 and run.state.step % every == 0
        return (evaluated and every >= 0) or by_steps

    def _save_resumable(self, run: _Run) -> None:
        state = run.state
        state.train_seconds += time.perf_counter() - state.tick
        save_state(
            self.state_dir,
            self.accelerator,
            run.model,
            run.optimizer,
            run.scheduler,
            state.saved(),
            self.run_config,
        )
        state.tick = time.perf_counter()  # the save's time is not training time

    def _finish(self, run: _Run) -> FitResult:
        """Continue from the best weights (test metrics and later use see the selected model); a
        finished run leaves nothing to resume."""
        acc = self.accelerator
        acc.wait_for_everyone()
        model = acc.unwrap_model(run.model)
        if acc.is_main_process:  # the one process that wrote it: another machine may not see the file
            best_model, _, _, _ = load_checkpoint(self.checkpoint_dir)
            model.load_state_dict(best_model.state_dict())
            shutil.rmtree(self.state_dir, ignore_errors=True)
        broadcast_weights(model)
        s = run.state
        weights = {
            t: dict(zip(["(no slice)", *self.tasks[t].slice_names][: len(q)], q, strict=True))
            for t, q in s.group_q.items()
        }
        return FitResult(
            s.best_dev,
            s.best_step,
            self.checkpoint_dir,
            s.step,
            s.examples,
            s.train_seconds,
            s.history,
            weights,
        )

    def _group_dro(self) -> dict[str, GroupDRO]:
        """Group DRO's state per trained task (``trainer.group_dro``; none when off): groups are the
        rows in no slice and each slice, sized by the training split."""
        cfg = self.cfg.group_dro
        if cfg.step_size <= 0:
            return {}
        out = {}
        for task, dsd in self.data.items():
            train = dsd["train"]
            if "slices" in train.column_names and len(train) and len(train[0]["slices"]):
                member = GroupDRO.groups(torch.tensor(train["slices"]), len(train))
                sizes = [int(n) for n in member.sum(0)]
            else:
                sizes = [len(train)]
            out[task] = GroupDRO(sizes, cfg.step_size, cfg.adjustment)
        return out

    def _save(self, path: Path, metrics: Mapping[str, Any]) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            save_checkpoint(
                path,
                acc.unwrap_model(self.model),
                self.tokenizer,
                {**self.passengers, **{t: task.config for t, task in self.tasks.items()}},
                max_length=self.max_length,
                config=self.run_config,
                metrics=metrics,
            )
        acc.wait_for_everyone()

    def evaluate(
        self,
        split: str,
        data: Mapping[str, datasets.DatasetDict] | None = None,
        tasks: Mapping[str, Task] | None = None,
    ) -> TaskMetrics:
        """Metrics per task on ``split`` with the current weights (of ``data``/``tasks``: default the
        run's; e.g. the passengers' to see how old tasks fare)."""
        self.model.to(self.accelerator.device)  # a no-op once fit() has prepared it
        loaders = self.eval_loaders(split, data)
        return evaluate_tasks(self.model, loaders, self.tasks if tasks is None else tasks, self.accelerator)
