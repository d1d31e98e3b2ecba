"""``mtl-predict``: texts (one per line, or JSON lines with a text field) -> JSON lines of every head's
prediction, one encoder pass per batch."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from mtl.checkpoint import load_checkpoint
from mtl.cli import user_errors
from mtl.config import CONF_DIR
from mtl.predict import predict, prediction_records


def read_texts(source: str, text_field: str) -> list[str]:
    """Lines of ``source`` (``-`` is stdin); a line that is a JSON object contributes its ``text_field``."""
    lines = sys.stdin.read().splitlines() if source == "-" else Path(source).read_text().splitlines()
    texts = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            if isinstance(obj, dict):
                if text_field not in obj:
                    raise SystemExit(
                        f"{source}:{n}: JSON line has no field {text_field!r} (set text_field=...)"
                    )
                texts.append(str(obj[text_field]))
                continue
        texts.append(line)
    return texts


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="predict")
@user_errors
def main(cfg: DictConfig) -> None:
    model, tokenizer, tasks, info = load_checkpoint(cfg.checkpoint)
    texts = read_texts(cfg.input, cfg.text_field)
    probs = predict(
        model,
        tokenizer,
        texts,
        list(cfg.heads) or None,
        batch_size=cfg.batch_size,
        max_length=int(info["max_length"]),
    )
    lines = [json.dumps(r, ensure_ascii=False) for r in prediction_records(texts, probs, tasks)]
    text = "\n".join(lines) + ("\n" if lines else "")
    if cfg.output == "-":
        sys.stdout.write(text)
    else:
        Path(cfg.output).write_text(text)


if __name__ == "__main__":
    main()
