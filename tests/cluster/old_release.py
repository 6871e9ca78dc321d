"""`python -m tests.cluster.old_release serve`: a node of the previous release, for upgrade tests.

The previous release is this code with a smaller event catalog: the types named in
SHIELDES_TEST_OLD_RELEASE_LACKS (comma separated) are unknown to it, exactly as a type added by a
newer release is unknown to an older node. It advertises what it reads like any node. With
SHIELDES_TEST_OLD_RELEASE_SNAPSHOT_FORMATS (comma separated) it reads only those snapshot layouts, as
a release before a newer layout does.
"""

from __future__ import annotations

import os

from shieldes.events import catalog, codec


def main() -> None:
    lacks = {t.strip() for t in os.environ.get("SHIELDES_TEST_OLD_RELEASE_LACKS", "").split(",") if t.strip()}
    codec.ALL_EVENTS = tuple(c for c in catalog.ALL_EVENTS if c.TYPE not in lacks)
    formats = os.environ.get("SHIELDES_TEST_OLD_RELEASE_SNAPSHOT_FORMATS")
    if formats:
        from shieldes.snapshots import codec as snapshot_codec

        snapshot_codec.READABLE_FORMATS = frozenset(int(f) for f in formats.split(","))
    from shieldes.cli.main import main as shieldes_main

    shieldes_main()


if __name__ == "__main__":
    main()
