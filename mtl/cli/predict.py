"""``mtl-predict``: every head's prediction for each input row, one encoder pass per batch, streamed: the
input is read ``chunk_rows`` rows at a time, predicted and written before the next chunk is read, so a
file of any size runs in bounded memory. Output row i answers input row i, always.

Input (``input=PATH``, or ``-`` for standard input; ``input_format``, ``auto`` by the file's suffix):

* ``lines`` (standard input and any suffix not below): UTF-8, one text per line; a line that is a JSON object
  contributes its ``text_field`` instead.
* ``jsonl`` (``.jsonl``, ``.ndjson``, ``.json``): one JSON object per line, the text in ``text_field``.
* ``csv`` (``.csv``): a header row, then one row per text, the text in column ``text_field``; quoted
  fields may hold line breaks and be of any length; blank lines are not rows.
* ``parquet`` (``.parquet``, ``.pq``): the text in string column ``text_field``.

A blank or whitespace-only text (an empty line, a null or empty field) gets ``"predictions": null`` and
does not go through the model. A UTF-8 byte order mark at the start and CRLF line ends are stripped;
bytes that are not UTF-8 are an error naming the line and the byte offset. ``keep=[id,...]`` copies
those input columns (fields) to each output row; not for ``lines``.

Output (``output=PATH`` or ``-``; ``output_format``, ``auto`` by suffix: ``.parquet``/``.pq`` ->
``parquet``, anything else and standard output -> ``jsonl``):

* ``jsonl``: ``{<keep columns>..., "text": ..., "predictions": {head: {"label": ..., "probs": {class:
  p}}}}`` per row (probabilities to 6 decimals).
* ``parquet``: flat columns ``text``, the ``keep`` columns (their input types; strings from CSV), and per
  head ``<head>`` (the predicted label name) and ``<head>.<class>`` (float32 probability), null for a
  blank text; one row group per chunk.

A file output is written under a temporary name (``.<name>.tmp<pid>`` beside it) and renamed when
complete: a run that fails or is killed leaves no file that looks finished. A progress bar with rows/s
goes to standard error (``progress=false``: none); standard output carries only predictions.

``backend=ray``: the same output, predicted by Ray actors (``mtl.predict.ray_predict``) on the cluster
``ray.address`` (or ``RAY_ADDRESS``) names, else on a Ray instance started here; shards of
``ray.shard_rows`` rows, ``ray.workers`` actors with ``ray.gpus_per_actor`` GPUs each.

Example:
    printf 'win cash now\\n\\nsee you at lunch\\n' | mtl-predict checkpoint=runs/x/checkpoint
    # 3 lines out; the second is {"text": "", "predictions": null}
    mtl-predict checkpoint=runs/x/checkpoint input=rows.parquet text_field=body 'keep=[id]' output=p.parquet
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import sys
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import hydra
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from mtl.checkpoint import load_checkpoint
from mtl.cli import user_errors
from mtl.config import CONF_DIR, Backend, PredictConfig, PredictFormat
from mtl.predict import (
    Chunk,
    Probabilities,
    check_heads,
    checkpoint_labels,
    chunk_records,
    local_predict,
    ray_predict,
)
from mtl.types import MtlError

_BOM = b"\xef\xbb\xbf"
_INPUT_SUFFIXES = {
    ".txt": PredictFormat.lines,
    ".text": PredictFormat.lines,
    ".jsonl": PredictFormat.jsonl,
    ".ndjson": PredictFormat.jsonl,
    ".json": PredictFormat.jsonl,
    ".csv": PredictFormat.csv,
    ".parquet": PredictFormat.parquet,
    ".pq": PredictFormat.parquet,
}
_OUTPUT_SUFFIXES = {
    ".jsonl": PredictFormat.jsonl,
    ".ndjson": PredictFormat.jsonl,
    ".json": PredictFormat.jsonl,
    ".parquet": PredictFormat.parquet,
    ".pq": PredictFormat.parquet,
}


def _source_name(source: str) -> str:
    return "<stdin>" if source == "-" else source


def _utf8_error(name: str, line: int, raw: bytes, pos: int, offset: int) -> MtlError:
    example = (
        f"iconv -f latin1 -t utf-8 {name} > fixed.txt" if name != "<stdin>" else "iconv -f latin1 -t utf-8"
    )
    return MtlError(
        f"{name}:{line}: not valid UTF-8 (byte 0x{raw[pos]:02x} at byte offset {offset + pos}, column "
        f"{pos + 1}); re-encode the input as UTF-8, e.g. {example}"
    )


def iter_lines(stream: Iterable[bytes], name: str, *, keepends: bool = False) -> Iterator[str]:
    r"""The lines of a UTF-8 byte stream, one at a time (``name`` is the input's name for errors): split
    at ``\n`` only, a byte order mark at the start stripped; without ``keepends``, the ``\n`` and a
    ``\r`` before it are stripped too. Bytes that are not UTF-8 are an ``MtlError`` naming the line, the
    byte offset in the stream and the column (in bytes).

    Example:
        >>> list(iter_lines(io.BytesIO(b"\xef\xbb\xbfa\r\nb\n"), "in.txt", keepends=True))
        ['a\r\n', 'b\n']
        >>> list(iter_lines(io.BytesIO(b"\xef\xbb\xbf"), "in.txt"))
        []
    """
    offset = 0
    for n, raw in enumerate(stream, start=1):
        skip = len(_BOM) if n == 1 and raw.startswith(_BOM) else 0
        if skip == len(raw):
            break  # a byte order mark alone: no line
        try:
            line = raw[skip:].decode("utf-8")
        except UnicodeDecodeError as e:
            raise _utf8_error(name, n, raw, skip + e.start, offset) from None
        offset += len(raw)
        if not keepends:
            if line.endswith("\n"):
                line = line[:-1]
            if line.endswith("\r"):
                line = line[:-1]
        yield line


def decode_lines(data: bytes, name: str) -> list[str]:
    r"""The lines of UTF-8 ``data`` (``name`` is the input's name for errors): split at ``\n`` only, a
    ``\r`` before it and a byte order mark at the start stripped, no line after a final ``\n``.

    Example:
        >>> decode_lines(b"\xef\xbb\xbfa\r\n\r\nb \xc3\xa9", "in.txt")
        ['a', '', 'b é']
        >>> decode_lines(b"ok\ncaf\xe9\n", "in.txt")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mtl.types.MtlError: in.txt:2: not valid UTF-8 (byte 0xe9 at byte offset 6, column 4); re-encode ...
    """
    return list(iter_lines(io.BytesIO(data), name))


def input_format(source: str, fmt: PredictFormat | str = PredictFormat.auto) -> PredictFormat:
    """The format of input ``source``: ``fmt``, or with ``auto`` the one its suffix names (``lines`` for
    standard input and any other suffix: one text per line, as ever).

    Example:
        >>> input_format("rows.CSV"), input_format("-"), input_format("x.txt", "jsonl")
        (<PredictFormat.csv: 'csv'>, <PredictFormat.lines: 'lines'>, <PredictFormat.jsonl: 'jsonl'>)
    """
    fmt = PredictFormat(fmt)
    if fmt == PredictFormat.parquet and source == "-":
        raise MtlError("Parquet input cannot come from standard input; set input=PATH.parquet")
    if fmt != PredictFormat.auto:
        return fmt
    if source == "-":
        return PredictFormat.lines
    return _INPUT_SUFFIXES.get(Path(source).suffix.lower(), PredictFormat.lines)


def output_format(output: str, fmt: PredictFormat | str = PredictFormat.auto) -> PredictFormat:
    """The format of ``output``: ``fmt``, or with ``auto`` the one its suffix names (``jsonl`` for
    standard output and any other suffix). Only ``jsonl`` and ``parquet`` are written; Parquet needs a file.

    Example:
        >>> output_format("-"), output_format("preds.parquet")
        (<PredictFormat.jsonl: 'jsonl'>, <PredictFormat.parquet: 'parquet'>)
    """
    fmt = PredictFormat(fmt)
    if fmt in (PredictFormat.lines, PredictFormat.csv):
        raise MtlError(f"output_format={fmt.value} is an input format; mtl-predict writes jsonl or parquet")
    if fmt == PredictFormat.auto:
        if output == "-":
            return PredictFormat.jsonl
        fmt = _OUTPUT_SUFFIXES.get(Path(output).suffix.lower(), PredictFormat.jsonl)
    if fmt == PredictFormat.parquet and output == "-":
        raise MtlError("Parquet output cannot go to standard output (output=-); set output=PATH.parquet")
    return fmt


def _open_binary(source: str) -> IO[bytes]:
    if source == "-":
        return sys.stdin.buffer
    if not Path(source).is_file():
        raise MtlError(
            f"input file {source!r} does not exist (set input=PATH, or input=- for standard input)"
        )
    return open(source, "rb")  # closed by read_chunks


def _field_text(value: object, name: str, n: int, text_field: str) -> str:
    text = "" if value is None else str(value)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # "\ud800" escapes: no tokenizer takes them
        raise MtlError(
            f"{name}:{n}: field {text_field!r} holds an unpaired surrogate escape "
            "(like \\ud800), which is not text; fix or drop that escape"
        ) from None
    return text


def _json_object(line: str) -> dict[str, Any] | None:
    if not line.lstrip().startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None  # a text that happens to start with a brace
    return obj if isinstance(obj, dict) else None


def _no_field(name: str, n: int, field: str, obj: Mapping[str, Any], why: str) -> MtlError:
    return MtlError(f"{name}:{n}: JSON line has no field {field!r} (fields there: {sorted(obj)}); {why}")


def _lines_rows(stream: IO[bytes], name: str, text_field: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, line in enumerate(iter_lines(stream, name), start=1):
        obj = _json_object(line)
        if obj is not None:
            if text_field not in obj:
                raise _no_field(name, n, text_field, obj, "set text_field=... to the field holding the text")
            line = _field_text(obj[text_field], name, n, text_field)
        yield line, {}


def _jsonl_rows(
    stream: IO[bytes], name: str, text_field: str, keep: Sequence[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    for n, line in enumerate(iter_lines(stream, name), start=1):
        if not line.strip():
            yield "", dict.fromkeys(keep)
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise MtlError(
                f"{name}:{n}: not JSON ({e.msg}, column {e.colno}); jsonl input needs one JSON object per "
                "line (input_format=lines takes plain text lines)"
            ) from None
        if not isinstance(obj, dict):
            raise MtlError(
                f"{name}:{n}: a JSON {type(obj).__name__}, not an object; jsonl needs one per line"
            )
        if text_field not in obj:
            raise _no_field(name, n, text_field, obj, "set text_field=... to the field holding the text")
        missing = [k for k in keep if k not in obj]
        if missing:
            raise _no_field(name, n, missing[0], obj, "keep= names fields every row has")
        yield _field_text(obj[text_field], name, n, text_field), {k: obj[k] for k in keep}


def _missing_columns(name: str, columns: Sequence[str], text_field: str, keep: Sequence[str]) -> None:
    if text_field not in columns:
        raise MtlError(
            f"{name}: no column {text_field!r} (columns: {list(columns)}); set text_field= to the column "
            "holding the text"
        )
    missing = [k for k in keep if k not in columns]
    if missing:
        raise MtlError(f"{name}: keep column(s) {missing} do not exist (columns: {list(columns)})")


def _csv_rows(
    stream: IO[bytes], name: str, text_field: str, keep: Sequence[str]
) -> Iterator[tuple[str, dict[str, Any]]]:
    csv.field_size_limit(sys.maxsize)  # fields of any length
    reader = csv.reader(iter_lines(stream, name, keepends=True))
    try:
        header = next(reader, None)
        if header is None:
            raise MtlError(f"{name}: empty CSV file; csv input needs a header row naming the columns")
        _missing_columns(name, header, text_field, keep)
        at = header.index(text_field)
        keep_at = [header.index(k) for k in keep]
        for row in reader:
            if not row:
                continue  # a blank line is not a row
            if len(row) != len(header):
                raise MtlError(
                    f"{name}:{reader.line_num}: {len(row)} fields where the header has {len(header)}; "
                    "quote fields holding commas or line breaks"
                )
            yield row[at], {k: row[i] for k, i in zip(keep, keep_at, strict=True)}
    except csv.Error as e:
        raise MtlError(f"{name}:{reader.line_num}: not valid CSV ({e})") from None


def _chunks(
    rows: Iterator[tuple[str, dict[str, Any]]], name: str, keep: Sequence[str], chunk_rows: int
) -> Iterator[Chunk]:
    start = 0
    for index in itertools.count():
        batch = list(itertools.islice(rows, chunk_rows))
        if not batch:
            return
        texts = [t for t, _ in batch]
        kept = {k: [values[k] for _, values in batch] for k in keep}
        yield Chunk(index, start, texts, kept, name)
        start += len(batch)


def _parquet_chunks(source: str, text_field: str, keep: Sequence[str], chunk_rows: int) -> Iterator[Chunk]:
    if not Path(source).is_file():
        raise MtlError(f"input file {source!r} does not exist (set input=PATH)")
    try:
        pf = pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as e:
        raise MtlError(f"{source}: not a Parquet file ({e})") from None
    with pf:
        _missing_columns(source, pf.schema_arrow.names, text_field, keep)
        kind = pf.schema_arrow.field(text_field).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)):
            raise MtlError(
                f"{source}: column {text_field!r} holds {kind}, not text; set text_field= to a string column"
            )
        columns = list(dict.fromkeys([text_field, *keep]))
        start = 0
        for index, batch in enumerate(pf.iter_batches(batch_size=chunk_rows, columns=columns)):
            texts = ["" if t is None else t for t in batch.column(text_field).to_pylist()]
            yield Chunk(index, start, texts, {k: batch.column(k) for k in keep}, source)
            start += batch.num_rows


def read_chunks(
    source: str,
    fmt: PredictFormat | str,
    text_field: str = "text",
    keep: Sequence[str] = (),
    chunk_rows: int = 10_000,
) -> Generator[Chunk, None, None]:
    """The rows of ``source`` (``-``: standard input) in ``fmt`` (see the module docstring), as chunks of
    ``chunk_rows`` rows in order, read lazily: one chunk in memory at a time. Errors (``MtlError``) name
    the source and, where it is a row's fault, the line: bytes that are not UTF-8, a missing
    ``text_field`` or ``keep`` column (listing the columns), a row that is not JSON or has the wrong
    number of CSV fields, a missing file."""
    fmt = input_format(source, fmt)
    name = _source_name(source)
    if fmt == PredictFormat.parquet:
        yield from _parquet_chunks(source, text_field, keep, chunk_rows)
        return
    if keep and fmt == PredictFormat.lines:
        raise MtlError(
            f"keep={list(keep)} needs an input with columns (jsonl, csv or parquet); {name} is read as lines "
            "(set input_format=)"
        )
    stream = _open_binary(source)
    try:
        if fmt == PredictFormat.lines:
            rows = _lines_rows(stream, name, text_field)
        elif fmt == PredictFormat.jsonl:
            rows = _jsonl_rows(stream, name, text_field, keep)
        else:
            rows = _csv_rows(stream, name, text_field, keep)
        yield from _chunks(rows, name, keep, chunk_rows)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_texts(source: str, text_field: str) -> list[str]:
    """Every text of ``source`` read as ``lines`` (``-`` is stdin; see the module docstring), blank ones
    included: a line that is a JSON object contributes its ``text_field`` (``""`` when null), any other
    line itself. Errors (``MtlError``) name the source and line: bytes that are not UTF-8, a JSON line
    without ``text_field``, a missing file."""
    return [t for chunk in read_chunks(source, PredictFormat.lines, text_field) for t in chunk.texts]


def count_rows(source: str, fmt: PredictFormat) -> int | None:
    """The number of rows of ``source`` when it is cheap to know (Parquet metadata; the lines of a
    ``lines`` or ``jsonl`` file, counted in one pass over its bytes), else None (CSV, standard input)."""
    if source == "-" or not Path(source).is_file():
        return None
    if fmt == PredictFormat.parquet:
        try:
            return int(pq.ParquetFile(source).metadata.num_rows)
        except (pa.ArrowException, OSError):
            return None
    if fmt not in (PredictFormat.lines, PredictFormat.jsonl):
        return None
    n, last = 0, b"\n"
    with open(source, "rb") as f:
        while block := f.read(1 << 20):
            n += block.count(b"\n")
            last = block[-1:]
    return n + (last != b"\n")


def _check_columns(fmt: PredictFormat, keep: Sequence[str], label_names: Mapping[str, Sequence[str]]) -> None:
    own = ["text", "predictions"]
    if fmt == PredictFormat.parquet:
        own = ["text"] + [c for h, names in label_names.items() for c in (h, *(f"{h}.{n}" for n in names))]
    clash = sorted(set(keep) & set(own))
    if clash:
        raise MtlError(
            f"keep column(s) {clash} clash with the output's own column(s) of that name; drop them from keep="
        )
    if len(set(own)) != len(own):
        dup = sorted({c for c in own if own.count(c) > 1})
        raise MtlError(f"the Parquet output would have duplicate column(s) {dup}; write output_format=jsonl")
    if len(set(keep)) != len(keep):
        raise MtlError(f"keep={list(keep)} names a column twice")


class _AtomicOutput:
    """A file written under a temporary name beside ``path`` and renamed to it by ``commit``."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")

    def _rename(self) -> None:
        os.replace(self.tmp, self.path)

    def _remove(self) -> None:
        self.tmp.unlink(missing_ok=True)


class JsonlWriter(_AtomicOutput):
    """Writes one JSON line per row (``chunk_records`` plus the ``keep`` columns first) to a file or,
    with ``-``, to standard output (flushed per chunk)."""

    def __init__(self, output: str, label_names: Mapping[str, Sequence[str]], keep: Sequence[str]) -> None:
        self.stdout = output == "-"
        if not self.stdout:
            super().__init__(output)
        self.file: IO[bytes] = sys.stdout.buffer if self.stdout else open(self.tmp, "wb")  # noqa: SIM115
        self.label_names, self.keep = label_names, list(keep)

    def write(self, chunk: Chunk, probs: Probabilities) -> None:
        """Append the chunk's rows."""
        records = chunk_records(chunk.texts, probs, self.label_names)
        if self.keep:
            cols = {k: v.to_pylist() if isinstance(v, pa.Array) else v for k, v in chunk.keep.items()}
            records = [{**{k: cols[k][i] for k in self.keep}, **r} for i, r in enumerate(records)]
        data = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
        self.file.write(data.encode("utf-8"))
        if self.stdout:
            self.file.flush()

    def commit(self) -> None:
        """Finish: the file gets its final name."""
        if not self.stdout:
            self.file.close()
            self._rename()

    def abort(self) -> None:
        """Give up: the temporary file is removed."""
        if not self.stdout:
            self.file.close()
            self._remove()


class ParquetOutWriter(_AtomicOutput):
    """Writes flat, typed rows to a Parquet file, one row group per chunk: ``text``, the ``keep`` columns
    (typed by the first chunk's values), per head ``<head>`` (label name) and ``<head>.<class>``
    (float32 probability), nulls for blank texts."""

    def __init__(self, output: str, label_names: Mapping[str, Sequence[str]], keep: Sequence[str]) -> None:
        super().__init__(output)
        self.label_names, self.keep = label_names, list(keep)
        self.writer: pq.ParquetWriter | None = None
        self.types: dict[str, pa.DataType] = {}

    def _keep_array(self, chunk: Chunk, col: str) -> pa.Array:
        values = chunk.keep[col]
        if isinstance(values, pa.Array | pa.ChunkedArray):
            arr = values
        else:
            try:
                arr = pa.array(values, type=self.types.get(col))
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                kind = self.types.get(col)
                where = next(
                    (i for i, v in enumerate(values) if not _fits(v, kind)), 0
                )  # the first value that does not fit
                raise MtlError(
                    f"{chunk.source}: row {chunk.start + where + 1}: keep column {col!r} holds "
                    f"{values[where]!r}, which does not fit the column's type "
                    f"{kind or 'inferred from its values'} in the Parquet output (typed by the first "
                    "chunk's rows); make the field's type consistent, or write output_format=jsonl"
                ) from None
        if col not in self.types:
            self.types[col] = pa.string() if pa.types.is_null(arr.type) else arr.type
            if pa.types.is_null(arr.type):
                arr = arr.cast(pa.string())
        return arr

    def write(self, chunk: Chunk, probs: Probabilities) -> None:
        """Append the chunk as one row group."""
        blank = [not t.strip() for t in chunk.texts]
        columns: dict[str, pa.Array] = {"text": pa.array(chunk.texts, pa.string())}
        for col in self.keep:
            columns[col] = self._keep_array(chunk, col)
        mask = np.array(blank, dtype=bool)
        for head, names in self.label_names.items():
            p = probs[head]
            best = p.argmax(axis=1) if len(p) else []
            labels = [None if b else names[int(j)] for b, j in zip(blank, best, strict=True)]
            columns[head] = pa.array(labels, pa.string())
            for j, name in enumerate(names):
                columns[f"{head}.{name}"] = pa.array(np.ascontiguousarray(p[:, j]), pa.float32(), mask=mask)
        table = pa.table(columns)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, table.schema)
        self.writer.write_table(table, row_group_size=max(1, table.num_rows))

    def _schema(self) -> pa.Schema:
        fields = [pa.field("text", pa.string())]
        fields += [pa.field(k, self.types.get(k, pa.string())) for k in self.keep]
        for head, names in self.label_names.items():
            fields.append(pa.field(head, pa.string()))
            fields += [pa.field(f"{head}.{n}", pa.float32()) for n in names]
        return pa.schema(fields)

    def commit(self) -> None:
        """Finish: close the file (an input with no rows gives an empty table) and rename it."""
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.tmp, self._schema())
        self.writer.close()
        self._rename()

    def abort(self) -> None:
        """Give up: the temporary file is removed."""
        if self.writer is not None:
            self.writer.close()
        self._remove()


def _fits(value: object, kind: pa.DataType | None) -> bool:
    try:
        pa.scalar(value, type=kind)
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return False
    return True


def open_writer(
    fmt: PredictFormat, output: str, label_names: Mapping[str, Sequence[str]], keep: Sequence[str]
) -> JsonlWriter | ParquetOutWriter:
    """The writer of ``output`` in ``fmt`` (``jsonl`` or ``parquet``); a ``keep`` column named like one of
    the output's own columns is an error."""
    _check_columns(fmt, keep, label_names)
    if fmt == PredictFormat.parquet:
        return ParquetOutWriter(output, label_names, keep)
    return JsonlWriter(output, label_names, keep)


def write_records(records: list[dict[str, object]], output: str) -> None:
    """One JSON line per record (UTF-8) to ``output`` (``-`` is stdout)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    if output == "-":
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()
    else:
        Path(output).write_bytes(text)


def run_predict(cfg: PredictConfig) -> int:
    """Stream ``cfg.input`` through the checkpoint's heads into ``cfg.output`` (see the module
    docstring) and return the number of rows written. Bad input in the first chunk fails before the
    model loads; a failure later removes the temporary output."""
    backend = Backend(cfg.backend)
    if backend == Backend.datasets:
        raise MtlError("backend=datasets is weak.backend's; mtl-predict runs backend=local or backend=ray")
    in_fmt = input_format(cfg.input, cfg.input_format)
    out_fmt = output_format(cfg.output, cfg.output_format)
    keep = list(cfg.keep)
    rows = cfg.ray.shard_rows if backend == Backend.ray else cfg.chunk_rows
    with contextlib.closing(read_chunks(cfg.input, in_fmt, cfg.text_field, keep, rows)) as chunks:
        first = next(chunks, None)  # bad input fails at once, before the model loads
        stream = itertools.chain([first] if first is not None else [], chunks)
        return _predict_stream(cfg, stream, in_fmt, out_fmt, keep)


def _predict_stream(
    cfg: PredictConfig,
    stream: Iterator[Chunk],
    in_fmt: PredictFormat,
    out_fmt: PredictFormat,
    keep: list[str],
) -> int:
    labels, _ = checkpoint_labels(cfg.checkpoint)
    heads = check_heads(list(cfg.heads), labels)
    label_names = {h: labels[h] for h in heads}
    _check_columns(out_fmt, keep, label_names)
    results: Iterator[tuple[Chunk, Probabilities]]
    if cfg.backend == Backend.local:
        model, tokenizer, _, info = load_checkpoint(cfg.checkpoint)
        if torch.cuda.is_available():
            model = model.to("cuda")
        results = local_predict(
            stream, model, tokenizer, heads, batch_size=cfg.batch_size, max_length=int(info["max_length"])
        )
    else:
        results = ray_predict(stream, cfg.checkpoint, heads, cfg.ray, batch_size=cfg.batch_size)
    total = count_rows(cfg.input, in_fmt) if cfg.progress else None
    writer = open_writer(out_fmt, cfg.output, label_names, keep)
    written = 0
    with tqdm(
        total=total,
        unit=" rows",
        file=sys.stderr,
        disable=not cfg.progress,
        desc="mtl-predict",
        mininterval=0.5,
    ) as bar:
        try:
            for chunk, probs in results:
                writer.write(chunk, probs)
                written += len(chunk.texts)
                bar.update(len(chunk.texts))
        except BaseException:
            writer.abort()
            raise
        writer.commit()
    return written


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="predict")
@user_errors
def main(cfg: DictConfig) -> None:
    typed = OmegaConf.to_object(cfg)
    assert isinstance(typed, PredictConfig)
    try:
        run_predict(typed)
    except BrokenPipeError:  # standard output's reader went away (| head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
