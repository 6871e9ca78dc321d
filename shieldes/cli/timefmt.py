"""The one way the CLI's tables print a time: UTC to the second, `2026-12-03 17:38:11Z`.

Every table (logs, audit, key list, snapshot list, cluster status, budget show, db status,
config show ...) goes through `table_time`, whatever the time came as: a datetime from Postgres,
an ISO 8601 string from the admin API (remote mode), or seconds since the epoch from the config
log. `--json` keeps ISO 8601 with the full precision. The printed form is one an option reads back:
`--since '2026-12-03 17:38:11Z'` parses (shieldes.timeparse), and `--until` given to the second
includes that whole second.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

FORMAT = "%Y-%m-%d %H:%M:%SZ"


def table_time(value: Any) -> Any:
    """`value` as the tables print a time; None stays None (printed as `-`), and anything that is
    not a time (a label such as `now`) is returned as it is."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)  # the database's naive times are UTC
    elif isinstance(value, int | float):
        moment = datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        return value
    return moment.astimezone(UTC).strftime(FORMAT)


def is_time_field(name: str) -> bool:
    """Whether a column holds a time by its name: `*_at` (started_at, recorded_at, expires_at,
    created_at ...) and a budget period's start."""
    return name.endswith("_at") or name == "period_start"


def with_table_times(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its time fields as the tables print them."""
    return {k: table_time(v) if is_time_field(k) else v for k, v in row.items()}
