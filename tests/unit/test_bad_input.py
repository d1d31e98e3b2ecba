"""Bad input, property-based: the source readers (``read_rows``), label encoding (``label_index``,
``check_not_one_based``) and ``mtl-predict``'s ``read_texts`` on generated files with odd encodings
(latin-1 bytes in a UTF-8 file, a byte order mark), quoting, huge fields, empty rows, whitespace-only
texts, CRLF and LF, and labels of every type. Each case ends in the documented result or in an error
that names the file and the line, row or key."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

import datasets
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import mtl.sources
from mtl.cli.predict import read_texts
from mtl.config import SourceConfig, SplitConfig, TaskConfig
from mtl.data import check_not_one_based, label_index
from mtl.prepare import load_task_splits
from mtl.sources import DataError, RawRow, read_rows
from mtl.task import Task
from mtl.types import MtlError

# tmp_path is shared by a test's examples: each example overwrites the same files
examples = settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

BOM = b"\xef\xbb\xbf"
# characters that break naive readers: delimiters, quotes, line ends of every kind, a BOM inside a text
ODD = [*",;\"'\t\n\r {}[]\\\x00\x0b\x0c\x1c\x85\u2028\u2029\ufeff", "é", "€", "😀", "ß"]
texts = st.text(
    alphabet=st.one_of(st.sampled_from(ODD), st.characters(exclude_categories=["Cs"])), max_size=12
)
blank = st.sampled_from(["", " ", "\t", "  \n ", "\u3000"])  # empty or whitespace-only: dropped
huge = st.integers(131_073, 132_000).map(lambda n: "x" * n)  # over csv's default field size limit
cell_texts = st.one_of(texts, texts, texts, blank, huge)  # a huge field in some rows
labels = st.sampled_from(["neg", "pos", "0", "1", "1.0", "", "None"])


def _src(path: Path, fmt: str, **kw: Any) -> SourceConfig:
    return SourceConfig(format=fmt, path=str(path), **kw)  # type: ignore[arg-type]


def _expected(rows: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return [(t, y) for t, y in rows if t.strip()]


# ---------------------------------------------------------------------------------------------- round trips


@examples
@given(
    rows=st.lists(st.tuples(cell_texts, labels), max_size=8),
    terminator=st.sampled_from(["\n", "\r\n"]),
    quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]),
    bom=st.booleans(),
    blank_lines=st.booleans(),
)
def test_csv_written_by_csv_writer_reads_back_exactly_minus_empty_texts(
    tmp_path: Path, rows: list[tuple[str, str]], terminator: str, quoting: int, bom: bool, blank_lines: bool
) -> None:
    # csv.writer with lineterminator="\n" leaves a field holding "\r" unquoted (Python 3.11): that file
    # is ambiguous for any reader
    assume(terminator == "\r\n" or quoting == csv.QUOTE_ALL or not any("\r" in t for t, _ in rows))
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator=terminator, quoting=quoting)
    writer.writerow(["text", "label"])
    for row in rows:
        writer.writerow(row)
        if blank_lines:  # empty rows between the records
            buf.write(terminator + "  ,\t" + terminator)
    path = tmp_path / "d.csv"
    path.write_bytes((BOM if bom else b"") + buf.getvalue().encode("utf-8"))
    got = read_rows("t", _src(path, "csv"))["all"]
    assert [(r.text, r.label) for r in got] == _expected(rows)  # byte for byte, in order
    assert all(r.file == str(path) for r in got)


@examples
@given(
    rows=st.lists(
        st.tuples(st.one_of(texts, blank).map(lambda t: re.sub(r"[\t\r\n]", " ", t)), labels),
        max_size=8,
    ),
    terminator=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_tsv_reads_back_each_line_stripped_minus_empty_texts(
    tmp_path: Path, rows: list[tuple[str, str]], terminator: str, bom: bool
) -> None:
    """Plain TSV (no quoting): fields are stripped, and \\x0c, \\x85 or \\u2028 inside a text do not
    end its line (str.splitlines would split there)."""
    body = "".join(f"{t}\t{y}{terminator}" for t, y in rows)
    path = tmp_path / "d.tsv"
    path.write_bytes((BOM if bom else b"") + f"text\tlabel{terminator}{body}".encode())
    got = read_rows("t", _src(path, "tsv"))["all"]
    assert [(r.text, r.label) for r in got] == [(t.strip(), y.strip()) for t, y in rows if t.strip()]


json_labels = st.one_of(
    st.integers(-3, 5), st.sampled_from([1.0, 0.5, None, True]), st.sampled_from(["neg", "pos", "1"])
)


@examples
@given(
    rows=st.lists(st.tuples(st.one_of(cell_texts, st.none()), json_labels), max_size=8),
    terminator=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
    ascii_only=st.booleans(),
    blank_lines=st.booleans(),
)
def test_jsonl_reads_back_texts_and_raw_label_values(
    tmp_path: Path,
    rows: list[tuple[str | None, Any]],
    terminator: str,
    bom: bool,
    ascii_only: bool,
    blank_lines: bool,
) -> None:
    lines = [json.dumps({"text": t, "label": y}, ensure_ascii=ascii_only) for t, y in rows]
    sep = terminator * (2 if blank_lines else 1)
    path = tmp_path / "d.jsonl"
    path.write_bytes((BOM if bom else b"") + "".join(x + sep for x in lines).encode("utf-8"))
    got = read_rows("t", _src(path, "jsonl"))["all"]
    expected = _expected([("" if t is None else t, y) for t, y in rows])
    assert [(r.text, r.label) for r in got] == expected
    step = 2 if blank_lines else 1  # a row's line is its physical line in the file
    wanted = [1 + i * step for i, (t, _) in enumerate(rows) if t and t.strip()]
    assert [r.line for r in got] == wanted


@examples
@given(rows=st.lists(st.tuples(cell_texts, json_labels), max_size=6), bom=st.booleans())
def test_json_array_and_wrench_read_back_texts_labels_and_votes(
    tmp_path: Path, rows: list[tuple[str, Any]], bom: bool
) -> None:
    prefix = BOM if bom else b""
    (tmp_path / "d.json").write_bytes(
        prefix + json.dumps([{"text": t, "label": y} for t, y in rows]).encode()
    )
    got = read_rows("t", _src(tmp_path / "d.json", "json"))["all"]
    assert [(r.text, r.label) for r in got] == _expected(rows)
    # WRENCH: each row's votes name the row, so a shift between texts and votes would show
    wrench = {
        f"id{i}": {"data": {"text": t}, "label": y, "weak_labels": [i, -1]} for i, (t, y) in enumerate(rows)
    }
    (tmp_path / "train.json").write_bytes(prefix + json.dumps(wrench).encode())
    src = _src(tmp_path, "wrench", files={"train": ["train.json"]})
    got = read_rows("t", src)["train"]
    kept = [i for i, (t, _) in enumerate(rows) if t.strip()]
    assert [(r.text, r.extra["weak_labels"]) for r in got] == [(rows[i][0], [i, -1]) for i in kept]


def test_csv_tsv_and_jsonl_read_a_300000_character_text(tmp_path: Path) -> None:
    text = "word " * 59_999 + "last!"
    assert len(text) == 300_000
    (tmp_path / "d.csv").write_text(f'text,label\n"{text}",pos\nshort,neg\n')
    (tmp_path / "d.tsv").write_text(f"text\tlabel\n{text}\tpos\nshort\tneg\n")
    (tmp_path / "d.jsonl").write_text(json.dumps({"text": text, "label": "pos"}) + "\n")
    for fmt in ("csv", "tsv", "jsonl"):
        got = read_rows("t", _src(tmp_path / f"d.{fmt}", fmt))["all"]
        assert got[0].text == text and got[0].label == "pos", fmt


def test_crlf_and_lf_files_give_the_same_rows(tmp_path: Path) -> None:
    lf = {
        "csv": 'text,label\n"two\nlines",pos\nplain,neg\n\n',
        "tsv": "text\tlabel\nfirst\tpos\nplain\tneg\n",
        "jsonl": '{"text": "a", "label": 1}\n\n{"text": "b", "label": 0}\n',
    }
    for fmt, content in lf.items():
        (tmp_path / f"lf.{fmt}").write_bytes(content.encode())
        (tmp_path / f"crlf.{fmt}").write_bytes(content.replace("\n", "\r\n").encode())
        a = [(r.text, r.label, r.line) for r in read_rows("t", _src(tmp_path / f"lf.{fmt}", fmt))["all"]]
        b = [(r.text, r.label, r.line) for r in read_rows("t", _src(tmp_path / f"crlf.{fmt}", fmt))["all"]]
        assert [n for *_, n in a] == {"csv": [2, 4], "tsv": [2, 3], "jsonl": [1, 3]}[fmt]  # where each starts
        # inside a quoted csv field the line end is data and stays as written
        assert [(t.replace("\r\n", "\n"), y, n) for t, y, n in b] == a, fmt
        assert not any(t.endswith("\r") or y.endswith("\r") for t, y, _ in b if isinstance(y, str)), fmt


def test_bom_does_not_become_part_of_the_first_header_field(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes(BOM + b"text,label\r\nhello,pos\r\n")
    (tmp_path / "d.tsv").write_bytes(BOM + b"text\tlabel\nhello\tpos\n")
    (tmp_path / "d.jsonl").write_bytes(BOM + b'{"text": "hello", "label": "pos"}\n')
    (tmp_path / "d.json").write_bytes(BOM + b'[{"text": "hello", "label": "pos"}]')
    for fmt in ("csv", "tsv", "jsonl", "json"):
        got = read_rows("t", _src(tmp_path / f"d.{fmt}", fmt, encoding="UTF-8"))["all"]
        assert [(r.text, r.label) for r in got] == [("hello", "pos")], fmt


# ---------------------------------------------------------------------------------------------- bad bytes


def _write(fmt: str, folder: Path, rows: list[tuple[str, str]]) -> Path:
    """A well-formed file of ``rows`` in ``fmt``, as UTF-8 bytes."""
    if fmt == "csv":
        buf = io.StringIO(newline="")
        csv.writer(buf).writerows([("text", "label"), *rows])
        data = buf.getvalue()
    elif fmt == "tsv":
        data = "text\tlabel\n" + "".join(f"{t}\t{y}\n" for t, y in rows)
    elif fmt == "jsonl":
        data = "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows)
    elif fmt == "json":
        data = json.dumps([{"text": t, "label": y} for t, y in rows], indent=1)
    else:
        data = json.dumps(
            {str(i): {"data": {"text": t}, "label": y} for i, (t, y) in enumerate(rows)}, indent=1
        )
    path = folder / ("train.json" if fmt == "wrench" else f"d.{fmt}")
    path.write_bytes(data.encode("utf-8"))
    return path


@examples
@given(
    fmt=st.sampled_from(["csv", "tsv", "jsonl", "json", "wrench"]),
    rows=st.lists(
        st.tuples(st.text(alphabet="abcé€ ,\"'", min_size=1, max_size=6).map(lambda t: f"t{t}"), labels),
        min_size=1,
        max_size=6,
    ),
    where=st.floats(0, 1, exclude_max=True),
    bad=st.sampled_from([b"\xe9", b"\xff", b"\x80", b"\xc3(", b"\xed\xa0\x80"]),
)
def test_bytes_not_valid_in_the_encoding_name_file_line_and_fix(
    tmp_path: Path, fmt: str, rows: list[tuple[str, str]], where: float, bad: bytes
) -> None:
    """A latin-1 byte (or a broken or surrogate UTF-8 sequence) anywhere in a UTF-8 file."""
    path = _write(fmt, tmp_path, rows)
    data = path.read_bytes()
    text = data.decode("utf-8")
    cut = len(text[: int(where * len(text))].encode("utf-8"))  # a character boundary
    path.write_bytes(data[:cut] + bad + data[cut:])
    src = _src(
        tmp_path if fmt == "wrench" else path, fmt, files={"train": ["train.json"]} if fmt == "wrench" else {}
    )
    with pytest.raises(DataError) as err:
        read_rows("task_x", src)
    line = data.count(b"\n", 0, cut) + 1
    message = str(err.value)
    assert message.startswith(f"task 'task_x': {path} line {line}: byte 0x{bad[0]:02x} (byte offset {cut}")
    assert "is not valid utf-8" in message and "set source.encoding (e.g. latin-1 or cp1252)" in message


def test_latin1_file_reads_with_source_encoding_latin1(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes("text,label\ncafé crème,pos\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"d\.csv line 2: byte 0xe9 \(byte offset 14, column 4\)"):
        read_rows("t", _src(tmp_path / "d.csv", "csv"))
    got = read_rows("t", _src(tmp_path / "d.csv", "csv", encoding="latin-1"))["all"]
    assert [r.text for r in got] == ["café crème"]
    with pytest.raises(DataError, match=r"task 't': source.encoding 'latin-42' is not a known text encoding"):
        read_rows("t", _src(tmp_path / "d.csv", "csv", encoding="latin-42"))


# ---------------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize(
    ("fmt", "content", "message"),
    [
        (
            "jsonl",
            '{"text": "a", "label": 1}\n[1, 2]\n',
            r"d\.jsonl row 2: expected an object .* got \[1, 2\]",
        ),
        ("jsonl", '{"text": "a", "label": 1}\n{"text": "b",\n', r"d\.jsonl:2: not valid JSON"),
        ("json", '[{"text": "a", "label": 1},\n "just a string"]', r"d\.json row 1: expected an object"),
        ("json", '[{"text": "a", "label": 1},\n {"text": }]', r"d\.json line 2 column 11: not valid JSON"),
        ("json", '{"text": "a"}', r"d\.json: format 'json' expects a JSON array of objects"),
        (
            "jsonl",
            '{"text": "a", "label": 1}\n{"txt": "b", "label": 0}\n',
            r"text field 'text' .*/d\.jsonl row 2",
        ),
        (
            "csv",
            "text,label\nonly one field\n",
            r"label field 'label' .*/d\.csv row 2; fields there: \['text'\]",
        ),
        ("tsv", "text\tlabel\nno tab at the end", r"d\.tsv:2: record has fewer than 2 tab-separated fields"),
    ],
)
def test_malformed_records_are_named_by_file_and_row(
    tmp_path: Path, fmt: str, content: str, message: str
) -> None:
    path = tmp_path / f"d.{fmt}"
    path.write_text(content)
    with pytest.raises(DataError, match=f"task 't': .*{message}"):
        read_rows("t", _src(path, fmt))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "[1, 2]",
            r"train\.json: format 'wrench' expects a JSON object keyed by example id, got a JSON list",
        ),
        ('{"a": {"data": {"text": "x"}, "label": 0},\n "b": 7}', r"train\.json key 'b': expected an object"),
        ('{"a": {"data": "x", "label": 0}}', r"train\.json key 'a': expected an object with 'data'"),
        ('{"a": {"data": {"text": "x"}\n\n "label": 0}}', r"train\.json line 3 column 2: not valid JSON"),
    ],
)
def test_malformed_wrench_files_are_named_by_file_and_key(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "train.json").write_text(content)
    with pytest.raises(DataError, match=f"task 't': .*{message}"):
        read_rows("t", _src(tmp_path, "wrench", files={"train": ["train.json"]}))


def test_csv_module_errors_name_the_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d.csv").write_text("text,label\na,pos\nb,neg\n")
    real = csv.reader

    def failing(f: Any, **kw: Any) -> Any:  # a reader that fails on its third record
        reader = real(f, **kw)

        class Failing:
            @property
            def line_num(self) -> int:
                return reader.line_num

            def __iter__(self) -> Any:
                return self

            def __next__(self) -> list[str]:
                row = next(reader)
                if reader.line_num == 3:
                    raise csv.Error("field larger than field limit (131072)")
                return row

        return Failing()

    monkeypatch.setattr(mtl.sources.csv, "reader", failing)
    with pytest.raises(
        DataError, match=r"task 't': .*d\.csv line 3: not valid CSV \(field larger than field"
    ):
        read_rows("t", _src(tmp_path / "d.csv", "csv"))


# ---------------------------------------------------------------------------------------------- labels

NAMES = ["world", "sports", "business"]
K = len(NAMES)


def _valid_labels() -> st.SearchStrategy[tuple[Any, int]]:
    """(raw label, class id) for every form a class can take."""
    i = st.integers(0, K - 1)
    return st.one_of(
        i.map(lambda n: (NAMES[n], n)),
        i.map(lambda n: (f" {NAMES[n]}\t", n)),
        i.map(lambda n: (n, n)),
        i.map(lambda n: (float(n), n)),
        i.map(lambda n: (str(n), n)),
        i.map(lambda n: (f"{n}.0", n)),
        i.map(lambda n: (f" {n} ", n)),
        st.just(("sport", 1)),  # a label_map key
        st.just((7, 2)),  # a label_map key that is a number
        st.just((7.0, 2)),  # read as a float, it finds the key written as an integer
    )


def _invalid_labels() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([None, True, False, "", "  ", "nan", "inf", "-inf", "World", "1e9", "0x1"]),
        st.sampled_from([math.nan, math.inf, -math.inf, 0.5, 2.25, -1.0]),
        st.one_of(st.integers(max_value=-1), st.integers(min_value=K)).filter(lambda n: n != 7),
        st.text(alphabet="xyz", min_size=1, max_size=4),
    )


@examples
@given(
    valid=st.lists(_valid_labels(), max_size=10),
    invalid=st.lists(_invalid_labels(), max_size=3),
    pos=st.data(),
)
def test_label_index_encodes_every_form_of_a_class_and_names_the_row_of_anything_else(
    valid: list[tuple[Any, int]], invalid: list[Any], pos: st.DataObject
) -> None:
    encode = label_index("t", NAMES, {"sport": "sports", "7": "business"})
    for n, (raw, expected) in enumerate(valid):
        assert encode(RawRow("x", raw, "f.csv", n + 2, {})) == expected, raw
    for raw in invalid:
        row = pos.draw(st.integers(2, 10_000))
        with pytest.raises(DataError) as err:
            encode(RawRow("x", raw, "f.csv", row, {}))
        assert f"task 't': label {raw!r} in f.csv row {row} is not one of the task's label_names" in str(
            err.value
        )


one_based_forms = st.sampled_from([int, float, str, lambda n: f"{n}.0", lambda n: f" {n}"])


@examples
@given(values=st.lists(st.integers(1, K), min_size=1, max_size=12), form=one_based_forms)
def test_one_based_labels_fail_and_the_label_map_in_the_message_reads_them(
    values: list[int], form: Any
) -> None:
    rows = [RawRow("x", form(v), "ag.csv", i + 2, {}) for i, v in enumerate(values)]
    with pytest.raises(DataError) as err:
        check_not_one_based("ag", NAMES, {}, rows)
    message = str(err.value)
    seen = sorted(set(values))
    assert message.startswith("task 'ag': every label is a number and none is 0 (values seen: [")
    assert f"(values seen: {[form(n) for n in seen]})" in message  # each value as read, in order
    written = re.search(r"set source\.label_map: (\{.*?\}) in the task YAML", message)
    assert written is not None
    label_map = json.loads(written[1])
    assert label_map == {"1": "world", "2": "sports", "3": "business"}
    check_not_one_based("ag", NAMES, label_map, rows)  # with the map: no error
    encode = label_index("ag", NAMES, label_map)
    assert [encode(r) for r in rows] == [v - 1 for v in values]


@examples
@given(
    values=st.lists(st.integers(1, K), max_size=12),
    extra=st.sampled_from([0, "0", 0.0, "world", "sport", 9, None, True]),
    form=one_based_forms,
)
def test_labels_with_a_zero_a_name_or_an_outlier_are_not_taken_for_one_based(
    values: list[int], extra: Any, form: Any
) -> None:
    rows = [RawRow("x", form(v), "f.csv", i + 2, {}) for i, v in enumerate(values)]
    rows.append(RawRow("x", extra, "f.csv", 99, {}))
    check_not_one_based("t", NAMES, {"sport": "sports"}, rows)  # no error: label_index judges each row


# ---------------------------------------------------------------------------------------------- mtl-predict

plain_lines = texts.map(lambda t: re.sub(r"[\r\n]", " ", t)).filter(lambda t: not t.lstrip().startswith("{"))
json_values = st.one_of(texts, blank, st.none(), st.integers())


@examples
@given(
    items=st.lists(
        st.one_of(plain_lines, blank.map(lambda t: t.replace("\n", "")), json_values.map(lambda v: {"v": v})),
        max_size=10,
    ),
    terminator=st.sampled_from(["\n", "\r\n"]),
    final_newline=st.booleans(),
    bom=st.booleans(),
)
def test_read_texts_gives_one_text_per_input_line(
    tmp_path: Path, items: list[Any], terminator: str, final_newline: bool, bom: bool
) -> None:
    lines = [json.dumps({"id": 1, "body": x["v"]}) if isinstance(x, dict) else x for x in items]
    content = terminator.join(lines) + (terminator if final_newline and lines else "")
    path = tmp_path / "in.txt"
    path.write_bytes((BOM if bom else b"") + content.encode("utf-8"))
    expected = [("" if x["v"] is None else str(x["v"])) if isinstance(x, dict) else x for x in items]
    if lines and not final_newline and lines[-1] == "":
        expected.pop()  # "a\n" and "a\n" + "" are the same input: no line after the final line end
    assert read_texts(str(path), "body") == expected


@examples
@given(
    lines=st.lists(plain_lines, min_size=1, max_size=6),
    where=st.floats(0, 1),
    bad=st.sampled_from([b"\xe9", b"\xff", b"\x80"]),
    bom=st.booleans(),
)
def test_read_texts_names_source_line_and_byte_offset_of_invalid_utf8(
    tmp_path: Path, lines: list[str], where: float, bad: bytes, bom: bool
) -> None:
    text = "\n".join(lines)
    at = int(where * len(text))
    head = (BOM if bom else b"") + text[:at].encode("utf-8")
    path = tmp_path / "in.txt"
    path.write_bytes(head + bad + text[at:].encode("utf-8"))
    with pytest.raises(MtlError) as err:
        read_texts(str(path), "text")
    line, column = head.count(b"\n") + 1, len(head) - (head.rfind(b"\n") + 1) + 1
    assert str(err.value).startswith(
        f"{path}:{line}: not valid UTF-8 (byte 0x{bad[0]:02x} at byte offset {len(head)}, column {column}); "
        f"re-encode the input as UTF-8, e.g. iconv -f latin1 -t utf-8 {path}"
    )


# ---------------------------------------------------------------------------------------------- the cache


def _bad_task(tmp_path: Path) -> Task:
    (tmp_path / "d.csv").write_bytes(b"text,label\n" + b"".join(b"row %d,pos\n" % i for i in range(40)))
    src = _src(tmp_path / "d.csv", "csv")
    return Task("t", TaskConfig(label_names=["neg", "pos"], source=src, split=SplitConfig(dev=0.2, test=0.2)))


def test_data_error_while_preparing_leaves_no_prepared_folder(tmp_path: Path) -> None:
    task = _bad_task(tmp_path)
    with (tmp_path / "d.csv").open("ab") as f:
        f.write(b"caf\xe9,neg\n")
    with pytest.raises(DataError, match=r"d\.csv line 42"):
        load_task_splits(task, tmp_path / "cache")
    prepared = tmp_path / "cache" / "prepared"
    assert not prepared.exists() or not any(p.name.startswith("t-") for p in prepared.iterdir())


def test_failed_write_of_prepared_splits_leaves_no_half_written_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    task = _bad_task(tmp_path)

    def disk_full(self: datasets.DatasetDict, path: str, **kw: Any) -> None:
        Path(path, "train").mkdir(parents=True)
        Path(path, "train", "data-00000.arrow").write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(datasets.DatasetDict, "save_to_disk", disk_full)
    with pytest.raises(OSError, match="No space left"):
        load_task_splits(task, tmp_path / "cache")
    assert [p.name for p in (tmp_path / "cache" / "prepared").iterdir()] == []
    monkeypatch.undo()
    assert len(load_task_splits(task, tmp_path / "cache")["train"]) > 0  # the next run prepares it
