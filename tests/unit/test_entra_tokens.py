"""When a node renews its Entra ID token (providers/entra.py): the decisions, on a real token's
lifetime (an hour), which the end-to-end test's two-second tokens cannot show."""

from __future__ import annotations

import pytest

from shieldes.errors import ProviderMisconfigured
from shieldes.providers.entra import MARGIN, RENEW_BEFORE, RETRY_AFTER, EntraTokens, Held, fetched, one_line, step

T0 = 1_800_000_000.0
HOUR = 3600.0


def test_a_token_is_sent_as_is_then_renewed_in_the_background_five_minutes_before_it_expires() -> None:
    held = fetched("t1", T0 + HOUR, None, T0)
    assert held == Held("t1", T0 + HOUR, T0 + HOUR - RENEW_BEFORE)
    assert step(None, T0) == "wait"  # (no token yet: the first request waits for the fetch)
    assert step(held, T0 + 1) == "use"
    assert step(held, T0 + HOUR - RENEW_BEFORE - 1) == "use"
    assert step(held, T0 + HOUR - RENEW_BEFORE) == "renew"  # sent, while a renewal runs
    assert step(held, T0 + HOUR - MARGIN - 0.1) == "renew"
    assert step(held, T0 + HOUR - MARGIN) == "wait"  # about to expire: not sent without asking first
    assert step(held, T0 + HOUR + 1) == "wait"


def test_a_renewal_that_gets_the_same_token_asks_again_only_later() -> None:
    """azure-identity answers from its cache for 30 s after a fetch: a renewal then gets the token
    held, and asking again at every request would only get it again."""
    held = fetched("t1", T0 + HOUR, None, T0)
    now = T0 + HOUR - RENEW_BEFORE
    same = fetched("t1", T0 + HOUR, held, now)
    assert same.renew_at == now + RETRY_AFTER
    assert step(same, now + 1) == "use" and step(same, now + RETRY_AFTER) == "renew"
    new = fetched("t2", now + HOUR, same, now + RETRY_AFTER)
    assert new.renew_at == now + HOUR - RENEW_BEFORE and step(new, now + RETRY_AFTER + 1) == "use"
    short = fetched("t1", T0 + 2, fetched("t1", T0 + 2, None, T0), T0 + 1)  # (a token shorter-lived than that)
    assert short.renew_at == T0 + 2


def test_azure_identitys_messages_come_on_one_bounded_line() -> None:
    chain = ValueError("DefaultAzureCredential failed to retrieve a token.\nAttempted credentials:\n\t"
                       "EnvironmentCredential: not configured\n\tManagedIdentityCredential: " + "x" * 1000)
    line = one_line(chain)
    assert "\n" not in line and "\t" not in line and line.endswith("...") and len(line) < 700
    assert line.startswith("ValueError: DefaultAzureCredential failed to retrieve a token. Attempted credentials: "
                           "EnvironmentCredential: not configured ManagedIdentityCredential: xxx")
    assert one_line(TimeoutError()) == "TimeoutError: no detail"


async def test_a_chain_the_environment_breaks_is_a_clear_error_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """azure-identity refuses to build its chain when AZURE_TOKEN_CREDENTIALS names no credential of
    it: the request is told so (ProviderMisconfigured, a 502), the node does not answer a 500."""
    monkeypatch.setenv("AZURE_TOKEN_CREDENTIALS", "nonsense")
    tokens = EntraTokens()
    try:
        with pytest.raises(ProviderMisconfigured) as err:
            await tokens.token("az")
    finally:
        await tokens.close()
    assert err.value.message.startswith("deployment 'az' cannot be used on this node: no Entra ID token (ValueError: "
                                        "Invalid value for AZURE_TOKEN_CREDENTIALS: nonsense.")
    assert "check this node's Azure identity" in err.value.message
