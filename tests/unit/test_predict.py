"""``mtl-predict``: reading the input (one text per line, JSON lines, stdin, bad bytes) and writing one
output line per input line."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from mtl.checkpoint import save_checkpoint
from mtl.cli.predict import main, read_texts
from mtl.config import CONF_DIR, EncoderConfig, SourceConfig, TaskConfig
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


def _cfg(**overrides: str):  # type: ignore[no-untyped-def]
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
