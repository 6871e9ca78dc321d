"""`shieldes audit log|verify`: read the config history from the `audit_log` view, and check the
config hash chain end to end (any row edited or deleted with SQL is found)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from shieldes.cli.common import ReadBound, cli_context, json_option, open_store, query, run, run_read
from shieldes.cli.oneline import OneLineGroup, fail, handle_errors
from shieldes.cli.output import emit, one_line_json
from shieldes.cli.timefmt import with_table_times
from shieldes.timeparse import parse_time

# The chain walk, the snapshot codec and the store are imported by `audit verify` and the query by
# `audit log`: `audit --help` needs neither, nor the database driver they import.
if TYPE_CHECKING:
    from shieldes.events.verify import ChainReport
    from shieldes.projections.projector import Projection
    from shieldes.snapshots.verify import SnapshotProblem, SnapshotWalker

PAGE = 5000


@click.group("audit", cls=OneLineGroup)
def audit_group() -> None:
    """The audit trail of config changes."""


@audit_group.command("log")
@click.option("--actor", help="only changes by this actor (exact)")
@click.option("--type", "type_", metavar="T",
              help="event type, e.g. virtual_key.revoked, or a prefix: virtual_key")
@click.option("--subject", metavar="S", help="key/provider/team name, model or id")
@click.option("--since", metavar="TS", help="from this time (ISO date or timestamp, UTC if no zone), or this long "
              "ago: 15m, 2h, 7d")
@click.option("--until", metavar="TS", help="up to this time (a bare date includes that whole day, a time to the "
              "second that second)")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True,
              help="newest N changes, printed oldest first")
@json_option
@handle_errors
def log(actor: str | None, type_: str | None, subject: str | None, since: str | None, until: str | None,
        limit: int, as_json: bool) -> None:
    """Config changes (secrets redacted), from the audit_log view."""
    from shieldes.events.queries import audit_params, audit_sql

    ctx = cli_context()
    params = audit_params(
        actor=actor, type_=type_, subject=subject, limit=limit,
        since=parse_time(since, "--since", ago=True) if since else None,
        until=parse_time(until, "--until", end_of_day=True, ago=True) if until else None,
    )
    rows = list(reversed(run_read(query(audit_sql(params), params))))
    for r in rows:
        r["recorded_at"] = r["recorded_at"].isoformat()
        if not ctx.as_json:  # one line, its times as the tables print them, amounts never 1e-06
            r["data"] = one_line_json(with_table_times(r["data"]) if isinstance(r["data"], dict) else r["data"])
    emit(rows, as_json=ctx.as_json, columns=("position", "recorded_at", "actor", "type", "subject", "data"))


async def _snapshot_walker(bound: ReadBound) -> tuple[SnapshotWalker, list[SnapshotProblem]]:
    """Decode every stored snapshot this shieldes can read (sealed with the cluster secret when one
    is set); the ones that do not decode are problems at once."""
    from shieldes.snapshots import codec as snapcodec
    from shieldes.snapshots.store import EVERY_STATE_OLDEST_FIRST
    from shieldes.snapshots.verify import SnapshotProblem, SnapshotWalker

    key = snapcodec.mac_key(cli_context().settings.cluster_secret)
    decoded: dict[int, tuple[int, Projection]] = {}
    problems: list[SnapshotProblem] = []
    for row in await bound(query(EVERY_STATE_OLDEST_FIRST)):
        snap_id, position = int(row["id"]), int(row["position"])
        if not snapcodec.is_compatible(row["schema_version"], row["format"]):
            continue  # another release's snapshot: the loader skips it too
        try:
            decoded[snap_id] = (position, snapcodec.decode(bytes(row["state"]), row["checksum"], position, key))
        except snapcodec.SnapshotCorrupt as exc:
            problems.append(SnapshotProblem(snap_id, position, str(exc)))
    return SnapshotWalker(decoded), problems


async def _verify() -> tuple[ChainReport, int, list[SnapshotProblem]]:
    """The chain report, how many snapshots were checked, and what is wrong with them. Each read
    is bounded on its own: the walk of a long log may take longer than one read's bound."""
    bound = ReadBound()
    try:
        report, snapshots, undecodable = await _walk(bound)
    finally:
        await bound.stop()
    compared = snapshots.finish() if report.ok else []
    return report, snapshots.checked + len(undecodable), undecodable + compared


async def _walk(bound: ReadBound) -> tuple[ChainReport, SnapshotWalker, list[SnapshotProblem]]:
    from shieldes.events.catalog import CONFIG_STREAM
    from shieldes.events.log_reads import CONFIG_TIP_SQL
    from shieldes.events.verify import ChainWalker

    ctx = cli_context()
    walker = ChainWalker()
    snapshots, problems = await _snapshot_walker(bound)
    async with open_store(ctx.database_url()) as store:
        try:
            # The tip first: events appended after this read (a live admin) are beyond it and ignored.
            head = (await bound(query(CONFIG_TIP_SQL)))[0]
            head_position, head_hash = int(head["config_position"]), str(head["config_hash"])
            cursor = 0
            while True:
                page = await bound(store.read(cursor, PAGE, stream=CONFIG_STREAM))
                for e in page:
                    if e.position > head_position or walker.feed(e) is not None:
                        return await _beyond_tip(walker.finish(head_position, head_hash), bound), snapshots, problems
                    snapshots.feed(e)
                if len(page) < PAGE:
                    return await _beyond_tip(walker.finish(head_position, head_hash), bound), snapshots, problems
                cursor = page[-1].position
        finally:
            await bound.stop()  # a stalled read's cancellation ends before its connection is closed


async def _beyond_tip(report: ChainReport, bound: ReadBound) -> ChainReport:
    """A config row past log_head's tip was inserted outside shieldes (nodes would still apply it)."""
    from shieldes.events.log_reads import BEYOND_TIP_SQL
    from shieldes.events.verify import ChainReport

    if not report.ok:
        return report
    row = (await bound(query(BEYOND_TIP_SQL)))[0]
    if row["position"] is None:
        return report
    return ChainReport(False, report.checked, report.last_position, report.tip_hash, int(row["position"]),
                       "a config event lies beyond log_head's tip (inserted outside shieldes)")


@audit_group.command("verify")
@json_option
@handle_errors
def verify(as_json: bool) -> None:
    """Recompute the config hash chain; exit 1 naming the first bad position if it is broken."""
    ctx = cli_context()
    report, snapshots_checked, problems = run(_verify())
    result = {
        "ok": report.ok and not problems,
        "config_events": report.checked,
        "last_position": report.last_position,
        "tip_hash": report.tip_hash,
        "bad_position": report.bad_position,
        "reason": report.reason,
        "snapshots_checked": snapshots_checked,
        "bad_snapshots": [{"id": p.snapshot_id, "position": p.position, "reason": p.reason} for p in problems],
    }
    if ctx.as_json:
        emit(result, as_json=True)
    if not report.ok:
        fail(f"hash chain broken at position {report.bad_position}: {report.reason}; the config log was "
             "changed outside shieldes: restore the events table from a backup and investigate", "hash_chain_broken")
    if problems:
        first = problems[0]
        fail(f"snapshot at position {first.position} (id {first.snapshot_id}) does not match the log: "
             f"{first.reason}; delete it (nodes then start from an older snapshot or a full replay) "
             "and investigate who wrote it", "snapshot_mismatch")
    if not ctx.as_json:
        click.echo(f"ok: {report.checked} config events verified, chain tip at position "
                   f"{report.last_position} (hash {report.tip_hash[:16]}...); "
                   f"{snapshots_checked} {'snapshot matches' if snapshots_checked == 1 else 'snapshots match'} the log")
