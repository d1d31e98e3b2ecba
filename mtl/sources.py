"""Reading a task's source files (WRENCH json, csv, tsv, JSON lines, JSON, Hub) into raw rows per split.

Errors name the task and the file, row and field at fault. What reading tolerates, so that one file
gives the same rows however it was saved: a UTF-8 byte order mark (``source.encoding`` utf-8 is read as
``utf-8-sig``), CRLF or LF line endings, csv fields of any length. Rows whose text is empty or only
whitespace are dropped (a count per split in the log). A byte that is not valid in ``source.encoding``
is an error naming the file and line.
"""

from __future__ import annotations

import codecs
import csv
import glob
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import datasets
import pyarrow.parquet as pq

from mtl.config import SourceConfig
from mtl.types import MtlError
from mtl.userload import resolve_path

log = logging.getLogger("mtl.sources")
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


_ENCODING_FIX = (
    "set source.encoding (e.g. latin-1 or cp1252) in the task YAML, or re-encode the file as UTF-8"
)

Records = Iterator[tuple[int, Any]]
"""A file's records with the line (or index) each starts at; a record is a dict when well formed."""


def _open(task: str, path: Path, src: SourceConfig, newline: str | None = None) -> TextIO:
    try:
        name = codecs.lookup(src.encoding).name
    except LookupError:
        raise DataError(
            f"task {task!r}: source.encoding {src.encoding!r} is not a known text encoding "
            "(e.g. utf-8, latin-1, cp1252)"
        ) from None
    # utf-8-sig reads files with and without a byte order mark; plain utf-8 would make it part of the
    # first header field ("\ufefftext") or of the first JSON value
    return open(path, encoding="utf-8-sig" if name == "utf-8" else src.encoding, newline=newline)


def _decode_error(task: str, path: Path, src: SourceConfig, err: UnicodeDecodeError) -> DataError:
    """Where in ``path`` the first byte that is not valid ``source.encoding`` is. The offset in ``err``
    is relative to the decoder's chunk, so the whole file is decoded again in one piece."""
    data = path.read_bytes()
    try:
        data.decode(src.encoding)
    except UnicodeDecodeError as e:
        start, bad = e.start, data[e.start : e.end]
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        shown = " ".join(f"0x{b:02x}" for b in bad[:4])
        return DataError(
            f"task {task!r}: {path} line {line}: byte {shown} (byte offset {start}, column {column}) is not "
            f"valid {src.encoding} ({e.reason}); {_ENCODING_FIX}"
        )
    return DataError(f"task {task!r}: {path} is not valid {src.encoding} ({err}); {_ENCODING_FIX}")


def _load_json(task: str, path: Path, src: SourceConfig) -> Any:
    with _open(task, path, src) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(
                f"task {task!r}: {path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})"
            ) from e


def _read_wrench(task: str, path: Path, src: SourceConfig) -> Records:
    data = _load_json(task, path, src)
    if not isinstance(data, dict):
        raise DataError(
            f"task {task!r}: {path}: format 'wrench' expects a JSON object keyed by example id, "
            f"got a JSON {type(data).__name__}"
        )
    for i, (key, obj) in enumerate(data.items()):
        if not isinstance(obj, dict) or not isinstance(obj.get("data", {}), dict):
            raise DataError(
                f"task {task!r}: {path} key {key!r}: expected an object with 'data' (an object) and 'label'"
            )
        rec = dict(obj.get("data", {}))
        rec["label"] = obj.get("label")
        rec["weak_labels"] = obj.get("weak_labels")
        rec["id"] = key
        yield i, rec


def _read_jsonl(task: str, path: Path, src: SourceConfig) -> Records:
    with _open(task, path, src) as f:
        for i, line in enumerate(f, start=1):
            if line.strip():
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"task {task!r}: {path}:{i}: not valid JSON ({e})") from e


def _read_json(task: str, path: Path, src: SourceConfig) -> Records:
    data = _load_json(task, path, src)
    if not isinstance(data, list):
        raise DataError(
            f"task {task!r}: {path}: format 'json' expects a JSON array of objects; use 'jsonl' or 'wrench'"
        )
    yield from enumerate(data)


def _raise_csv_field_limit() -> None:
    """Let a csv field be as long as the platform allows: the default limit, 131,072 characters, fails
    on long documents."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:  # the limit is a C long, 32 bits on some platforms
            limit //= 2


def _read_csv(task: str, path: Path, src: SourceConfig) -> Records:
    _raise_csv_field_limit()
    with _open(task, path, src, newline="") as f:  # newline="": the csv module handles \r\n itself
        reader = csv.reader(f)
        try:
            header = next(reader, None) if src.has_header else None
            end = reader.line_num
            for rec in reader:
                # a record starts on the line after the previous one ended (quoted fields span lines)
                start, end = end + 1, reader.line_num
                if not any(x.strip() for x in rec):  # a blank line
                    continue
                names = header or [str(j) for j in range(len(rec))]
                yield start, dict(zip(names, rec, strict=False))
        except csv.Error as e:
            raise DataError(
                f"task {task!r}: {path} line {reader.line_num}: not valid CSV ({e}); check the quoting there"
            ) from e


def _read_parquet(task: str, path: Path, src: SourceConfig) -> Records:
    """Rows of a Parquet file, read a row group at a time (row numbers from 1, like the text formats)."""
    try:
        f = pq.ParquetFile(path)
    except Exception as e:  # pyarrow's ArrowInvalid: "Parquet magic bytes not found", a truncated footer
        raise DataError(f"task {task!r}: {path}: not a readable Parquet file ({e})") from e
    row = 0
    for batch in f.iter_batches(batch_size=10_000):
        for rec in batch.to_pylist():
            row += 1
            yield row, rec


def _read_tsv(task: str, path: Path, src: SourceConfig) -> Records:
    # Plain TSV with no quoting; a record broken by a stray newline (the UCI imdb file has some) is
    # glued back until it has the expected number of fields. Lines end at \n, \r\n or \r only
    # (str.splitlines would also split a text at \x0c, \x85 or \u2028).
    with _open(task, path, src, newline="") as f:
        lines = re.split(r"\r\n|\r|\n", f.read())
    if lines[-1] == "":
        lines.pop()
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
        raise DataError(f"task {task!r}: {path}:{start}: record has fewer than {width} tab-separated fields")


_READERS: dict[str, Callable[[str, Path, SourceConfig], Records]] = {
    "wrench": _read_wrench,
    "jsonl": _read_jsonl,
    "json": _read_json,
    "csv": _read_csv,
    "tsv": _read_tsv,
    "parquet": _read_parquet,
}


def _read_file(task: str, path: Path, src: SourceConfig) -> Records:
    if src.format not in _READERS:
        raise DataError(f"unknown source.format {src.format!r}; choose one of {sorted([*_READERS, 'hub'])}")
    try:
        yield from _READERS[src.format](task, path, src)
    except UnicodeDecodeError as e:
        raise _decode_error(task, path, src, e) from e


def _file_rows(task: str, path: Path, src: SourceConfig) -> Iterator[RawRow]:
    for line, rec in _read_file(task, path, src):
        if not isinstance(rec, dict):
            raise DataError(
                f"task {task!r}: {path} row {line}: expected an object with the text and label fields, "
                f"got {json.dumps(rec)[:80]}"
            )
        for what, key in (("text", src.text_field), ("label", src.label_field)):
            if key not in rec:
                raise DataError(
                    f"task {task!r}: {what} field {key!r} (source.{what}_field) not found in "
                    f"{path} row {line}; fields there: {sorted(rec)}"
                )
        text = rec[src.text_field]
        extra = {"weak_labels": rec["weak_labels"]} if rec.get("weak_labels") is not None else {}
        yield RawRow("" if text is None else str(text), rec[src.label_field], str(path), line, extra)


def read_rows(task: str, src: SourceConfig) -> dict[str, list[RawRow]]:
    r"""Read a task's source into raw rows per split (``all`` when the source ships no split).

    Rows come in file order with their text as read (csv: exactly as written; tsv: fields stripped of
    surrounding whitespace), less those that ``include_regex``/``exclude_regex`` leave out and those
    whose text is empty or only whitespace (dropped, with a count per split in the log).

    Example:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "d.csv"
        >>> _ = path.write_bytes(b'\xef\xbb\xbftext,label\r\n"a, ""quoted""\r\nfield",pos\r\n ,neg\r\n')
        >>> rows = read_rows("t", SourceConfig(format="csv", path=str(path)))["all"]
        >>> [(r.text, r.label, r.line) for r in rows]
        [('a, "quoted"\r\nfield', 'pos', 2)]
    """
    if src.format == "hub":
        raw = _read_hub(task, src)
    else:
        raw = {
            split: [row for path in paths for row in _file_rows(task, path, src)]
            for split, paths in files_for(task, src).items()
        }
    include = re.compile(src.include_regex, re.IGNORECASE) if src.include_regex else None
    exclude = re.compile(src.exclude_regex, re.IGNORECASE) if src.exclude_regex else None
    out: dict[str, list[RawRow]] = {}
    empty: dict[str, int] = {}
    for split, rows in raw.items():
        kept = [r for r in rows if r.text.strip()]
        if len(kept) < len(rows):
            empty[split] = len(rows) - len(kept)
        out[split] = [
            r
            for r in kept
            if (include is None or include.search(r.text)) and not (exclude and exclude.search(r.text))
        ]
    if empty:
        n = sum(empty.values())
        log.warning(
            "task %r: dropped %d row%s with an empty text (%s)",
            task,
            n,
            "" if n == 1 else "s",
            ", ".join(f"{split} {k}" for split, k in empty.items()),
        )
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
                text = rec[src.text_field]
                rows.append(
                    RawRow(
                        "" if text is None else str(text), rec[src.label_field], f"{src.path}[{name}]", i, {}
                    )
                )
        out[split if split in SPLITS else "all"] = rows
    return out
