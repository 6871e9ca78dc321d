"""`shieldes doctor`: run every check and say what to do about each failure; exit 1 if any failed."""

from __future__ import annotations

import click

from shieldes.cli.common import cli_context, json_option, run
from shieldes.cli.oneline import OneLineCommand, fail, handle_errors
from shieldes.cli.output import emit
from shieldes.errors import DatabaseUnavailable


@click.command("doctor", cls=OneLineCommand)
@json_option
@handle_errors
def doctor(as_json: bool) -> None:
    """Check the database (reachable, schema, clock skew), this node's provider credentials, each
    deployment (a cheap models call), prices for every served model and the cluster's shared secrets."""
    # the checks (aiohttp, pydantic, every provider kind) load only when the doctor runs, not
    # for `shieldes doctor --help`
    import os

    from shieldes.checks import Finding, unknown_setting_findings
    from shieldes.doctor import report, run_checks
    from shieldes.settings_env import dotenv_names, known_env_names

    ctx = cli_context()
    try:
        url = ctx.database_url()
    except DatabaseUnavailable as exc:  # still a report, not a bare error: that is the first finding
        findings = [Finding("database", "-", False, exc.message,
                            "fix SHIELDES_DATABASE_URL or the embedded Postgres (`shieldes db status`)")]
        findings += unknown_setting_findings([*os.environ, *dotenv_names()], known_env_names())
    else:
        findings = run(run_checks(url, ctx.settings))  # (its last findings: the unknown settings)
    result = report(findings)
    if ctx.as_json:
        emit(result, as_json=True)
    else:
        rows = [{"check": c["check"], "subject": c["subject"],
                 "status": "FAIL" if not c["ok"] else "warning" if c.get("warning") else "ok",
                 "detail": c["detail"]} for c in result["checks"]]
        emit(rows, as_json=False)
        fixes = [c for c in result["checks"] if (not c["ok"] or c.get("warning")) and c["fix"]]
        if fixes:
            click.echo("\nwhat to do:")
            for c in fixes:
                click.echo(f"  {c['check']} {c['subject']}: {c['fix']}")
    if not result["ok"]:
        fail(f"{result['failed']} check(s) failed; see above for what to do", "checks_failed")
