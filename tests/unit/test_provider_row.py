"""A provider's settings print in one order (`provider add` applies the event it wrote, `provider
list` reads the config back through jsonb, which orders keys its own way): docs/cli.md says `add`
and `update` print the provider as `list` does."""

from __future__ import annotations

from shieldes.projections.state import Deployment
from shieldes.views import provider_row


def test_options_print_in_one_order_however_they_were_stored() -> None:
    written = {"credentials_file": "/sa.json", "location": "us-central1", "project": "P"}
    read_back = {"project": "P", "location": "us-central1", "credentials_file": "/sa.json"}  # jsonb's order
    rows = [provider_row(Deployment("v", "vertex", "https://x", None, ("m",), 1.0, options=o))
            for o in (written, read_back)]
    assert list(rows[0]["options"]) == list(rows[1]["options"]) == ["credentials_file", "location", "project"]
