"""`shieldes pricing set|unset|list|import`: USD per 1M input/output tokens per model (or per model
pattern: `claude-opus-*`), used to cost usage. The shipped catalog is listed with `source: default`,
prices set here with `source: override`."""

from __future__ import annotations

from pathlib import Path

import click

from shieldes.cli.common import (
    actor,
    bounded_read,
    bounded_write,
    cli_context,
    json_option,
    open_store,
    read_config,
    remove_named,
    run,
    run_read,
    split_list,
    write,
)
from shieldes.cli.oneline import OneLineGroup, handle_errors
from shieldes.cli.output import emit
from shieldes.errors import CommandRejected
from shieldes.importers.apply import apply_import
from shieldes.importers.plan import Plan
from shieldes.importers.prices import parse_litellm_prices, plan_prices
from shieldes.importers.source import load_document
from shieldes.projections.shared_commands import SetPricing, UnsetPricing
from shieldes.projections.state import ConfigState, LongContext, Price
from shieldes.usage.catalog import long_context_from, price_rows


@click.group("pricing", cls=OneLineGroup)
def pricing_group() -> None:
    """Model prices."""


@pricing_group.command("set")
@click.argument("model")
@click.option("--input", "input_per_1m", type=float, required=True, metavar="USD_PER_1M",
              help="USD per 1M prompt tokens")
@click.option("--output", "output_per_1m", type=float, required=True, metavar="USD_PER_1M",
              help="USD per 1M completion tokens")
@click.option("--cache-read", "cache_read_per_1m", type=float, default=None, metavar="USD_PER_1M",
              help="USD per 1M prompt tokens read from the upstream's prompt cache (default: the input price)")
@click.option("--cache-write", "cache_write_per_1m", type=float, default=None, metavar="USD_PER_1M",
              help="USD per 1M prompt tokens written to the upstream's prompt cache (default: the input price)")
@click.option("--per-image", "per_image", type=float, default=None, metavar="USD",
              help="USD per generated image, for image answers without token usage (dall-e-2/3)")
@click.option("--per-web-search", "per_web_search", type=float, default=None, metavar="USD",
              help="USD per server-side web search the upstream reports (Claude's web search tool: 0.01)")
@click.option("--multiplier", "multipliers", multiple=True, metavar="WHERE=FACTOR",
              help="bill every token price times FACTOR where the upstream does: flex=0.5 and priority=2 (the "
                   "service tier the answer says served it), regional=1.1 (a Vertex AI deployment whose location "
                   "is not global); repeat for each")
@click.option("--per-use", "per_use", multiple=True, metavar="TOOL=USD",
              help="USD per use of a hosted tool the upstream runs and bills per use: file_search (OpenAI "
                   "Responses file_search_call, 0.0025), container (a code interpreter container, 0.03); "
                   "repeat for each")
@click.option("--modality", "modalities", multiple=True, metavar="KIND=USD_PER_1M",
              help="USD per 1M tokens the upstream reports as audio or image, where it bills them apart from "
                   "text: audio_input, audio_cache_read, audio_output, image_input, image_cache_read, "
                   "image_output (gpt-4o-audio-preview: audio_input=40 audio_output=80); a kind not set costs the "
                   "text price; repeat for each")
@click.option("--long-context-above", "long_above", type=int, default=None, metavar="TOKENS",
              help="prompt size above which every token of a request costs the --long-* prices (200000 for "
                   "Gemini 2.5/3 Pro and Claude Sonnet 4/4.5's 1M window)")
@click.option("--long-input", "long_input", type=float, default=None, metavar="USD_PER_1M",
              help="USD per 1M prompt tokens of a request above --long-context-above")
@click.option("--long-output", "long_output", type=float, default=None, metavar="USD_PER_1M",
              help="USD per 1M completion tokens of a request above --long-context-above")
@click.option("--long-cache-read", "long_cache_read", type=float, default=None, metavar="USD_PER_1M",
              help="cache reads of such a request (default: the --long-input price)")
@click.option("--long-cache-write", "long_cache_write", type=float, default=None, metavar="USD_PER_1M",
              help="cache writes of such a request (default: the --long-input price)")
@json_option
@handle_errors
def set_(model: str, input_per_1m: float, output_per_1m: float, cache_read_per_1m: float | None,
         cache_write_per_1m: float | None, per_image: float | None, long_above: int | None, long_input: float | None,
         long_output: float | None, long_cache_read: float | None, long_cache_write: float | None,
         per_web_search: float | None, multipliers: tuple[str, ...], per_use: tuple[str, ...],
         modalities: tuple[str, ...], as_json: bool) -> None:
    """Set the price of MODEL (replaces an earlier price, cache prices included). A pattern (claude-opus-*,
    or * alone) prices every name it matches that has no exact price, set or shipped; the longest wins.
    A long-context tier (--long-context-above with --long-input and --long-output) bills every token of a
    request whose prompt is above it at those prices."""
    ctx = cli_context()
    long = _long_context(long_above, long_input, long_output, long_cache_read, long_cache_write)
    factors = _pairs("--multiplier", multipliers, "flex=0.5")
    uses = _pairs("--per-use", per_use, "file_search=0.0025")
    kinds = _pairs("--modality", modalities, "audio_input=40")
    api = ctx.remote()
    if api is not None:
        from shieldes.cli.remote import segment

        answer = api.call("PUT", f"/pricing/{segment(model)}", {
            "input_per_1m": input_per_1m, "output_per_1m": output_per_1m,
            "cache_read_per_1m": cache_read_per_1m, "cache_write_per_1m": cache_write_per_1m,
            **({} if per_image is None else {"per_image": per_image}),
            **({} if long is None else {"long_context": long.fields()}),
            **({} if per_web_search is None else {"per_web_search": per_web_search}),
            **({} if not factors else {"multipliers": dict(factors)}),
            **({} if not uses else {"per_use": dict(uses)}),
            **({} if not kinds else {"modalities": dict(kinds)})})
        price = Price(answer["input_per_1m"], answer["output_per_1m"], answer["cache_read_per_1m"],
                      answer["cache_write_per_1m"], answer.get("per_image"),
                      long_context_from(answer.get("long_context")), answer.get("per_web_search"),
                      tuple(sorted((answer.get("multipliers") or {}).items())),
                      tuple(sorted((answer.get("per_use") or {}).items())),
                      tuple(sorted((answer.get("modalities") or {}).items())))
        emit(_row(model, price) | {"position": answer["position"]}, as_json=ctx.as_json)
        return
    written = run(write(SetPricing(model, input_per_1m, output_per_1m, cache_read_per_1m, cache_write_per_1m,
                                   per_image, long, per_web_search, factors, uses, kinds)))
    price = Price(input_per_1m, output_per_1m, cache_read_per_1m, cache_write_per_1m, per_image, long, per_web_search,
                  factors, uses, kinds)
    emit(_row(model, price) | {"position": written.position}, as_json=ctx.as_json)


def _long_context(above: int | None, input_: float | None, output: float | None, read: float | None,
                  write_: float | None) -> LongContext | None:
    given = (above, input_, output, read, write_)
    if all(v is None for v in given):
        return None
    if above is None or input_ is None or output is None:
        raise CommandRejected("a long-context tier needs --long-context-above, --long-input and --long-output "
                               "(e.g. --long-context-above 200000 --long-input 2.5 --long-output 15)")
    return LongContext(above, input_, output, read, write_)


def _pairs(option: str, given: tuple[str, ...], example: str) -> tuple[tuple[str, float], ...]:
    """NAME=NUMBER options as sorted pairs (the names and numbers are checked where the price is set)."""
    out: dict[str, float] = {}
    for item in given:
        name, eq, number = item.partition("=")
        try:
            out[name.strip()] = float(number)
        except ValueError:
            raise CommandRejected(f"{option} {item!r}: expected NAME=NUMBER, e.g. {option} {example}") from None
        if not eq:
            raise CommandRejected(f"{option} {item!r}: expected NAME=NUMBER, e.g. {option} {example}")
        if sum(1 for other in given if other.partition("=")[0].strip() == name.strip()) > 1:
            raise CommandRejected(f"{option} {name.strip()} is given twice; give each once")  # (the last one won)
    return tuple(sorted(out.items()))


@pricing_group.command("unset")
@click.argument("model")
@json_option
@handle_errors
def unset(model: str, as_json: bool) -> None:
    """Remove the price set for MODEL or a pattern (the shipped catalog's price, or a pattern's, applies
    again)."""
    remove_named("model", model, "pricing", UnsetPricing(model))


def _row(model: str, p: Price) -> dict[str, object]:
    return {"model": model, "input_per_1m": p.input_per_1m, "output_per_1m": p.output_per_1m,
            "cache_read_per_1m": p.cache_read_per_1m, "cache_write_per_1m": p.cache_write_per_1m,
            "per_image": p.per_image, "long_context": None if p.long_context is None else p.long_context.fields(),
            "per_web_search": p.per_web_search, "multipliers": dict(p.multipliers) or None,
            "per_use": dict(p.per_use) or None, "modalities": dict(p.modalities) or None}


@pricing_group.command("list")
@click.option("--source", type=click.Choice(("all", "default", "override")), default="all", show_default=True,
              help="only shipped defaults or only prices set with `pricing set`/`pricing import`")
@click.option("--model", "contains", metavar="TEXT", help="only models whose name contains TEXT")
@json_option
@handle_errors
def list_(source: str, contains: str | None, as_json: bool) -> None:
    """Every price in force: the shipped catalog and overrides, each with its source."""
    ctx = cli_context()
    api = ctx.remote()
    if api is not None:
        every = api.every("/pricing", source=source)
    else:
        every = price_rows(run_read(read_config()).state.pricing)
    rows = [r for r in every if (source == "all" or r["source"] == source) and (not contains or contains in r["model"])]
    emit(rows, as_json=ctx.as_json, columns=("model", "provider", "input_per_1m", "output_per_1m",
                                             "cache_read_per_1m", "cache_write_per_1m", "per_image", "long_context",
                                             "per_web_search", "multipliers", "per_use", "modalities",
                                             "source"))


@pricing_group.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--all", "everything", is_flag=True,
              help="import every chat/embedding model in the file, not only the models this gateway knows")
@click.option("--models", help="import only these comma-separated models")
@click.option("--dry-run", is_flag=True, help="show what would change and write nothing")
@json_option
@handle_errors
def import_(file: Path, everything: bool, models: str | None, dry_run: bool, as_json: bool) -> None:
    """Refresh prices from LiteLLM's model_prices_and_context_window.json (per-token USD; input,
    output, cache read and cache write)."""
    ctx = cli_context()
    ctx.require_direct()  # in remote mode: refused before the file is read
    prices, skipped, notes = parse_litellm_prices(load_document(file))
    wanted = split_list(models) if models else None

    def make_plan(state: ConfigState) -> Plan:
        return plan_prices(state, prices, everything=everything, models=wanted)

    async def go() -> tuple[Plan, int]:
        async with open_store(url) as store:
            return await apply_import(store, make_plan, actor=actor(), dry_run=dry_run)

    url = ctx.database_url()  # the embedded server's start is no write: not within the bound
    plan, appended = run(bounded_read(go()) if dry_run else bounded_write(go()))
    counts = plan.counts()
    changed = [c.as_dict() for c in plan.changes if c.action != "unchanged"]
    if ctx.as_json:
        emit({"dry_run": dry_run, "changes": changed, "summary": counts, "events_appended": appended,
              "entries_left_out": skipped, "notes": notes}, as_json=True)
        return
    emit(changed, as_json=False, columns=("name", "action", "detail"))
    for note in notes:
        click.echo(f"note: {note}")
    tail = "dry run: nothing written" if dry_run else f"{appended} event(s) appended"
    click.echo(f"{'would' if dry_run else 'did'} add {counts['add']}, update {counts['update']}, leave "
               f"{counts['unchanged']} unchanged ({tail})")
