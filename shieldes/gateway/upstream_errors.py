"""What an upstream's failure becomes for the client: the refusal of the request itself (a 4xx
another attempt would not fix), the node's own trouble reaching a deployment, or every attempt of
a route spent. Pure: the provider keys are scrubbed by the caller's `scrub`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from shieldes.errors import (
    MalformedOutput,
    ProviderMisconfigured,
    RateLimited,
    ShieldesError,
    UpstreamError,
    UpstreamOverloaded,
    UpstreamTimeout,
    retry_after_seconds,
)
from shieldes.projections.state import Deployment
from shieldes.providers.base import (
    CONTENT_FILTER,
    CONTEXT_LENGTH,
    MALFORMED_OUTPUT,
    OVERLOADED,
    THROTTLED,
    UpstreamFailure,
)
from shieldes.routing.router import Route


class UpstreamClientError(ShieldesError):
    """The upstream refused the request itself (a 4xx that another attempt would not fix)."""

    type = "invalid_request_error"
    code = "upstream_rejected"

    def __init__(self, message: str, status: int, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message, code=code, param=param)
        self.status = status


def every_one_misconfigured(errors: list[ProviderMisconfigured]) -> ProviderMisconfigured:
    """The answer when no deployment tried could be called from this node: each one's reason, so
    fixing the first named does not leave the operator guessing about the others."""
    if len(errors) == 1:
        return errors[0]
    return ProviderMisconfigured(f"none of the {len(errors)} deployments serving this model can be used on this "
                                 "node: " + " | ".join(e.message for e in errors))


def credentials_of(dep: Deployment) -> str:
    """What signs a deployment's calls, for an operator told to check it: Vertex and Bedrock sign
    in with the cloud's own credentials, every other deployment (and Bedrock with an API key) sends
    its provider key."""
    if dep.kind == "vertex":
        return ("its Google credentials (--credentials-file, else the node's Application Default Credentials) "
                "and their Vertex AI role in the project (roles/aiplatform.user); `shieldes doctor` checks them")
    if dep.kind == "bedrock" and dep.secret_ref is None:
        return ("the node's AWS credentials and their permission to invoke the model (bedrock:InvokeModel); "
                "`shieldes doctor` checks them")
    return "its provider key (`shieldes doctor` checks it)"


def client_error(failure: UpstreamFailure, dep: Deployment, scrub: Callable[[str], str]) -> ShieldesError:
    """What a failed attempt tells the client when no other deployment is tried."""
    if failure.status is None:  # the node itself cannot reach the upstream (a missing extra, no credentials)
        return UpstreamError(f"deployment {dep.name!r} cannot be used on this node: {scrub(failure.message)}")
    status = failure.status
    if status in (401, 403):  # about the gateway's own credentials: nothing for the client to read
        return UpstreamError(
            f"upstream deployment {dep.name!r} refused the gateway's credentials ({status}); "
            f"the operator should check {credentials_of(dep)}"
        )
    if not 400 <= status < 500:
        return UpstreamError(
            f"upstream deployment {dep.name!r} refused the gateway ({status}): "
            f"{scrub(failure.message)}; the operator should check {credentials_of(dep)}"
        )
    message = scrub(failure.message)
    param = failure.param  # (an upstream speaking OpenAI's API names the field at fault)
    if failure.code == CONTEXT_LENGTH:
        return UpstreamClientError(
            f"the prompt does not fit the model's context window on deployment {dep.name!r}: {message}; "
            "shorten the messages or lower max_tokens", 400, code=CONTEXT_LENGTH, param=param)
    if failure.code == CONTENT_FILTER:
        return UpstreamClientError(f"the upstream's content filter refused the request: {message}", 400,
                                   code=CONTENT_FILTER)
    return UpstreamClientError(f"upstream rejected the request: {message}", status, param=param)


@dataclass(frozen=True, slots=True)
class ModelTried:
    """One model of a request that fell back (the requested one, then each fallback, as the request
    or the alias named it), and why it did not answer: the last failure of its deployments, or why
    none of them was called (`skipped`)."""

    model: str
    deployment: str | None = None
    failure: UpstreamFailure | None = None
    skipped: str = ""


WHY_CHARS = 240  # of each model's upstream message: six of them stay readable in one error


def _why(tried: ModelTried, scrub: Callable[[str], str]) -> str:
    failure = tried.failure
    if failure is None:
        return tried.skipped or "not tried"
    text = " ".join(scrub(failure.message).split())
    text = text if len(text) <= WHY_CHARS else text[:WHY_CHARS - 3] + "..."
    # (a failure without a status says itself that the node could not reach the deployment)
    kind = "timed out" if failure.timeout else (str(failure.status) if failure.status else "")
    said = ": ".join(part for part in (kind, text) if part) or "failed"
    return f"deployment {tried.deployment!r}: {said}"


def models_tried(models: Sequence[ModelTried], scrub: Callable[[str], str]) -> str:
    """Every model a request tried, in order, each with why it failed: `'gpt-4o' (deployment
    'openai': 500: ...), then fallback 'claude' (...)`."""
    return ", then ".join(f"{'' if i == 0 else 'fallback '}{m.model!r} ({_why(m, scrub)})"
                          for i, m in enumerate(models))


QUOTA_FIX = ("or raise the quota of a deployment named if the provider allows more "
             "(`shieldes provider update NAME --rpm N --tpm N`)")


def at_quota_skip(names: Sequence[str], frees: Mapping[str, float]) -> str:
    """Why a model's deployments were not called: each at its quota, and when the soonest frees up."""
    soonest = retry_after_seconds(min(frees[n] for n in names))
    return (f"not called: {', '.join(names)} at {'its' if len(names) == 1 else 'their'} quota, "
            f"{'a request' if len(names) == 1 else 'the first'} frees up in {soonest} s")


def all_at_quota(route: Route, frees: Mapping[str, float], models: Sequence[ModelTried],
                 scrub: Callable[[str], str]) -> RateLimited:
    """The 429 when no deployment of any model the request may use has room under its quota (the
    provider's own rpm/tpm, `--rpm`/`--tpm`): each model tried named, with when its deployments
    free up, and Retry-After the soonest of them (the requested model alone once hid its fallbacks,
    and a fixed 5 s sent clients back before any had room)."""
    wait = min(frees.values())
    after = retry_after_seconds(wait)
    shared = "the provider's own rpm/tpm, shared by the cluster"
    if len(models) > 1:
        message = (f"every model tried for {route.requested!r} is at its deployments' quota ({shared}): "
                   f"{models_tried(models, scrub)}; retry after {after} s, {QUOTA_FIX}")
    else:
        message = (f"every deployment serving model {route.requested!r} is at its quota ({shared}): "
                   f"{at_quota_skip(sorted(frees), frees).removeprefix('not called: ')}; "
                   f"retry after {after} s, {QUOTA_FIX}")
    return RateLimited(message, retry_after=wait)


def exhausted(route: Route, last: UpstreamFailure | None, attempts: int,
              scrub: Callable[[str], str], models: Sequence[ModelTried] = ()) -> ShieldesError:
    """What the client is told when every attempt of a route failed. `models`: when the request
    fell back, every model it tried and why each failed, all named (the last one's failure alone
    hid the others'); the error's kind is still the last failure's."""
    detail = scrub(last.message) if last is not None else "no attempt possible"
    if len(models) > 1:
        every = (f"every model tried for {route.requested!r} failed ({attempts} attempt(s)): "
                 f"{models_tried(models, scrub)}")
        fix = "check the deployments named (`shieldes provider list`), or name a fallback served by another provider"
        if last is not None and last.code == THROTTLED:
            return RateLimited(f"{every}; retry after the Retry-After delay, or {fix}",
                               retry_after=last.retry_after or 1.0)
        if last is not None and last.status == OVERLOADED:
            overloaded = UpstreamOverloaded(f"{every}; retry with backoff, or {fix}")
            if last.retry_after:
                overloaded.headers["Retry-After"] = str(retry_after_seconds(last.retry_after))
            return overloaded
        msg = f"{every}; retry later, or {fix}"
    elif last is not None and last.code == THROTTLED:
        return RateLimited(
            f"every upstream for model {route.requested!r} is rate limiting ({attempts} attempt(s)): {detail}; "
            "retry after the Retry-After delay", retry_after=last.retry_after or 1.0)
    elif last is not None and last.status == OVERLOADED:
        overloaded = UpstreamOverloaded(
            f"every upstream for model {route.requested!r} is overloaded ({attempts} attempt(s)): {detail}; "
            "retry with backoff")
        if last.retry_after:
            overloaded.headers["Retry-After"] = str(retry_after_seconds(last.retry_after))
        return overloaded
    else:
        msg = (f"upstream failure for model {route.requested!r} after {attempts} attempt(s): {detail}; "
               "retry later")
    if last is not None and last.code == MALFORMED_OUTPUT:
        return MalformedOutput(msg)
    return UpstreamTimeout(msg) if last is not None and last.timeout else UpstreamError(msg)
