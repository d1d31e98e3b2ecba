"""``mtl-predict``: texts in, one JSON line of every head's prediction per input line out, one encoder
pass per batch.

The input (``input=PATH``, or ``-`` for standard input) is UTF-8, one text per line; a line that is a
JSON object contributes its ``text_field`` instead. Output line i answers input line i, always: a blank
or whitespace-only line, or a JSON line whose text is empty, null or whitespace, gets
``{"text": <its text>, "predictions": null}`` and does not go through the model. A UTF-8 byte order mark
at the start and CRLF line ends are stripped; bytes that are not UTF-8 are an error naming the line and
the byte offset.

Example:
    printf 'win cash now\\n\\nsee you at lunch\\n' | mtl-predict checkpoint=runs/x/checkpoint
    # 3 lines out; the second is {"text": "", "predictions": null}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mtl.checkpoint import load_checkpoint
from mtl.cli import user_errors
from mtl.config import CONF_DIR
from mtl.predict import predict_records
from mtl.types import MtlError

_BOM = b"\xef\xbb\xbf"


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
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        start = skip + e.start
        line = data.count(b"\n", 0, start) + 1
        column = start - (data.rfind(b"\n", 0, start) + 1) + 1
        example = (
            f"iconv -f latin1 -t utf-8 {name} > fixed.txt"
            if name != "<stdin>"
            else "iconv -f latin1 -t utf-8"
        )
        raise MtlError(
            f"{name}:{line}: not valid UTF-8 (byte 0x{data[start]:02x} at byte offset {start}, column "
            f"{column}); re-encode the input as UTF-8, e.g. {example}"
        ) from None
    lines = text.split("\n")  # not splitlines: \x0c, \x85 or \u2028 inside a text do not end a line
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_texts(source: str, text_field: str) -> list[str]:
    """One text per line of ``source`` (``-`` is stdin; see the module docstring), blank ones included:
    a line that is a JSON object contributes its ``text_field`` (``""`` when null), any other line
    itself. Errors (``MtlError``) name the source and line: bytes that are not UTF-8, a JSON line
    without ``text_field``, a missing file."""
    name = "<stdin>" if source == "-" else source
    if source == "-":
        data = sys.stdin.buffer.read()
    elif not Path(source).is_file():
        raise MtlError(
            f"input file {source!r} does not exist (set input=PATH, or input=- for standard input)"
        )
    else:
        data = Path(source).read_bytes()
    texts = []
    for n, line in enumerate(decode_lines(data, name), start=1):
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None  # a text that happens to start with a brace
            if isinstance(obj, dict):
                if text_field not in obj:
                    raise MtlError(
                        f"{name}:{n}: JSON line has no field {text_field!r} (fields there: {sorted(obj)}); "
                        "set text_field=... to the field holding the text"
                    )
                value = obj[text_field]
                line = "" if value is None else str(value)
                try:
                    line.encode("utf-8")
                except UnicodeEncodeError:  # "\ud800" escapes: no tokenizer takes them
                    raise MtlError(
                        f"{name}:{n}: field {text_field!r} holds an unpaired surrogate escape "
                        "(like \\ud800), which is not text; fix or drop that escape"
                    ) from None
        texts.append(line)
    return texts


def write_records(records: list[dict[str, object]], output: str) -> None:
    """One JSON line per record (UTF-8) to ``output`` (``-`` is stdout)."""
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    if output == "-":
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()
    else:
        Path(output).write_bytes(text)


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="predict")
@user_errors
def main(cfg: DictConfig) -> None:
    texts = read_texts(cfg.input, cfg.text_field)  # before the model loads: bad input fails at once
    model, tokenizer, tasks, info = load_checkpoint(cfg.checkpoint)
    records = predict_records(
        model,
        tokenizer,
        texts,
        tasks,
        list(cfg.heads) or None,
        batch_size=cfg.batch_size,
        max_length=int(info["max_length"]),
    )
    write_records(records, cfg.output)


if __name__ == "__main__":
    main()
