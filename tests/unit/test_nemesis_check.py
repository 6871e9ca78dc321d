"""The nemesis checker (tests/cluster/nemesis_check.py) on hand-made histories: each property it
asserts is violated once on purpose and must be reported, and the same history within its bound
must pass."""

from __future__ import annotations

from tests.cluster.nemesis_check import (
    Fault,
    KeySpec,
    Logged,
    NodeReadout,
    Served,
    budget_slack,
    check_budget,
    check_convergence,
    check_rate,
    check_reservations,
    check_usage,
    rate_bound,
    window_counts,
)

W = 600.0  # the start of window 10
NODES = ("a", "b", "c")


def served(key: str, n: int, *, at: float = W + 1, node: str | None = None, cost: int = 10,
           step: float = 0.01) -> list[Served]:
    return [Served(key, node or NODES[i % 3], at + i * step, at + i * step + 0.005, cost) for i in range(n)]


def test_rate_bound_formula() -> None:
    assert rate_bound(30, 3, 0) == 30 + 2 * 10 + 1
    assert rate_bound(30, 3, 1) == 30 + 2 * 10 + 1 + 10
    assert rate_bound(30, 3, 0, restarted_admitted=7) == 58
    assert rate_bound(30, 1, 0) == 31


def test_rate_over_the_bound_in_one_window_is_reported() -> None:
    spec = KeySpec("k", rpm=30)
    assert check_rate(served("k", 51), spec, 3, [], 0.3) == []
    [violation] = check_rate(served("k", 52), spec, 3, [], 0.3)
    assert "sliding minute of 52 requests in window 10" in violation and "bound 51" in violation
    # 30 in a window and 30 more half a minute into the next: 15 of the first still count
    two = served("k", 30, at=W + 1) + served("k", 30, at=W + 90)
    assert check_rate(two, spec, 3, [], 0.3) == []
    # (14.5 of the first rounded up, as admission counts it)
    assert check_rate(two + served("k", 6, at=W + 91), spec, 3, [], 0.3) == []  # 30 + 6 + 15
    assert check_rate(two + served("k", 7, at=W + 91), spec, 3, [], 0.3) != []  # 30 + 7 + 15
    # a full window right after another: the boundary burst a fixed window lets through
    burst = served("k", 30, at=W + 59.5, step=0.001) + served("k", 30, at=W + 60.5, step=0.001)
    assert check_rate(burst, spec, 1, [], 0.3) != []
    assert check_rate(burst[:30] + served("k", 30, at=W + 60.5, step=2.0), spec, 1, [], 0.3) == []


def test_a_disturbed_node_and_a_restarted_boot_raise_the_bound_only_in_their_window() -> None:
    spec = KeySpec("k", rpm=30)
    history = served("k", 61)
    paused_now = [Fault("pause", ("b",), W + 5, W + 8)]
    paused_earlier = [Fault("pause", ("b",), W - 90, W - 80)]  # two windows before
    assert check_rate(history, spec, 3, paused_now, 0.3) == []
    assert check_rate(history, spec, 3, paused_earlier, 0.3) != []
    # a killed node: what it admitted just before the kill, which no peer heard of, is added
    before = served("k", 20, node="b", at=W + 9.8, step=0.01) + served("k", 38, node="a", at=W + 20)
    kill = [Fault("kill", ("b",), W + 10, W + 11)]
    # 20 by b within 0.3 s of its kill, bound 51 + 10 (b disturbed) + 20
    assert check_rate(before + served("k", 23, node="b", at=W + 30), spec, 3, kill, 0.3) == []
    assert check_rate(before + served("k", 24, node="b", at=W + 30), spec, 3, kill, 0.3) != []
    # b's last request, forwarded before the kill, read by the harness's loaded upstream after it: as unheard
    read_late = [*before[:19], Served("k", "b", W + 9.99, W + 10.02, 10), *before[20:]]
    assert check_rate(read_late + served("k", 23, node="b", at=W + 30), spec, 3, kill, 0.3) == []
    # answered, a request read after the kill was the next boot's
    next_boot = [*before[:19], Served("k", "b", W + 9.99, W + 10.02, 10, W + 10.05), *before[20:]]
    assert check_rate(next_boot + served("k", 23, node="b", at=W + 30), spec, 3, kill, 0.3) != []
    # admitted earlier than that, they were gossiped: its peers kept counting them
    early = served("k", 20, node="b", at=W + 2) + served("k", 38, node="a", at=W + 20)
    assert check_rate(early + served("k", 4, node="b", at=W + 30), spec, 3, kill, 0.3) != []  # 62 > 61


def test_requests_straddling_a_window_boundary_are_not_placed_in_either() -> None:
    s = [Served("k", "a", W - 0.002, W + 0.003, 1)]
    assert window_counts(s, "k") == {9: (0, 1), 10: (0, 1)}


def test_budget_overshoot_beyond_the_slack_is_reported() -> None:
    budget, estimate = 1000, 50
    spec = KeySpec("b", budget_nusd=budget, estimate_nusd=estimate, concurrency=2)
    slack = budget_slack(budget, 3, 0, estimate, 2)
    assert slack == 2 * max(84, 50) + 2 * 50
    assert check_budget(served("b", 10, cost=(budget + slack) // 10), spec, 3, [], {}) == []
    [violation] = check_budget(served("b", 10, cost=(budget + slack) // 10 + 1), spec, 3, [], {})
    assert "over by" in violation


def test_usage_counted_twice_or_lost_without_a_kill_is_reported() -> None:
    history = served("u", 10, cost=7)
    assert check_usage(history, {"u": Logged(10, 70)}, ["u"], [], {}) == []
    assert "counted twice" in check_usage(history, {"u": Logged(11, 77)}, ["u"], [], {})[0]
    assert "counted twice" in check_usage(history, {"u": Logged(10, 71)}, ["u"], [], {})[0]
    assert "may be lost" in check_usage(history, {"u": Logged(9, 63)}, ["u"], [], {})[0]
    assert check_usage(history, {}, ["u"], [], {}) != []


def answered(key: str, n: int, *, at: float, step: float, node: str = "a", cost: int = 7,
             answer_after: float = 0.01) -> list[Served]:
    return [Served(key, node, at + i * step - 0.005, at + i * step, cost, at + i * step + answer_after)
            for i in range(n)]


def test_usage_lost_to_a_sigkill_only_since_its_second_newest_own_append() -> None:
    history = answered("u", 10, at=W + 1, step=1.0)  # one a second, answered 10 ms after the upstream got it
    kill = [Fault("kill", ("a",), W + 10.1, W + 11)]
    # the last batch in the log was cut after the append at W+8.5 committed: what a answered
    # from then on (the requests at W+9 and W+10) may be missing, nothing older
    appends = {"a": [W + 2.5, W + 5.5, W + 8.5, W + 9.8]}
    assert check_usage(history, {"u": Logged(8, 56)}, ["u"], kill, appends) == []
    [violation] = check_usage(history, {"u": Logged(7, 49)}, ["u"], kill, appends)
    assert "at most 2 may be lost" in violation
    assert check_usage(history, {"u": Logged(8, 56)}, ["u"], [Fault("kill", ("b",), W + 10.1, W + 11)],
                       appends) != []  # b was killed, not a
    assert check_usage(history, {"u": Logged(8, 56)}, ["u"], kill, {"b": appends["a"]}) == []  # a never appended
    # a slow answer: the request at W+8 left the node after W+8.5, so it may have been settled after the cut
    slow = [*history[:7], Served("u", "a", W + 7.995, W + 8, 7, W + 8.6), *history[8:]]
    assert check_usage(slow, {"u": Logged(7, 49)}, ["u"], kill, appends) == []
    # unanswered (its client got an error): it may have been settled after the cut, whenever it was sent
    cut_off = [*history[:2], Served("u", "a", W + 2.995, W + 3, 7, None), *history[3:]]
    assert check_usage(cut_off, {"u": Logged(7, 49)}, ["u"], kill, appends) == []
    assert check_usage(cut_off, {"u": Logged(6, 42)}, ["u"], kill, appends) != []
    # served after the kill: the node's next boot had it
    two = {"a": [W + 6.5, W + 7.5]}
    assert check_usage(history, {"u": Logged(6, 42)}, ["u"], kill, two) == []  # W+7 ... W+10
    assert check_usage(history, {"u": Logged(6, 42)}, ["u"], [Fault("kill", ("a",), W + 8.1, W + 8.5)],
                       two) != []  # W+7 and W+8 only
    # killed after a Postgres outage before its retried batch (cut before the outage) was followed by
    # another append: everything it answered since the last append before the outage may be missing
    outage = {"a": [W + 2.5, W + 5.5, W + 9.9]}  # the outage from W+5.6 to W+9.5, the retry at W+9.9
    assert check_usage(history, {"u": Logged(5, 35)}, ["u"], kill, outage) == []  # W+6 ... W+10 lost
    assert check_usage(history, {"u": Logged(4, 28)}, ["u"], kill, outage) != []
    # with fewer than two appends of its own before the kill, anything the boot served may be missing
    assert check_usage(history, {}, ["u"], kill, {"a": [W + 9.9]}) == []


def test_a_request_the_killed_node_forwarded_may_be_lost_though_the_upstream_read_it_after_the_kill() -> None:
    # the fake upstream runs in the harness's process: loaded, it read the dead node's last request
    # 20 ms after the kill (seen with 6 busy loops on 2 cores); no answer came, and the log lacks it
    history = answered("u", 10, at=W + 1, step=1.0)
    kill = [Fault("kill", ("a",), W + 10.1, W + 11)]
    appends = {"a": [W + 2.5, W + 5.5, W + 8.5, W + 9.8]}
    read_late = Served("u", "a", W + 9.9, W + 10.12, 7, None)
    assert check_usage([*history, read_late], {"u": Logged(8, 56)}, ["u"], kill, appends) == []  # W+9, W+10, it
    [violation] = check_usage([*history, read_late], {"u": Logged(7, 49)}, ["u"], kill, appends)
    assert "at most 3 may be lost" in violation
    # answered, it was the next boot's (the dead one answers nothing), which settled it before
    answered_late = Served("u", "a", W + 9.9, W + 10.12, 7, W + 10.2)
    assert check_usage([*history, answered_late], {"u": Logged(8, 56)}, ["u"], kill, appends) != []
    # sent after the kill: the next boot's, answered or not
    sent_after = Served("u", "a", W + 10.15, W + 10.2, 7, None)
    assert check_usage([*history, sent_after], {"u": Logged(8, 56)}, ["u"], kill, appends) != []


def test_a_reservation_left_behind_is_reported() -> None:
    idle = [NodeReadout("a", 5, {}), NodeReadout("b", 5, {})]
    assert check_reservations(idle) == []
    assert "holds" in check_reservations([NodeReadout("a", 5, {}, reserved_nusd={"k:1": 9})])[0]
    assert "peers" in check_reservations([NodeReadout("a", 5, {}, peers_reserved_nusd={"k:1": 9})])[0]


def test_nodes_that_do_not_converge_are_reported() -> None:
    logged = {"k": Logged(3, 30)}
    same = [NodeReadout(n, 9, {"k": 30}) for n in NODES]
    assert check_convergence(same, logged) == []
    assert "positions" in check_convergence([*same[:2], NodeReadout("c", 8, {"k": 30})], logged)[0]
    assert "sees spend" in check_convergence([*same[:2], NodeReadout("c", 9, {"k": 20})], logged)[0]
    assert check_convergence(same, {"k": Logged(3, 31)}) != []
