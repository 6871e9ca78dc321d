"""When a deployment at its quota frees up, and the 429 of a request whose every model is at its
deployments' quota (pure, on an injected clock)."""

from __future__ import annotations

from shieldes.errors import RateLimited
from shieldes.gateway.upstream_errors import ModelTried, all_at_quota, at_quota_skip
from shieldes.routing.quota import DeploymentQuotas
from shieldes.routing.router import Route


def test_a_deployment_frees_up_when_enough_of_its_window_has_left() -> None:
    now = [100.0]
    q = DeploymentQuotas(clock=lambda: now[0])
    rpm = {"rpm": "2"}
    assert q.frees_in("d", rpm, 1) == 0.0  # (never called: room now)
    q.sent("d")
    now[0] = 110.0
    q.sent("d")
    now[0] = 130.0
    assert not q.allows("d", rpm, 1)
    assert q.frees_in("d", rpm, 1) == 30.0  # the first send leaves the window at 160
    q.sent("d")  # (sent past its share: the second send must leave as well)
    assert q.frees_in("d", rpm, 1) == 40.0
    assert q.frees_in("d", rpm, 3) == 60.0  # a share of 1 in three nodes: every send must leave
    now[0] = 200.0
    assert q.frees_in("d", rpm, 1) == 0.0 and q.allows("d", rpm, 1)
    tpm = {"tpm": "100"}
    q.answered("t", 70)
    now[0] = 210.0
    q.answered("t", 50)
    now[0] = 220.0
    assert not q.allows("t", tpm, 1)
    assert q.frees_in("t", tpm, 1) == 40.0  # 120 - 70 < 100 once the first answer leaves at 260
    both = {"rpm": "1", "tpm": "100"}  # both must have room: the later of the two
    q.sent("t")
    assert q.frees_in("t", both, 1) == 60.0


def test_every_model_at_its_quota_is_named_with_the_soonest_retry() -> None:
    route = Route("smart", "gpt-4o", (), False, ("mini",))
    frees = {"azure-east": 41.2, "azure-west": 12.5, "openai": 3.1}
    models = [ModelTried("smart", skipped=at_quota_skip(["azure-east", "azure-west"], frees)),
              ModelTried("mini", skipped=at_quota_skip(["openai"], frees))]
    error = all_at_quota(route, frees, models, lambda s: s)
    assert isinstance(error, RateLimited) and error.retry_after == 3.1
    assert error.message == (
        "every model tried for 'smart' is at its deployments' quota (the provider's own rpm/tpm, shared by "
        "the cluster): 'smart' (not called: azure-east, azure-west at their quota, the first frees up in 13 s), "
        "then fallback 'mini' (not called: openai at its quota, a request frees up in 4 s); retry after 4 s, "
        "or raise the quota of a deployment named if the provider allows more "
        "(`shieldes provider update NAME --rpm N --tpm N`)")
    alone = all_at_quota(route, {"openai": 0.2}, [], lambda s: s)
    assert alone.retry_after == 0.2 and alone.message.startswith(
        "every deployment serving model 'smart' is at its quota (the provider's own rpm/tpm, shared by the "
        "cluster): openai at its quota, a request frees up in 1 s; retry after 1 s, or raise")
