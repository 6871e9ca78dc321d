"""A budget's limit in nUSD is worked out once, with the budget, as admission compared it."""

from __future__ import annotations

import pickle
from dataclasses import replace

from shieldes.projections.state import Budget
from shieldes.usage.admission import NUSD


def test_a_budget_carries_its_limit_in_nusd() -> None:
    for amount in (0.1, 1.005, 20, 1e-9, 12345.678901234):
        assert Budget(amount, "30d").limit_nusd == round(amount * NUSD)
    budget = Budget(0.5, "1d")
    assert budget == Budget(0.5, "1d") and hash(budget) == hash(Budget(0.5, "1d"))
    assert repr(budget) == "Budget(amount_usd=0.5, period='1d')"
    assert replace(budget, amount_usd=2.25).limit_nusd == 2_250_000_000  # (a changed amount: its own)
    assert pickle.loads(pickle.dumps(budget)).limit_nusd == 500_000_000
