"""Read a source file, tell Bifrost from LiteLLM, and parse it into an ImportSpec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shieldes.importers.bifrost import parse_bifrost
from shieldes.importers.litellm import parse_litellm
from shieldes.importers.spec import ImportRejected, ImportSpec

FORMATS = ("auto", "bifrost", "litellm")


def load_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportRejected(f"cannot read {path}: {exc.strerror or exc}; check the path") from None
    except UnicodeDecodeError:
        msg = f"{path} is not UTF-8 text; pass a Bifrost config.json or a LiteLLM config.yaml"
        raise ImportRejected(msg) from None
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix the file"
            raise ImportRejected(msg) from None
    import yaml  # deferred: only LiteLLM imports need it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ImportRejected(f"{path} is not valid YAML{where}; fix the file") from None


# What `shieldes config export` (its own format) writes at the top level: lists, where Bifrost has a map.
SHIELDES_EXPORT_KEYS = ("providers", "aliases", "pricing", "teams", "keys")
SHIELDES_EXPORT_REFUSED = (
    "this is a `shieldes config export` file (the shieldes format), which `config import` does not read: "
    "it imports Bifrost and LiteLLM configs. To copy providers to another shieldes, export them with "
    "`shieldes config export --format bifrost -o config.json` (names kept) or `--format litellm -o config.yaml` "
    "(prices and alias fallbacks kept) and import that file; teams and keys are not imported (create them "
    "with `shieldes team create` and `shieldes key create`)"
)


def is_shieldes_export(doc: Any) -> bool:
    return isinstance(doc, dict) and all(isinstance(doc.get(k), list) for k in SHIELDES_EXPORT_KEYS)


def detect_format(doc: Any) -> str:
    if isinstance(doc, dict):
        if isinstance(doc.get("model_list"), list):
            return "litellm"
        if isinstance(doc.get("providers"), dict):
            return "bifrost"
    if is_shieldes_export(doc):
        raise ImportRejected(SHIELDES_EXPORT_REFUSED)
    raise ImportRejected(
        "cannot tell the file's format: expected a Bifrost config.json (a \"providers\" map) or a "
        "LiteLLM config.yaml (a \"model_list\"); pass --format to say which"
    )


def parse(doc: Any, fmt: str) -> tuple[str, ImportSpec]:
    if fmt == "auto":
        fmt = detect_format(doc)
    elif is_shieldes_export(doc):
        raise ImportRejected(SHIELDES_EXPORT_REFUSED)
    if fmt == "bifrost":
        return fmt, parse_bifrost(doc)
    if fmt == "litellm":
        return fmt, parse_litellm(doc)
    raise ImportRejected(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
