"""Refusals in the admin API's own terms. The decisions behind the API are the CLI's (one decide
path for both), and their messages name CLI flags and commands (`--rpm`, `shieldes key list`); an
API client sent JSON fields and calls routes, so the API names those instead. Pure text rewriting
of the messages the decisions are known to produce; the CLI in remote mode asks for its own words
(header CLI_WORDING), so a refusal reads the same whether it went through the API or not."""

from __future__ import annotations

import re
from collections.abc import Callable

# Sent by `shieldes` in remote mode: keep the messages as the CLI prints them in direct mode.
CLI_WORDING = "Shieldes-Wording"

# Whole phrases first (where a field is not simply put in place of a flag), then flags one by one.
_PHRASES: tuple[tuple[str, str], ...] = (
    ("pass --models with a comma-separated list, e.g. gpt-4o,gpt-4o-mini",
     'send `models` as a non-empty list, e.g. ["gpt-4o", "gpt-4o-mini"]'),
    ("use --responses translate", 'send "responses": "translate"'),
    ("pass either --expires-in or --expires-at, not both", "send either `expires_in` or `expires_at`, not both"),
    ("see `shieldes key list`", "see GET /admin/v1/keys"),
    ("create it with `shieldes team create`", "create it with POST /admin/v1/teams"),
    ("see `shieldes provider list`", "see GET /admin/v1/providers"),
    ("see `shieldes model list`", "see GET /admin/v1/aliases"),
    ("see `shieldes admin-token list`", "see GET /admin/v1/admin-tokens"),
    ("see `shieldes session list`", "see GET /admin/v1/sessions"),
    ("(`shieldes audit log` shows every type)", "(GET /admin/v1/audit shows every type)"),
    ("register it with `shieldes mcp add` or see `shieldes mcp list`",
     "register it with POST /admin/v1/mcp-servers or see GET /admin/v1/mcp-servers"),
    ("see `shieldes mcp list`", "see GET /admin/v1/mcp-servers"),
    ("pass --url, or the new set of --header / --header-env",
     "send `url`, or the new set in `headers` / `header_envs`"),
    ("e.g. --mcp github,jira/search_issues", 'e.g. ["github", "jira/search_issues"]'),
    ("--header 'Authorization: Bearer TOKEN'", '{"Authorization": "Bearer TOKEN"}'),
    ("give the header with --header-env 'Name: VAR' instead", 'send it in `header_envs` ({"Name": "VAR"}) instead'),
    ("SHIELDES_ENCRYPTION_KEY; set it (`shieldes secrets generate-key` makes one)",
     "SHIELDES_ENCRYPTION_KEY on the node; set it (`base64:` and 32 random bytes in base64 make one)"),
    ("or use --api-key-env VAR instead", "or send `api_key_env` (a variable each node reads) instead"),
    ("`shieldes provider update --models`", "PATCH /admin/v1/providers/{name} with `models`"),
    ("(`shieldes model alias|remove`)", "(PUT or DELETE /admin/v1/aliases/{name})"),
    ("(`shieldes model alias`)", "(PUT /admin/v1/aliases/{name})"),
    ("`shieldes pricing list --source override`", "GET /admin/v1/pricing?source=override"),
    ("an alias needs at least one --target PROVIDER/MODEL[:WEIGHT]",
     "an alias needs at least one entry in `targets` (PROVIDER/MODEL[:WEIGHT])"),
    ("a --fallback is given twice", "an entry of `fallbacks` is given twice"),
    ("(e.g. --multiplier flex=0.5 --multiplier priority=2)", '(e.g. {"flex": 0.5, "priority": 2})'),
    ("e.g. --per-use file_search=0.0025 --per-use container=0.03; web searches: --per-web-search",
     'e.g. {"file_search": 0.0025, "container": 0.03}; web searches: `per_web_search`'),
    ("e.g. --modality audio_input=40 --modality audio_output=80, USD per 1M tokens",
     'e.g. {"audio_input": 40, "audio_output": 80}, USD per 1M tokens'),
)

# Phrases that carry a name: (pattern, replacement), before the flags.
_NAMED: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (re.compile(r"\(`shieldes mcp remove ([^`]+)`\)"), r"(DELETE /admin/v1/mcp-servers/\1)"),
    (re.compile(r"\(`shieldes provider add \.\.\. --models ([^`]+)` or "
                r"`shieldes provider update NAME --models \.\.\.`\)"),
     r"(POST /admin/v1/providers, or PATCH /admin/v1/providers/{name}, with \1 in `models`)"),
    (re.compile(r"\(`shieldes key update (.+) --expires-in 30d`, or --no-expiry\)"),
     r"(PATCH /admin/v1/keys/\1 with a later `expires_at`, or null for none)"),
    (re.compile(r"add ((?:--target \S+ ?)+) if"),
     lambda m: f"add {', '.join(m.group(1).replace('--target ', '').split())} to `targets` if"),
)

_FLAGS: dict[str, str] = {  # flag -> the words that name the field
    "--input price": "`input_per_1m`",
    "--output price": "`output_per_1m`",
    "--cache-read price": "`cache_read_per_1m`",
    "--cache-write price": "`cache_write_per_1m`",
    "--per-image price": "`per_image`",
    "--budget-period": "`budget_period`",
    "--budget": "`budget`",
    "--amount": "`amount_usd`",
    "--rpm": "`rpm`",
    "--tpm": "`tpm`",
    "--models": "`models`",
    "--base-url": "`base_url`",
    "--weight": "`weight`",
    "--expires-in": "`expires_in`",
    "--expires-at": "`expires_at`",
    "--team": "`team`",
    "--target": "`targets` entry",
    "--fallback": "`fallbacks` entry",
    "--responses": "`responses`",
    "--region": "`region`",
    "--api-key-env": "`api_key_env`",
    "--api-key": "`api_key`",
    "--api-version": "`api_version`",
    "--name": "`name`",
    "--url": "`url`",
    "--mcp": "`mcp`",
    "--header": "`headers` entry",
    "--header-env": "`header_envs` entry",
    "--multiplier": "`multipliers` entry",
    "--per-use": "`per_use` entry",
    "--modality": "`modalities` entry",
    "--per-web-search price": "`per_web_search`",
    "--per-web-search": "`per_web_search`",
    "--long-context-above": "`long_context.above_tokens`",
    "--long-input price": "`long_context.input_per_1m`",
    "--long-output price": "`long_context.output_per_1m`",
    "--long-cache-read price": "`long_context.cache_read_per_1m`",
    "--long-cache-write price": "`long_context.cache_write_per_1m`",
}
# the longest flag first where one starts another (--budget-period before --budget)
_FLAG = re.compile("|".join(re.escape(f) + r"(?![\w-])" for f in sorted(_FLAGS, key=len, reverse=True)))
# any other flag: a provider's settings (--project, --auth, ... and one no type has) are fields of
# the same name, with `_` for `-`
_OTHER_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")


def api_wording(message: str) -> str:
    """`message` with the CLI's flags and commands replaced by the API's fields and routes."""
    if "--" not in message and "`shieldes " not in message:
        return message
    for cli, api in _PHRASES:
        message = message.replace(cli, api)
    for pattern, named in _NAMED:
        message = pattern.sub(named, message)
    message = _FLAG.sub(lambda m: _FLAGS[m.group(0)], message)
    return _OTHER_FLAG.sub(lambda m: f"`{m.group(1).replace('-', '_')}`", message)
