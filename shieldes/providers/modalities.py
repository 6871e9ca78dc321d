"""The audio and image tokens an upstream reports apart, as TokenUsage.modal pairs (state.MODALITIES'
kinds), so each is billed at its own price: OpenAI's chat `prompt_tokens_details.audio_tokens` and
`completion_tokens_details.audio_tokens`, the image and speech APIs' `input_tokens_details`
(`image_tokens`, `audio_tokens`) and `output_tokens_details`, Gemini's `promptTokensDetails`,
`cacheTokensDetails`, `toolUsePromptTokensDetails` and `candidatesTokensDetails` by `modality`.
Text, video and document tokens are not listed: they cost the text price."""

from __future__ import annotations

from typing import Any

# (field, its kind in the input group, in the output group)
_OPENAI_KINDS = (("audio_tokens", "audio_input", "audio_output"), ("image_tokens", "image_input", "image_output"))
_GEMINI_KINDS = {"AUDIO": "audio", "IMAGE": "image"}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _pairs(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, n) for k, n in counts.items() if n > 0))


def openai_modal(usage: dict[str, Any], input_group: str, output_group: str) -> tuple[tuple[str, int], ...]:
    """From an OpenAI usage object: `input_group` is `prompt_tokens_details` (chat) or
    `input_tokens_details` (images, speech, transcriptions; `input_token_details` in some answers),
    `output_group` likewise. Every answer has these groups and most report zeros in them: nothing
    is built for a zero."""
    details = usage.get(input_group)
    if not isinstance(details, dict):
        details = usage.get(input_group.replace("tokens_details", "token_details"))
    output = usage.get(output_group)
    if not ((isinstance(details, dict) and (details.get("audio_tokens") or details.get("image_tokens")))
            or (isinstance(output, dict) and (output.get("audio_tokens") or output.get("image_tokens")))):
        return ()  # all zeros, or none reported: the common text answer
    pairs: list[tuple[str, int]] = []
    for place, group in ((1, details), (2, output)):
        if isinstance(group, dict):
            for kinds in _OPENAI_KINDS:
                n = group.get(kinds[0])
                if n and type(n) is int and n > 0:  # (a bool is no count)
                    pairs.append((kinds[place], n))
    return tuple(sorted(pairs))


def _by_modality(details: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in details if isinstance(details, list) else []:
        kind = _GEMINI_KINDS.get(str(d.get("modality"))) if isinstance(d, dict) else None
        if kind is not None:
            out[kind] = out.get(kind, 0) + _count(d.get("tokenCount"))
    return out


def gemini_modal(meta: dict[str, Any]) -> tuple[tuple[str, int], ...]:
    """From Gemini's usageMetadata: the prompt's (its tool-use prompt's too) audio and image tokens,
    the cached ones among them, and the candidates' (thoughts are text)."""
    counts: dict[str, int] = {}
    for field in ("promptTokensDetails", "toolUsePromptTokensDetails"):
        for kind, n in _by_modality(meta.get(field)).items():
            counts[f"{kind}_input"] = counts.get(f"{kind}_input", 0) + n
    for kind, n in _by_modality(meta.get("cacheTokensDetails")).items():
        counts[f"{kind}_cache_read"] = n
    for kind, n in _by_modality(meta.get("candidatesTokensDetails")).items():
        counts[f"{kind}_output"] = n
    return _pairs(counts)
