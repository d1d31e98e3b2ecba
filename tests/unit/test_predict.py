"""``mtl-predict``: reading the input (one text per line, JSON lines, CSV, Parquet, stdin, bad bytes) in
chunks and writing one output row per input row (JSON lines, Parquet), progress, one-line errors."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from hydra import compose, initialize_config_dir

from mtl.checkpoint import load_checkpoint, save_checkpoint
from mtl.cli.predict import count_rows, main, read_chunks, read_texts, run_predict
from mtl.config import CONF_DIR, EncoderConfig, PredictConfig, PredictFormat, SourceConfig, TaskConfig
from mtl.heads import build_head
from mtl.model import MultitaskModel, build_encoder
from mtl.predict import predict, predict_records, prediction_records
from mtl.types import MtlError

TASKS = {
    "spam": TaskConfig(label_names=["ham", "spam"], source=SourceConfig(format="wrench", path="/x")),
    "topic": TaskConfig(label_names=["a", "b", "c"], source=SourceConfig(format="csv", path="/y.csv")),
}
INPUT = [
    "win cash now",
    "",
    "   ",
    '{"text": "", "id": 1}',
    '{"text": null}',
    '{"text": " \\t"}',
    '{"text": "hello how are you today"}',
    "{not json, a text}",
]
TEXTS = ["win cash now", "", "   ", "", "", " \t", "hello how are you today", "{not json, a text}"]


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


@pytest.fixture
def model_and_tok(tiny_encoder_dir: Path):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    enc, tok = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    heads = {t: build_head(32, len(c.label_names), c.head) for t, c in TASKS.items()}
    return MultitaskModel(enc, heads).eval(), tok


def test_read_texts_keeps_one_text_per_line_blank_ones_included(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("\n".join(INPUT) + "\n")
    assert read_texts(str(path), "text") == TEXTS


def test_read_texts_from_stdin_strips_bom_and_crlf(monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, b"\xef\xbb\xbfwin cash now\r\n\r\n" + '{"text": "caf\u00e9\\r"}\r\n'.encode())
    assert read_texts("-", "text") == ["win cash now", "", "caf\u00e9\r"]  # a \r inside JSON is the text's


def test_invalid_utf8_on_stdin_names_stdin_line_byte_offset_and_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    _stdin(monkeypatch, b"fine\ncaf\xe9 au lait\n")
    with pytest.raises(MtlError) as err:
        read_texts("-", "text")
    assert str(err.value) == (
        "<stdin>:2: not valid UTF-8 (byte 0xe9 at byte offset 8, column 4); re-encode the input as UTF-8, "
        "e.g. iconv -f latin1 -t utf-8"
    )


def test_json_line_without_the_text_field_names_file_line_and_setting(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(MtlError) as err:
        read_texts(str(path), "text")
    assert str(err.value) == (
        f"{path}:2: JSON line has no field 'text' (fields there: ['body']); "
        "set text_field=... to the field holding the text"
    )
    with pytest.raises(MtlError, match=r"input file '.*nope\.txt' does not exist \(set input=PATH"):
        read_texts(str(tmp_path / "nope.txt"), "text")
    path.write_text('{"text": "\\ud800 lone"}\n')
    with pytest.raises(MtlError, match=r"in\.jsonl:1: field 'text' holds an unpaired surrogate escape"):
        read_texts(str(path), "text")


def test_predict_records_answer_every_text_in_place_and_skip_blank_ones(
    model_and_tok, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    seen: list[list[str]] = []
    real = model.predict

    def spy(texts, *args, **kw):  # type: ignore[no-untyped-def]
        seen.append(list(texts))
        return real(texts, *args, **kw)

    monkeypatch.setattr(model, "predict", spy)
    records = predict_records(model, tok, TEXTS, TASKS, max_length=16)
    assert [r["text"] for r in records] == TEXTS  # one record per text, in order, text as given
    assert [r["predictions"] is None for r in records] == [False, True, True, True, True, True, False, False]
    kept = [TEXTS[0], TEXTS[6], TEXTS[7]]
    assert seen == [kept]  # blank texts never reach the model
    monkeypatch.undo()
    alone = prediction_records(kept, predict(model, tok, kept, max_length=16), TASKS)
    assert [records[0], records[6], records[7]] == alone
    assert set(alone[0]["predictions"]) == {"spam", "topic"}  # type: ignore[arg-type]
    monkeypatch.setattr(model, "predict", spy)
    assert predict_records(model, tok, ["", " "], TASKS, ["spam"]) == [
        {"text": "", "predictions": None},
        {"text": " ", "predictions": None},
    ]
    assert len(seen) == 1  # nothing to predict: no model call
    with pytest.raises(
        MtlError, match=r"no head for task\(s\) \['sms'\] .* heads= to some of \['spam', 'topic'\]"
    ):
        predict_records(model, tok, TEXTS, TASKS, ["spam", "sms"])


def _cfg(**overrides: object):  # type: ignore[no-untyped-def]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("predict", [f"{k}={v}" for k, v in overrides.items()])


def test_mtl_predict_writes_one_output_line_per_input_line(model_and_tok, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model, tok = model_and_tok
    save_checkpoint(tmp_path / "ck", model, tok, TASKS, max_length=16)
    (tmp_path / "in.txt").write_bytes(("\r\n".join(INPUT) + "\r\n").encode())
    main(
        _cfg(
            checkpoint=tmp_path / "ck",
            input=tmp_path / "in.txt",
            output=tmp_path / "out.jsonl",
            heads="[spam]",
        )
    )
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in out] == TEXTS
    assert [r["predictions"] is None for r in out] == [False, True, True, True, True, True, False, False]
    assert set(out[0]["predictions"]) == {"spam"}
    probs = out[6]["predictions"]["spam"]["probs"]
    assert set(probs) == {"ham", "spam"} and abs(sum(probs.values()) - 1) < 1e-5


def test_mtl_predict_reports_bad_input_as_one_error_line_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.txt").write_bytes(b"ok\n\xff\n")
    with pytest.raises(SystemExit) as exit_:
        main(_cfg(checkpoint=tmp_path / "no-checkpoint-here", input=tmp_path / "in.txt"))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: {tmp_path / 'in.txt'}:2: not valid UTF-8 (byte 0xff at byte offset 3, column 1); "
        f"re-encode the input as UTF-8, e.g. iconv -f latin1 -t utf-8 {tmp_path / 'in.txt'} > fixed.txt\n"
    )


# --- streaming: formats, chunks, Parquet output, progress, errors -------------------------------------

ROWS = [  # (id, text): blank and whitespace texts included
    (10, "win cash now"),
    (11, ""),
    (12, "hello how are you today"),
    (13, "   "),
    (14, "see you at lunch tomorrow"),
    (15, "great video, love this song"),
    (16, "café «thanks» for the quick help"),
]


@pytest.fixture(scope="module")
def checkpoint(tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved two-head checkpoint (spam: 2 classes, topic: 3) on the tiny BERT."""
    torch.manual_seed(0)
    enc, tok = build_encoder(EncoderConfig(name_or_path=str(tiny_encoder_dir)))
    heads = {t: build_head(32, len(c.label_names), c.head) for t, c in TASKS.items()}
    return save_checkpoint(
        tmp_path_factory.mktemp("predict") / "ck",
        MultitaskModel(enc, heads).eval(),
        tok,
        TASKS,
        max_length=16,
    )


def _write_inputs(folder: Path) -> dict[str, Path]:
    """ROWS as text lines, JSON lines, CSV and Parquet (id, text)."""
    paths = {f: folder / f"in.{f}" for f in ("txt", "jsonl", "csv", "parquet")}
    paths["txt"].write_text("".join(t + "\n" for _, t in ROWS), encoding="utf-8")
    paths["jsonl"].write_text(
        "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in ROWS), encoding="utf-8"
    )
    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([("id", "text"), *ROWS])
    table = pa.table({"id": [i for i, _ in ROWS], "text": [t for _, t in ROWS]})
    pq.write_table(table, paths["parquet"], row_group_size=2)
    return paths


def _run(checkpoint: Path, **overrides: object) -> None:
    main(_cfg(checkpoint=checkpoint, progress="false", **{k: str(v) for k, v in overrides.items()}))


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def _close(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    """Same rows, texts and labels; probabilities within one unit of their 6th decimal (other chunks pad
    differently: values within 1e-7 can round apart)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x["text"] == y["text"]
        assert (x["predictions"] is None) == (y["predictions"] is None)
        for head, p in (x["predictions"] or {}).items():
            q = y["predictions"][head]
            assert p["label"] == q["label"] and p["probs"].keys() == q["probs"].keys()
            assert all(round(abs(p["probs"][c] - q["probs"][c]), 9) <= 1e-6 for c in p["probs"])


@pytest.fixture(scope="module")
def expected(checkpoint: Path) -> list[dict[str, Any]]:
    """``predict_records`` of ROWS' texts, all at once in memory: what every streamed run must give."""
    model, tok, tasks, _ = load_checkpoint(checkpoint)
    return predict_records(model, tok, [t for _, t in ROWS], tasks, max_length=16)


@pytest.mark.parametrize("fmt", ["txt", "jsonl", "csv", "parquet"])
def test_every_input_format_streams_one_row_per_input_row_in_order(
    checkpoint: Path, expected: list[dict[str, Any]], tmp_path: Path, fmt: str
) -> None:
    path = _write_inputs(tmp_path)[fmt]
    keep = "[]" if fmt == "txt" else "[id]"
    _run(checkpoint, input=path, output=tmp_path / "out.jsonl", chunk_rows=3, keep=keep)
    out = _jsonl(tmp_path / "out.jsonl")
    _close(out, expected)  # chunks of 3 rows: the same rows as one in-memory pass
    assert [r["predictions"] is None for r in out] == [False, True, False, True, False, False, False]
    if fmt != "txt":  # keep columns come first, typed as the input has them (CSV: strings)
        assert [list(r)[:2] for r in out] == [["id", "text"]] * len(ROWS)
        assert [r["id"] for r in out] == [str(i) if fmt == "csv" else i for i, _ in ROWS]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file


def test_parquet_output_is_flat_and_typed_one_row_group_per_chunk(
    checkpoint: Path, expected: list[dict[str, Any]], tmp_path: Path
) -> None:
    paths = _write_inputs(tmp_path)
    _run(checkpoint, input=paths["parquet"], output=tmp_path / "out.parquet", chunk_rows=3, keep="[id]")
    pf = pq.ParquetFile(tmp_path / "out.parquet")
    assert pf.metadata.num_row_groups == 3  # 7 rows in chunks of 3
    table = pf.read()
    assert table.schema == pa.schema(
        [
            ("text", pa.string()),
            ("id", pa.int64()),
            ("spam", pa.string()),
            ("spam.ham", pa.float32()),
            ("spam.spam", pa.float32()),
            ("topic", pa.string()),
            ("topic.a", pa.float32()),
            ("topic.b", pa.float32()),
            ("topic.c", pa.float32()),
        ]
    )
    rows = table.to_pylist()
    assert [r["text"] for r in rows] == [t for _, t in ROWS] and [r["id"] for r in rows] == [
        i for i, _ in ROWS
    ]
    for row, record in zip(rows, expected, strict=True):
        if record["predictions"] is None:
            assert all(row[c] is None for c in table.column_names[2:])  # blank text: null predictions
            continue
        for head, pred in record["predictions"].items():
            assert row[head] == pred["label"]
            assert all(abs(row[f"{head}.{c}"] - p) <= 1e-6 for c, p in pred["probs"].items())


def test_csv_fields_of_any_length_with_line_breaks_bom_and_crlf(checkpoint: Path, tmp_path: Path) -> None:
    long = "win cash now " * 20_000  # 260k characters: above the csv module's default field limit
    data = '\ufefftext,id\r\n"hello, how are you\r\ntoday",1\r\n\r\n' + f"{long},2\r\n" + '"",3\r\n'
    (tmp_path / "in.csv").write_bytes(data.encode("utf-8"))
    _run(checkpoint, input=tmp_path / "in.csv", output=tmp_path / "out.jsonl", keep="[id]", chunk_rows=2)
    out = _jsonl(tmp_path / "out.jsonl")
    assert [(r["id"], r["text"]) for r in out] == [
        ("1", "hello, how are you\r\ntoday"),
        ("2", long),
        ("3", ""),
    ]
    assert [r["predictions"] is None for r in out] == [False, False, True]  # a blank line is not a row


def test_lines_are_read_lazily_one_chunk_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b"".join(b"text number %d\n" % i for i in range(50_000))
    _stdin(monkeypatch, data)
    chunks = read_chunks("-", "lines", chunk_rows=10)
    first = next(chunks)
    assert first.texts == [f"text number {i}" for i in range(10)] and (first.index, first.start) == (0, 0)
    assert sys.stdin.buffer.tell() == len(b"".join(b"text number %d\n" % i for i in range(10)))
    second = next(chunks)
    assert (second.index, second.start, second.texts[0]) == (1, 10, "text number 10")
    assert first.describe() == "shard 0 (rows 1-10 of <stdin>)"


def test_progress_bar_on_stderr_and_only_predictions_on_stdout(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stdin(monkeypatch, "".join(t + "\n" for _, t in ROWS).encode())
    main(_cfg(checkpoint=checkpoint, chunk_rows=3))
    out, err = capsys.readouterr()
    assert len([json.loads(x) for x in out.splitlines()]) == len(ROWS)
    assert err.endswith("\n") and "mtl-predict: 7 rows [" in err and " rows/s]" in err
    _stdin(monkeypatch, b"win cash now\n")
    main(_cfg(checkpoint=checkpoint, progress="false"))
    out, err = capsys.readouterr()
    assert err == "" and json.loads(out)["text"] == "win cash now"


def test_count_rows_for_the_progress_total(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path)
    assert count_rows(str(paths["txt"]), PredictFormat.lines) == 7
    assert count_rows(str(paths["parquet"]), PredictFormat.parquet) == 7
    assert count_rows(str(paths["csv"]), PredictFormat.csv) is None  # rows may span lines
    (tmp_path / "x.txt").write_bytes(b"a\nb")  # no final line end
    assert count_rows(str(tmp_path / "x.txt"), PredictFormat.lines) == 2


def test_a_failure_mid_stream_leaves_the_old_output_and_no_temporary_file(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in.txt").write_bytes(b"a\nb\nc\nd\ne\xff\nf\n")
    for name in ("out.jsonl", "out.parquet"):
        (tmp_path / name).write_text("old")
        with pytest.raises(SystemExit):
            _run(checkpoint, input=tmp_path / "in.txt", output=tmp_path / name, chunk_rows=2)
        assert "in.txt:5: not valid UTF-8 (byte 0xff at byte offset 9, column 2)" in capsys.readouterr().err
        assert (tmp_path / name).read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl", "out.parquet"]


def test_any_other_suffix_reads_lines_and_writes_json_lines(checkpoint: Path, tmp_path: Path) -> None:
    (tmp_path / "in.dat").write_text('hi there\n\n{"text": "from json"}\n')
    _run(checkpoint, input=str(tmp_path / "in.dat"), output=str(tmp_path / "out.txt"))
    records = [json.loads(line) for line in (tmp_path / "out.txt").read_text().splitlines()]
    assert [r["text"] for r in records] == ["hi there", "", "from json"]
    assert records[1]["predictions"] is None and records[0]["predictions"] is not None


@pytest.mark.parametrize(
    ("files", "overrides", "message"),
    [
        (
            {"in.csv": "body,id\nhi,1\n"},
            {},
            "{d}/in.csv: no column 'text' (columns: ['body', 'id']); set text_field= to the column holding",
        ),
        ({"in.csv": "text,id\nhi,1\nho,2,3\n"}, {}, "{d}/in.csv:3: 3 fields where the header has 2; quote"),
        (
            {"in.csv": "text,id\nhi,1\n"},
            {"keep": "[id,idx]"},
            "{d}/in.csv: keep column(s) ['idx'] do not exist",
        ),
        (
            {"in.parquet": None},
            {"keep": "[row]"},
            "{d}/in.parquet: keep column(s) ['row'] do not exist (columns",
        ),
        ({"in.parquet": None}, {"text_field": "id"}, "{d}/in.parquet: column 'id' holds int64, not text"),
        (
            {"in.jsonl": '{"text": "a"}\nplain text\n'},
            {},
            "{d}/in.jsonl:2: not JSON (Expecting value, column 1)",
        ),
        (
            {"in.jsonl": '{"text": "a", "id": 1}\n{"text": "b"}\n'},
            {"keep": "[id]"},
            "{d}/in.jsonl:2: JSON line",
        ),
        (
            {"in.txt": "a\n"},
            {"keep": "[id]"},
            "keep=['id'] needs an input with columns (jsonl, csv or parquet)",
        ),
        (
            {"in.txt": "a\n"},
            {"output": "-", "output_format": "parquet"},
            "Parquet output cannot go to standard",
        ),
        (
            {"in.txt": "a\n"},
            {"output_format": "csv"},
            "output_format=csv is an input format; mtl-predict writes",
        ),
        ({"in.csv": "text\na\n"}, {"keep": "[text]"}, "keep column(s) ['text'] clash with the output's own"),
        ({"in.txt": "a\n"}, {"backend": "datasets"}, "backend=datasets is weak.backend's; mtl-predict runs"),
    ],
)
def test_bad_input_is_one_error_line_naming_file_and_row(
    checkpoint: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    files: dict[str, str | None],
    overrides: dict[str, str],
    message: str,
) -> None:
    for name, text in files.items():
        if text is None:  # the Parquet file of ROWS (id: int64, text)
            pq.write_table(
                pa.table({"id": [i for i, _ in ROWS], "text": [t for _, t in ROWS]}), tmp_path / name
            )
        else:
            (tmp_path / name).write_text(text)
    settings = {"input": tmp_path / next(iter(files)), "output": tmp_path / "out.jsonl", **overrides}
    with pytest.raises(SystemExit) as exit_:
        _run(checkpoint, **{k: str(v).format(d=tmp_path) for k, v in settings.items()})
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + message.format(d=tmp_path)) and err.count("\n") == 1
    assert not (tmp_path / "out.jsonl").exists()


def test_keep_values_that_change_type_in_parquet_output_name_the_row(
    checkpoint: Path, tmp_path: Path
) -> None:
    (tmp_path / "in.jsonl").write_text(
        '{"text": "a", "id": 1}\n{"text": "b", "id": 2}\n{"text": "c", "id": "x"}\n'
    )
    cfg = PredictConfig(
        checkpoint=str(checkpoint),
        input=str(tmp_path / "in.jsonl"),
        output=str(tmp_path / "o.parquet"),
        keep=["id"],
        chunk_rows=2,
        progress=False,
    )
    with pytest.raises(
        MtlError, match=r"in\.jsonl: row 3: keep column 'id' holds 'x', which does not fit .* int64"
    ):
        run_predict(cfg)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def test_checkpoint_lf_votes_its_head_and_its_fingerprint_follows_the_weights(
    checkpoint: Path, tmp_path: Path
) -> None:
    import shutil

    from datasets.fingerprint import Hasher

    from mtl.weak import checkpoint_lf

    texts = ["win cash now", "see you at lunch", "subscribe to my channel"]
    model, *_ = load_checkpoint(checkpoint)
    expected_votes = model.predict(texts, ["topic"])["topic"].argmax(1).tolist()
    lf = checkpoint_lf("topic_model", checkpoint, "topic")
    assert lf.vote_batch([{"text": t} for t in texts]) == expected_votes
    with pytest.raises(MtlError, match=r"has no head 'nosuch'; heads: \['spam', 'topic'\]"):
        checkpoint_lf("x", checkpoint, "nosuch")
    # retrained in place: the LF (and so every cache keyed on it) changes with the weights
    copy = tmp_path / "ckpt"
    shutil.copytree(checkpoint, copy)
    before = Hasher.hash(checkpoint_lf("topic_model", copy, "topic"))
    assert Hasher.hash(checkpoint_lf("topic_model", copy, "topic")) == before
    head = copy / "heads" / "topic.safetensors"
    head.write_bytes(head.read_bytes() + b" ")
    assert Hasher.hash(checkpoint_lf("topic_model", copy, "topic")) != before
