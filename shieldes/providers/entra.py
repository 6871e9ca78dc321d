"""Entra ID access tokens for `azure` deployments under `--auth entra`: azure-identity's default
credential chain (extra `shieldes[azure]`) through its asyncio API, so that a fetch does not hold
up the event loop. One fetch at a time, shared by every request that waits for it. A token is renewed in
the background five minutes before it expires while requests go on sending it; a request waits for
a fetch only when the node holds no token or one about to expire."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from typing import Any, Literal

from shieldes.errors import ProviderMisconfigured
from shieldes.providers.node_credentials import SharedFetch, one_line

log = logging.getLogger(__name__)

ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
RENEW_BEFORE = 300.0  # seconds before expiry a renewal starts (when azure-identity itself refreshes)
MARGIN = 5.0  # a token this close to expiry is sent only if a fetch gives no newer one
# azure-identity answers from its cache for 30 s after it fetched (unless the token expired): asking
# again sooner, after a renewal that got the same token or none, would only get the same answer
RETRY_AFTER = 30.0
FETCH_TIMEOUT = 30.0  # the longest a fetch may take (the chain's tries and their retries included)
MISSING = ("--auth entra needs azure-identity, which is not installed here; pip install 'shieldes[azure]' on every "
           "node and restart it")
CHECK = ("check this node's Azure identity (a managed identity, AZURE_TENANT_ID/AZURE_CLIENT_ID/AZURE_CLIENT_SECRET, "
         "or `az login`) and its role on the Azure OpenAI resource (Cognitive Services OpenAI User)")
FIX = CHECK + "; the next request asks for a token again"
Step = Literal["use", "renew", "wait"]


@dataclass(frozen=True)
class Held:
    """The token a node sends, its expiry and when to ask for the next one (epoch seconds)."""

    token: str
    expires_on: float
    renew_at: float


def step(held: Held | None, now: float) -> Step:
    """What a request does: `use` the token held, `renew` (use it and start a renewal in the
    background), or `wait` for a fetch (no token held, or it is about to expire)."""
    if held is None or now >= held.expires_on - MARGIN:
        return "wait"
    return "renew" if now >= held.renew_at else "use"


def fetched(token: str, expires_on: float, before: Held | None, now: float) -> Held:
    """The token a fetch got, renewed RENEW_BEFORE its expiry; the token already held (from
    azure-identity's cache) is asked for again only RETRY_AFTER later."""
    if before is not None and token == before.token:
        return Held(token, expires_on, min(now + RETRY_AFTER, expires_on))
    return Held(token, expires_on, expires_on - RENEW_BEFORE)


def default_credential() -> Any:
    """azure-identity's default credential chain, its asyncio flavour. Raises ImportError without the extra."""
    from azure.identity.aio import DefaultAzureCredential

    return DefaultAzureCredential()


class EntraTokens:
    """The node's Entra ID tokens (one scope, Azure OpenAI's, for every `--auth entra` deployment)."""

    def __init__(self) -> None:
        self._credential: Any = None
        self._missing = False
        self._held: Held | None = None
        self._fetches: SharedFetch[Held | str] = SharedFetch("entra-token")
        self._failing = False  # (a failure is logged once, not at every fetch until it recovers)

    async def token(self, deployment: str) -> str:
        """The token to send for `deployment`; raises ProviderMisconfigured when there is none."""
        held = self._held
        todo = step(held, time.time())
        if held is not None and todo != "wait":
            if todo == "renew":
                self._fetches.start("", self._fetch_one)
            return held.token
        got = await self._fetches.get("", self._fetch_one)  # (a client gone does not cancel the others' fetch)
        if isinstance(got, Held):
            return got.token
        if held is not None and time.time() < held.expires_on:  # not newer, but still valid
            return held.token
        raise ProviderMisconfigured(f"deployment {deployment!r} cannot be used on this node: " + (
            MISSING if got == MISSING else f"no Entra ID token ({got}); {FIX}"))

    async def _fetch_one(self) -> Held | str:
        """The new token, or why there is none (the held one kept, asked for again RETRY_AFTER later)."""
        if self._missing:
            return MISSING
        before = self._held
        try:
            if self._credential is None:  # (in a thread: importing azure-identity takes a tenth of a second)
                self._credential = await asyncio.to_thread(default_credential)
            async with asyncio.timeout(FETCH_TIMEOUT):
                got = await self._credential.get_token(ENTRA_SCOPE)
        except ImportError:
            self._missing = True
            log.error("no Entra ID tokens: %s", MISSING)
            return MISSING
        except Exception as exc:  # azure-identity's ClientAuthenticationError tree, its ValueErrors, a timeout
            why = f"timed out after {FETCH_TIMEOUT:.0f} s" if isinstance(exc, TimeoutError) else one_line(exc)
            if not self._failing:
                self._failing = True
                log.warning("no Entra ID token for the azure deployments using --auth entra (%s); %s", why, FIX)
            if before is not None:
                self._held = replace(before, renew_at=time.time() + RETRY_AFTER)
            return why
        if self._failing:
            self._failing = False
            log.info("Entra ID tokens are coming again for the azure deployments using --auth entra")
        self._held = fetched(str(got.token), float(got.expires_on), before, time.time())
        return self._held

    async def close(self) -> None:
        """Stops a fetch under way and closes the credential's HTTP sessions (at the node's stop)."""
        await self._fetches.close()
        if self._credential is not None:
            try:
                await self._credential.close()
            except Exception as exc:  # (a stop goes on whatever the credential's sessions do)
                log.warning("closing the Entra ID credential failed: %s", one_line(exc))
