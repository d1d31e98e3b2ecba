"""Reading a task's source files (WRENCH json, csv, tsv, JSON lines, JSON, Hub) into raw rows per split.

Errors name the task and the file, row and field at fault.
"""

from __future__ import annotations

import csv
import glob
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from mtl.config import SourceConfig
from mtl.types import MtlError
from mtl.userload import resolve_path

SPLITS = ("train", "dev", "test")
_WRENCH_FILES = {"train": ["train.json"], "dev": ["valid.json"], "test": ["test.json"]}


class DataError(MtlError):
    """Bad task data: the message names the task and the file, field, row or key at fault."""


@dataclass
class RawRow:
    """One source row before label encoding, with where it came from (for error messages)."""

    text: str
    label: Any
    file: str
    line: int
    extra: dict[str, Any]


# ---------------------------------------------------------------------------------------------- readers


def files_for(task: str, src: SourceConfig) -> dict[str, list[Path]]:
    """The files of each split of a source (globs expanded); errors name missing files."""
    base = resolve_path(src.path)
    spec = dict(src.files)
    if not spec:
        if src.format == "wrench":
            spec = dict(_WRENCH_FILES)
        elif base.is_file():
            spec = {"all": [base.name]}
            base = base.parent
        elif not base.exists():
            raise DataError(f"task {task!r}: data file or folder {str(base)!r} does not exist (source.path)")
        else:
            raise DataError(
                f"task {task!r}: source.path {str(base)!r} is a folder; list its files in source.files"
            )
    unknown = set(spec) - {*SPLITS, "all"}
    if unknown:
        raise DataError(
            f"task {task!r}: source.files has unknown split(s) {sorted(unknown)}; use train, dev, test or all"
        )
    if "all" in spec and len(spec) > 1:
        raise DataError(f"task {task!r}: source.files cannot mix 'all' with other splits")
    out: dict[str, list[Path]] = {}
    for split, patterns in spec.items():
        paths: list[Path] = []
        for pattern in patterns:
            full = base / pattern
            matches = sorted(glob.glob(str(full)))
            if not matches:
                raise DataError(f"task {task!r}: data file {str(full)!r} for split {split!r} does not exist")
            paths.extend(Path(m) for m in matches)
        out[split] = paths
    return out


def _read_wrench(path: Path, src: SourceConfig) -> Iterable[tuple[int, dict[str, Any]]]:
    with open(path, encoding=src.encoding) as f:
        data = json.load(f)
    for i, (key, obj) in enumerate(data.items()):
        rec = dict(obj.get("data", {}))
        rec["label"] = obj.get("label")
        rec["weak_labels"] = obj.get("weak_labels")
        rec["id"] = key
        yield i, rec


def _read_jsonl(path: Path, src: SourceConfig) -> Iterable[tuple[int, dict[str, Any]]]:
    with open(path, encoding=src.encoding) as f:
        for i, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{i}: not valid JSON ({e})") from e


def _read_json(path: Path, src: SourceConfig) -> Iterable[tuple[int, dict[str, Any]]]:
    with open(path, encoding=src.encoding) as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise DataError(f"{path}: format 'json' expects a JSON array of objects; use 'jsonl' or 'wrench'")
    yield from enumerate(data)


def _read_delimited(path: Path, src: SourceConfig, delimiter: str) -> Iterable[tuple[int, dict[str, Any]]]:
    with open(path, encoding=src.encoding, newline="") as f:
        if delimiter == "\t":
            # Plain TSV with no quoting; a record broken by a stray newline (the UCI imdb file has some)
            # is glued back until it has the expected number of fields.
            lines = f.read().splitlines()
            header = lines[0].split("\t") if src.has_header and lines else None
            body = lines[1:] if header else lines
            width = len(header) if header else max((len(x.split("\t")) for x in body), default=0)
            names = header or [str(i) for i in range(width)]
            buf, start = "", 0
            for i, line in enumerate(body, start=2 if header else 1):
                if not buf:
                    start = i
                buf = f"{buf} {line}" if buf else line
                fields = buf.split("\t")
                if len(fields) >= width:
                    yield start, dict(zip(names, [x.strip() for x in fields], strict=False))
                    buf = ""
            if buf.strip():
                raise DataError(f"{path}:{start}: record has fewer than {width} tab-separated fields")
            return
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, None) if src.has_header else None
        for i, rec in enumerate(reader, start=2 if header else 1):
            if not rec:
                continue
            names = header or [str(j) for j in range(len(rec))]
            yield i, dict(zip(names, rec, strict=False))


def _read_file(path: Path, src: SourceConfig) -> Iterable[tuple[int, dict[str, Any]]]:
    readers: dict[str, Callable[[Path, SourceConfig], Iterable[tuple[int, dict[str, Any]]]]] = {
        "wrench": _read_wrench,
        "jsonl": _read_jsonl,
        "json": _read_json,
        "csv": lambda p, s: _read_delimited(p, s, ","),
        "tsv": lambda p, s: _read_delimited(p, s, "\t"),
    }
    if src.format not in readers:
        raise DataError(f"unknown source.format {src.format!r}; choose one of {sorted([*readers, 'hub'])}")
    return readers[src.format](path, src)


def read_rows(task: str, src: SourceConfig) -> dict[str, list[RawRow]]:
    """Read a task's source into raw rows per split (``all`` when the source ships no split)."""
    if src.format == "hub":
        return _read_hub(task, src)
    include = re.compile(src.include_regex, re.IGNORECASE) if src.include_regex else None
    exclude = re.compile(src.exclude_regex, re.IGNORECASE) if src.exclude_regex else None
    out: dict[str, list[RawRow]] = {}
    for split, paths in files_for(task, src).items():
        rows: list[RawRow] = []
        for path in paths:
            for line, rec in _read_file(path, src):
                if src.text_field not in rec:
                    raise DataError(
                        f"task {task!r}: text field {src.text_field!r} (source.text_field) not found in "
                        f"{path} row {line}; fields there: {sorted(rec)}"
                    )
                if src.label_field not in rec:
                    raise DataError(
                        f"task {task!r}: label field {src.label_field!r} (source.label_field) not found in "
                        f"{path} row {line}; fields there: {sorted(rec)}"
                    )
                text = rec[src.text_field]
                text = "" if text is None else str(text)
                if include and not include.search(text):
                    continue
                if exclude and exclude.search(text):
                    continue
                extra = {"weak_labels": rec["weak_labels"]} if rec.get("weak_labels") is not None else {}
                rows.append(RawRow(text, rec[src.label_field], str(path), line, extra))
        out[split] = rows
    return out


def _read_hub(task: str, src: SourceConfig) -> dict[str, list[RawRow]]:
    try:
        dsd = datasets.load_dataset(src.path, src.hub_name)
    except Exception as e:  # the Hub or a local script can fail in many ways; name the source
        raise DataError(
            f"task {task!r}: could not load {src.path!r} ({src.hub_name}) from the Hub: {e}"
        ) from e
    assert isinstance(dsd, datasets.DatasetDict)
    mapping = {s: [s] for s in dsd} if not src.files else {k: v for k, v in src.files.items()}
    out: dict[str, list[RawRow]] = {}
    for split, names in mapping.items():
        rows: list[RawRow] = []
        for name in names:
            ds = dsd[name]
            for field_name in (src.text_field, src.label_field):
                if field_name not in ds.column_names:
                    raise DataError(
                        f"task {task!r}: field {field_name!r} not in {src.path}[{name}] {ds.column_names}"
                    )
            for i, rec in enumerate(ds):
                rows.append(
                    RawRow(str(rec[src.text_field]), rec[src.label_field], f"{src.path}[{name}]", i, {})
                )
        out[split if split in SPLITS else "all"] = rows
    return out
