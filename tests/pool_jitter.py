"""A filter for the fuzz tests that drive a node in their own process while hypothesis draws.

psycopg_pool sets each new connection's lifetime with a jitter drawn from the process-wide `random`
(`psycopg_pool.base._jitter`); when the node's pool opens a connection in the middle of a draw,
hypothesis sees the global generator moved and warns as if a strategy had used it. That draw is
the library's, in the background: the node's own draws are checked apart, and must stay none
(test_gateway_fuzz.py::test_request_ids_leave_the_process_random_alone)."""

from __future__ import annotations

import pytest

POOL_JITTER = pytest.mark.filterwarnings(
    "ignore:Do not use the `random` module inside strategies:hypothesis.errors.HypothesisDeprecationWarning")
