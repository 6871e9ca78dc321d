"""Read a source file, tell Bifrost, LiteLLM and a shieldes export apart, and parse it into an ImportSpec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shieldes.importers.bifrost import parse_bifrost
from shieldes.importers.litellm import parse_litellm
from shieldes.importers.litellm_keys import looks_like_litellm_keys
from shieldes.importers.native import looks_like_shieldes, parse_shieldes
from shieldes.importers.spec import ImportRejected, ImportSpec

FORMATS = ("auto", "bifrost", "litellm", "shieldes")


def load_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ImportRejected(f"cannot read {path}: {exc.strerror or exc}; check the path") from None
    except UnicodeDecodeError:
        msg = (f"{path} is not UTF-8 text; pass a Bifrost config.json, a LiteLLM config.yaml or a "
               "`shieldes config export` file")
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


SHIELDES_EXPORT_AS_OTHER = (
    "this is a `shieldes config export` file (the shieldes format), not a {fmt} config; import it with "
    "--format shieldes (or the default --format auto)"
)


def detect_format(doc: Any) -> str:
    if looks_like_shieldes(doc):
        return "shieldes"
    if isinstance(doc, dict):
        if isinstance(doc.get("model_list"), list) or looks_like_litellm_keys(doc):
            return "litellm"
        if isinstance(doc.get("providers"), dict):
            return "bifrost"
    raise ImportRejected(
        "cannot tell the file's format: expected a Bifrost config.json (a \"providers\" map), a "
        "LiteLLM config.yaml (a \"model_list\"), LiteLLM's keys (GET /key/list: \"keys\") or a "
        "`shieldes config export` file (\"format\": \"shieldes\"); "
        "pass --format to say which"
    )


def parse(doc: Any, fmt: str) -> tuple[str, ImportSpec]:
    if fmt == "auto":
        fmt = detect_format(doc)
    elif fmt in ("bifrost", "litellm") and looks_like_shieldes(doc):
        raise ImportRejected(SHIELDES_EXPORT_AS_OTHER.format(fmt=fmt))
    if fmt == "shieldes":
        return fmt, parse_shieldes(doc)
    if fmt == "bifrost":
        return fmt, parse_bifrost(doc)
    if fmt == "litellm":
        return fmt, parse_litellm(doc)
    raise ImportRejected(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
