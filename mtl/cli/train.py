"""``mtl-train``: compose -> build -> fit -> evaluate on test -> report; returns the best mean dev metric.

With ``gold.mode`` (``mtl.config.GoldConfig``) the dev split's gold labels are trained on too,
cross-fitted: ``gold_stages`` turns the config into the run(s) that does; with ``self_train.rounds``
(``mtl.config.SelfTrainConfig``) the run is repeated on its model's own confident labels
(``self_train_rounds``)."""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
import hydra
import numpy as np
import torch
from accelerate.utils import broadcast_object_list, set_seed
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from mtl.checkpoint import load_checkpoint
from mtl.cli import resolved, run_tasks, user_errors
from mtl.cli.sweep import per_job_output
from mtl.config import (
    CONF_DIR,
    EncoderConfig,
    GoldConfig,
    GoldMode,
    JttConfig,
    SelfTrainConfig,
    TaskConfig,
    TrainerConfig,
    check_config,
)
from mtl.dist import ranks_not_sharing, release, state
from mtl.evaluate import TaskMetrics, mean_metric, write_report
from mtl.prepare import load_task_splits, load_tasks
from mtl.resume import RUN_CONFIG, resume_config
from mtl.starting_model import starting_model
from mtl.task import Task
from mtl.trainer import Trainer
from mtl.types import MtlError
from mtl.userload import resolve_path
from mtl.weak.pipeline import load_label_probs, weak_label

log = logging.getLogger("mtl.train")


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="train")
@user_errors
def main(cfg: DictConfig) -> float:
    sweep = per_job_output(cfg)  # a sweep job (-m) writes to its own folder
    out = Path(cfg.output_dir)
    if sweep and cfg.resume and (out / "report.json").exists():  # a resumed sweep: this job finished
        log.info("resume=true: %s finished before; its metric is reused", out)
        return float(json.loads((out / "report.json").read_text())["mean"]["dev"])
    if sweep and cfg.resume and not (out / RUN_CONFIG).exists():  # a resumed sweep: never started
        log.info("resume=true: %s never started; it starts now", out)
        with open_dict(cfg):
            cfg.resume = False
    if cfg.resume:  # the interrupted run's own config; overrides that change it are refused
        check_shared_output(cfg)  # every process reads it: refused where one cannot (another machine)
        overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
        cfg = resume_config(cfg, list(overrides), log)
    try:
        dev = float(train(cfg)["mean"]["dev"])
    except BaseException:
        release(barrier=False)
        raise
    release()  # a multi-process run tears its process group down before exit
    return dev


def train(cfg: DictConfig, echo: bool = True) -> dict[str, Any]:
    """One run of a composed ``train`` config: returns what ``report.json`` holds (``mtl-bench`` calls
    this in-process for each cell, with ``echo=False``: no table printed). With ``gold.mode=finetune``
    the run is two trainings (``gold_stages``), with ``self_train.rounds`` the run is repeated on its
    model's own confident labels of the weak tasks' train rows (``self_train_rounds``); the report shows
    each."""
    check_config(cfg)
    if state().num_processes > 1:  # the main process's folder: launches on several machines start at
        with open_dict(cfg):  # different times, so their default output_dir (a time stamp) differs
            cfg.output_dir = broadcast_object_list([str(cfg.output_dir)])[0]
    check_shared_output(cfg)
    if cfg.resume and (Path(cfg.output_dir) / "report.json").exists():
        raise MtlError(
            f"resume=true: nothing to resume in {cfg.output_dir}: the run finished (report.json). Pass "
            "output_dir=<the interrupted run's folder>"
        )
    if state().is_main_process:  # what resume=true output_dir=<this run> continues with
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(cfg.output_dir) / RUN_CONFIG).write_text(json.dumps(resolved(cfg), indent=1))
    if cfg.jtt.upweight > 0:
        return just_train_twice(cfg, echo)
    return self_train_rounds(cfg, echo)


def check_shared_output(cfg: DictConfig) -> None:
    """What reads back files that the main process wrote in ``output_dir`` on every process (resuming;
    a run of several trainings: ``gold.mode=finetune``, ``self_train.rounds``, ``jtt.upweight``) needs
    ``output_dir`` on a filesystem that all machines of a launch share: refused with an error on every
    process otherwise (rather than one machine failing and the others waiting for it). A plain training
    needs none. Every process must call this."""
    needs = {
        "resume=true": cfg.resume,
        "gold.mode=finetune": cfg.gold.mode == GoldMode.finetune,
        "self_train.rounds": cfg.self_train.rounds > 0,
        "jtt.upweight": cfg.jtt.upweight > 0,
    }
    uses = [key for key, on in needs.items() if on]
    if not uses or state().num_processes == 1:
        return
    apart = ranks_not_sharing(cfg.output_dir)
    if apart:
        raise MtlError(
            f"{', '.join(uses)} on several machines: every process reads back what the main process writes "
            f"in output_dir, but process(es) {apart} do not see {cfg.output_dir} of the main process; put "
            "output_dir on a filesystem that every machine shares, at the same path (or train on one machine)"
        )


def just_train_twice(cfg: DictConfig, echo: bool) -> dict[str, Any]:
    """``jtt.upweight`` > 0 (``mtl.config.JttConfig``): the identification run (plain ERM, ``jtt.steps``
    steps) in ``<output_dir>/jtt_identify`` (reused when finished), then the run itself on every task's
    training targets with the rows that run got wrong counted ``jtt.upweight`` times."""
    jtt: JttConfig = OmegaConf.to_object(cfg.jtt)  # type: ignore[assignment]
    if cfg.gold.mode != GoldMode.none or cfg.self_train.rounds:
        raise MtlError("jtt.upweight cannot be combined with gold.mode or self_train.rounds (yet)")
    folded = [str(t) for t, c in cfg.tasks.items() if c.split.dev_folds]
    if folded:
        raise MtlError(f"jtt.upweight: tasks {folded} are cross-fitted (split.dev_folds); JTT is not, yet")
    first = copy.deepcopy(cfg)
    with open_dict(first):
        first.output_dir = str(Path(cfg.output_dir) / "jtt_identify")
        first.jtt.upweight = 0.0
        if jtt.steps:
            first.trainer.max_steps, first.trainer.early_stopping_patience = jtt.steps, 0
    folder = Path(first.output_dir)
    if _finished(folder):
        log.info("jtt: the identification run %s finished before; reusing it", folder)
        identified = json.loads((folder / "report.json").read_text())
    else:
        log.info("jtt: identification run (plain training) in %s", folder)
        identified = train_once(first, echo=False)
    errors = error_set_targets(first, folder, jtt.upweight)
    second = copy.deepcopy(cfg)
    with open_dict(second):
        for t, (path, _) in errors.items():
            second.tasks[t].labels = str(path)
    summary = {
        "output_dir": str(folder),
        "mean": identified["mean"],
        "upweight": jtt.upweight,
        "error_set": {t: share for t, (_, share) in errors.items()},
    }
    log.info("jtt: error sets (share of training rows) %s; training again", summary["error_set"])
    return train_once(second, echo, jtt=summary)


def error_set_targets(cfg: DictConfig, run: Path, upweight: float) -> dict[str, tuple[Path, float]]:
    """JTT's second-run targets: every task's training targets (gold labels one-hot, weak labels'
    probabilities, or a labels file), with the rows that the model of ``run`` predicts wrong (argmax
    against argmax) multiplied by ``upweight``; saved as ``<run>/jtt_targets/<task>.npy``. Returns each
    file and the share of labelled training rows in the error set."""
    proc = state()
    out: dict[str, tuple[Path, float]] = {}
    with proc.main_process_first():  # the main process predicts and writes; the others read
        model = load_checkpoint(run / "checkpoint")[0].to(proc.device) if proc.is_main_process else None
        for name, task in run_tasks(cfg).items():
            path = run / "jtt_targets" / f"{name}.npy"
            if model is None:
                out[name] = (path, math.nan)
                continue
            dsd = load_task_splits(task, cfg.cache_dir, cfg.seed)
            targets = training_targets(task, dsd, cfg.cache_dir)
            p = model.predict(dsd["train"]["text"], [name])[name].numpy()
            labelled = targets.sum(1) > 0
            wrong = labelled & (p.argmax(1) != targets.argmax(1))
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, (targets * np.where(wrong, upweight, 1.0)[:, None]).astype(np.float32))
            out[name] = (path, float(wrong.sum() / max(labelled.sum(), 1)))
    return out


def training_targets(task: Task, dsd: datasets.DatasetDict, cache_dir: str) -> np.ndarray:
    """A task's training targets aligned with its train split (rows x classes): one-hot gold labels,
    the weak labels' probabilities, or the saved labels file."""
    n, k = len(dsd["train"]), task.num_classes
    if task.config.labels == "gold":
        return np.eye(k, dtype=np.float32)[np.asarray(dsd["train"]["label"])]
    if task.config.labels == "weak":
        return weak_label(task, dsd, cache_dir).train_probs.copy()
    return load_label_probs(task.name, resolve_path(task.config.labels), n, k)


def self_train_rounds(cfg: DictConfig, echo: bool) -> dict[str, Any]:
    """The run (``train_round``) and, with ``self_train.rounds`` R, R more: round r + 1 trains on round
    r's confident predictions of the weak tasks' train rows (``relabel``). With ``gold.mode=finetune`` a
    round is both stages, so the teacher is the gold-fine-tuned model. Round r < R runs in
    ``<output_dir>/round<r>`` (a finished one is reused), the last in ``output_dir``."""
    st: SelfTrainConfig = OmegaConf.to_object(cfg.self_train)  # type: ignore[assignment]
    weak = [str(t) for t, c in cfg.tasks.items() if c.labels != "gold"]
    if st.rounds and not weak:
        raise MtlError("self_train.rounds: no task of the run has weak labels (labels: weak or a .npy file)")
    out = Path(cfg.output_dir)
    history: list[dict[str, Any]] = []
    run = cfg
    for r in range(st.rounds + 1):
        last = r == st.rounds
        run = copy.deepcopy(run)
        with open_dict(run):
            run.output_dir = str(out if last else out / f"round{r}")
        folder = Path(run.output_dir)
        if not last and _finished(folder):
            log.info("%s finished before; reusing it", folder)
            report = json.loads((folder / "report.json").read_text())
        else:
            if st.rounds:
                log.info("self_train: round %d of %d, in %s", r, st.rounds, run.output_dir)
            report = train_round(run, echo and last, history)
        if last:
            return report
        kept = relabel(gold_stages(run)[0], weak, folder, st)
        history.append({"round": r, "mean": report["mean"], "kept": {t: k for t, (_, k) in kept.items()}})
        log.info(
            "self_train: round %d: mean dev %.4f, test %.4f", r, report["mean"]["dev"], report["mean"]["test"]
        )
        with open_dict(run):
            for t, (path, _) in kept.items():
                run.tasks[t].labels = str(path)
    raise AssertionError("unreachable")


def train_round(cfg: DictConfig, echo: bool, history: list[dict[str, Any]]) -> dict[str, Any]:
    """One training, or with ``gold.mode=finetune`` its two (``gold_stages``): the weak-label stage in
    ``<output_dir>/weak_stage`` (reused when it finished before), then the gold rows from its model.
    ``history``: self-training's earlier rounds, shown in the report."""
    weak, *final = gold_stages(cfg)
    if not final:
        return train_once(weak, echo, self_training=history)
    folder = Path(weak.output_dir)
    if _finished(folder):
        log.info("gold.mode=finetune: the weak-label stage %s finished before; reusing it", folder)
        first = json.loads((folder / "report.json").read_text())
    else:
        log.info("gold.mode=finetune: stage 1 of 2, weak labels, in %s", folder)
        first = train_once(weak, echo=False)
    log.info("gold.mode=finetune: stage 2 of 2, the training folds' gold rows, from %s", final[0].init_from)
    return train_once(final[0], echo, weak_stage=first, self_training=history)


def _finished(run: Path) -> bool:
    return (run / "report.json").exists() and (run / "checkpoint").is_dir()


def relabel(
    cfg: DictConfig, tasks: list[str], run: Path, st: SelfTrainConfig
) -> dict[str, tuple[Path, float]]:
    """The trained model of ``run`` relabels every train row of ``tasks``: a row predicted with at least
    ``st.min_confidence`` gets that class (one-hot; ``st.soft``: the predicted probabilities), the others
    zeros (left out of training). Saved as ``<run>/pseudo_labels/<task>.npy`` (aligned with the train
    split); returns each file and the share of rows kept. Where the train split has labels (gold, in
    benchmark data), the log gives the kept rows' agreement with them."""
    proc = state()
    configs = run_tasks(cfg)
    out: dict[str, tuple[Path, float]] = {}
    with proc.main_process_first():  # the main process predicts and writes; the others read
        model = load_checkpoint(run / "checkpoint")[0].to(proc.device) if proc.is_main_process else None
        for name in tasks:
            path = run / "pseudo_labels" / f"{name}.npy"
            if model is None:
                labels = np.load(path)
                out[name] = (path, float(labels.any(1).mean()))
                continue
            train_split = load_task_splits(configs[name], cfg.cache_dir, cfg.seed)["train"]
            p = model.predict(train_split["text"], [name])[name].numpy()
            keep = p.max(1) >= st.min_confidence
            labels = np.zeros_like(p)
            if st.soft:
                labels[keep] = p[keep]
            else:
                labels[np.flatnonzero(keep), p[keep].argmax(1)] = 1.0
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, labels)
            out[name] = (path, float(keep.mean()))
            gold = np.asarray(train_split["label"])
            known = keep & (gold >= 0)
            agree = (p[known].argmax(1) == gold[known]).mean() if known.any() else None
            said = "" if agree is None else f", {100 * agree:.1f}% agree with the train split's labels"
            kept = f"{100 * keep.mean():.1f}% of {len(p)} train rows kept"
            log.info("self_train: task %s: %s%s", name, kept, said)
    return out


def gold_stages(cfg: DictConfig) -> list[DictConfig]:
    """The run(s) of a config whose ``gold.mode`` is not ``none`` (``mtl.config.GoldConfig``): the dev
    split of every task with weak labels cross-fitted into ``gold.folds`` (``split.dev_folds``); ``mix``:
    one run, the gold rows at ``weak.gold_weight``; ``finetune``: the weak-label run (in
    ``<output_dir>/weak_stage``), then a run from its checkpoint on the gold rows alone, with the trainer
    keys of ``gold.trainer`` (tasks of the run with gold labels are not trained again: their heads ride
    along). With ``gold.mode=none`` the config itself."""
    gold: GoldConfig = OmegaConf.to_object(cfg.gold)  # type: ignore[assignment]
    if gold.mode == GoldMode.none:
        return [cfg]
    weak = [str(t) for t, c in cfg.tasks.items() if c.labels != "gold"]
    if not weak:
        raise MtlError(
            f"gold.mode={gold.mode}: no task of the run has weak labels (labels: weak or a train_probs.npy); "
            "gold labels alone are trained with labels=gold"
        )
    if gold.fold >= gold.folds:
        raise MtlError(f"gold.fold must be in 0..gold.folds-1, got gold.fold={gold.fold}, folds={gold.folds}")
    if gold.mode == GoldMode.mix and gold.weight == 0:
        raise MtlError("gold.weight must be > 0 with gold.mode=mix, got 0")
    base = copy.deepcopy(cfg)
    with open_dict(base):
        base.gold.mode = GoldMode.none.value
        for t in weak:
            base.tasks[t].split.dev_folds = gold.folds
            base.tasks[t].split.dev_fold = gold.fold
            if gold.mode == GoldMode.mix:
                base.tasks[t].weak.gold_weight = gold.weight
            if gold.lf:
                base.tasks[t].weak.gold_lf = gold.lf
    if gold.mode == GoldMode.mix:
        return [base]
    first, final = copy.deepcopy(base), copy.deepcopy(base)
    unknown = sorted(set(gold.trainer) - set(cfg.trainer))
    if unknown:
        raise MtlError(f"gold.trainer names unknown trainer keys {unknown} (known: {sorted(cfg.trainer)})")
    with open_dict(first), open_dict(final):
        first.output_dir = str(Path(cfg.output_dir) / "weak_stage")
        final.init_from = str(Path(first.output_dir) / "checkpoint")
        final.keep_old_heads = True
        final.trainer = OmegaConf.merge(cfg.trainer, gold.trainer)
        for t in list(final.tasks):
            if t in weak:
                final.tasks[t].labels = "gold"
            else:
                del final.tasks[t]
    return [first, final]


def train_once(
    cfg: DictConfig,
    echo: bool = True,
    weak_stage: dict[str, Any] | None = None,
    self_training: list[dict[str, Any]] | None = None,
    jtt: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One training run; ``weak_stage``: the report of the weak-label stage it continues,
    ``self_training``: the rounds before it, ``jtt``: JTT's identification run and error sets (each
    shown beside its own figures)."""
    start = time.perf_counter()
    proc = state()  # before anything else: sets up the processes of a multi-process launch
    if not proc.is_main_process:
        logging.getLogger("mtl").setLevel(logging.WARNING)  # one copy of the run's log, not N
    set_seed(cfg.seed)  # before any weights are made: heads (and random encoders) start from the seed
    tasks = run_tasks(cfg)
    enc_cfg: EncoderConfig = OmegaConf.to_object(cfg.encoder)  # type: ignore[assignment]
    trainer_cfg: TrainerConfig = OmegaConf.to_object(cfg.trainer)  # type: ignore[assignment]
    init = starting_model(tasks, enc_cfg, cfg.init_from, cfg.keep_old_heads)
    log.info("%s", init.describe())
    for note in init.notes:
        log.warning("init_from: %s", note)
    enc_cfg = init.encoder
    with open_dict(cfg):  # the saved config and the report record the encoder the run used
        cfg.encoder = OmegaConf.structured(enc_cfg)
    # the main process prepares, labels and caches; then the first process of each other machine (its own
    # cache_dir, or the shared one: then it reads); then every other process reads its machine's cache
    with proc.main_process_first(), proc.local_main_process_first():
        data = load_tasks(tasks, init.tokenizer, enc_cfg.max_length, cfg.cache_dir, cfg.seed)
    for name, dsd in data.items():
        log.info("task %s: %s", name, {s: len(d) for s, d in dsd.items()})
    trainer = Trainer(
        init.model,
        init.tokenizer,
        tasks,
        data,
        trainer_cfg,
        cfg.output_dir,
        max_length=enc_cfg.max_length,
        seed=cfg.seed,
        run_config=resolved(cfg),
        passengers=init.old_tasks,
    )
    old = OldTasks(trainer, init.old_tasks, cfg.cache_dir, cfg.seed)  # metrics before training
    # resume=true: each training of the run (gold.mode=finetune and self-training have several) resumes
    # from its saved state; a finished one was reused above, one never started starts now
    resume = cfg.resume and (Path(cfg.output_dir) / "state" / "loop.json").exists()
    if cfg.resume and not resume:
        log.info("resume=true: no saved state in %s; this training starts from step 0", cfg.output_dir)
    fit = trainer.fit(resume=resume)
    test = trainer.evaluate("test")
    old_change = old.change()  # and after
    results = {"dev": fit.best_dev, "test": test}
    extra = {
        "checkpoint": str(Path(fit.checkpoint).resolve()),
        "best_step": fit.best_step,
        "steps": fit.steps,
        "train_examples": fit.train_examples,
        "train_examples_per_s": round(fit.examples_per_second, 2),
        "wall_seconds": round(time.perf_counter() - start, 1),
        "num_processes": trainer.accelerator.num_processes,
        "device": str(trainer.accelerator.device),
        "mixed_precision": trainer.accelerator.mixed_precision,
        **gpu_memory(trainer.accelerator.device),
        "sizes": {t: {s: len(d) for s, d in dsd.items()} for t, dsd in data.items()},
        "train_labels": {t: task.config.labels for t, task in tasks.items()},
        # gold.mode=finetune: the tasks train on gold rows here; their label model is the first stage's
        "label_model": label_model_alone(tasks, cfg.cache_dir, cfg.seed)
        or (weak_stage or {}).get("label_model", {}),
        "init": init.as_dict(),
        "old_tasks": old_change,
    }
    sections = {}
    if weak_stage is not None:  # gold.mode=finetune: the weak-label stage's model against this one
        stage_change = old_task_change(weak_stage["metrics"], {"test": test})
        extra["weak_stage"] = {
            "output_dir": str(Path(weak_stage["checkpoint"]).parent),
            "mean": weak_stage["mean"],
            "test": stage_change,
        }
        title = "Gold fine-tuning: test metric of the weak-label stage (before) and after"
        sections[title] = format_change(stage_change, "task / split")
    if fit.group_weights:  # trainer.group_dro: where the worst-group objective put its weight
        extra["group_dro"] = fit.group_weights
        rows = [
            f"| {t} | {', '.join(f'{g} {q:.3f}' for g, q in w.items())} |"
            for t, w in fit.group_weights.items()
        ]
        sections["Group DRO: each group's final weight"] = "\n".join(
            ["| task | weights |", "|---|---|", *rows]
        )
    if jtt:
        extra["jtt"] = jtt
        rows = [f"| {t} | {100 * share:.1f}% |" for t, share in jtt["error_set"].items()]
        title = (
            f"JTT: identification run (mean dev {jtt['mean']['dev']:.4f}, test {jtt['mean']['test']:.4f}); "
            f"its errors weigh {jtt['upweight']:g}x here"
        )
        sections[title] = "\n".join(["| task | training rows in the error set |", "|---|---|", *rows])
    if self_training:
        extra["self_training"] = self_training
        sections["Self-training: the rounds before this run"] = format_rounds(self_training)
    if trainer.accelerator.is_main_process:
        title = "Old tasks (heads kept from init_from, not trained): metric before and after"
        sections |= {title: format_change(old_change)} if old_change else {}
        table = write_report(cfg.output_dir, results, tasks, extra, "mtl-train report", sections)
        if echo:
            print(f"\n{table}\n\nreport: {Path(cfg.output_dir).resolve() / 'report.md'}")
    trainer.accelerator.free_memory()  # the prepared (DDP-wrapped) model and optimizer
    return {"metrics": results, "mean": {s: mean_metric(r) for s, r in results.items()}, **extra}


def label_model_alone(tasks: Mapping[str, Task], cache_dir: str, seed: int) -> dict[str, dict[str, float]]:
    """Per task with ``labels: weak``: its label model's own metric on dev and test, on all rows (what
    the weak labels alone are worth; read from the weak-label cache the run filled)."""
    out = {}
    for name, task in tasks.items():
        if task.config.labels == "weak":
            s = weak_label(task, load_task_splits(task, cache_dir, seed), cache_dir).summary
            out[name] = {split: float(s[split][f"{task.metric}_all_rows"]) for split in ("dev", "test")}
    return out


def gpu_memory(device: torch.device) -> dict[str, float]:
    """``peak_gpu_memory_mb``: the most memory torch held allocated on this process's GPU during the run
    (training and evaluation); empty on a CPU."""
    if device.type != "cuda":
        return {}
    return {"peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)}


class OldTasks:
    """The passenger heads' tasks (kept from ``init_from``, not trained), evaluated on dev and test when
    made (before training) and by ``change()`` (after): a collapse of an old task shows in the report. An
    old task whose data cannot be loaded any more is skipped with a warning (its head is still kept)."""

    def __init__(
        self, trainer: Trainer, configs: Mapping[str, TaskConfig], cache_dir: str, seed: int
    ) -> None:
        self.trainer = trainer
        self.tasks: dict[str, Task] = {}
        self.data: dict[str, datasets.DatasetDict] = {}
        for name, cfg in configs.items():
            try:
                task = Task(name, cfg)
                self.data |= load_tasks(
                    {name: task}, trainer.tokenizer, trainer.max_length, cache_dir, seed, ["dev", "test"]
                )
                self.tasks[name] = task
            except MtlError as e:
                log.warning("old task %s: its data could not be loaded (%s); kept, not evaluated", name, e)
        self.before = self._evaluate()

    def _evaluate(self) -> dict[str, TaskMetrics]:
        if not self.data:
            return {}
        return {s: self.trainer.evaluate(s, self.data, self.tasks) for s in ("dev", "test")}

    def change(self) -> dict[str, dict[str, float]]:
        """Per old task and split: the metric before training, after it, and the change."""
        return old_task_change(self.before, self._evaluate()) if self.data else {}


def old_task_change(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, float]]:
    """Per old task and split: its metric before and after training the new tasks, and the change."""
    out: dict[str, dict[str, float]] = {}
    for split, per_task in after.items():
        for task, m in per_task.items():
            b = before.get(split, {}).get(task, {}).get("metric", math.nan)
            out[f"{task}/{split}"] = {"before": b, "after": m["metric"], "change": m["metric"] - b}
    return out


def format_rounds(rounds: list[dict[str, Any]]) -> str:
    """A Markdown table of self-training's earlier rounds: mean dev/test metric, share of rows kept."""
    rows = ["| round | mean dev | mean test | train rows kept for the next round |", "|---|---|---|---|"]
    for r in rounds:
        kept = ", ".join(f"{t} {100 * k:.1f}%" for t, k in r["kept"].items())
        rows.append(f"| {r['round']} | {r['mean']['dev']:.4f} | {r['mean']['test']:.4f} | {kept} |")
    return "\n".join(rows)


def format_change(change: Mapping[str, Mapping[str, float]], what: str = "old task / split") -> str:
    """A Markdown table of ``old_task_change``."""
    rows = [f"| {what} | before | after | change |", "|---|---|---|---|"]
    for k, v in change.items():
        rows.append(f"| {k} | {v['before']:.4f} | {v['after']:.4f} | {v['change']:+.4f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
