"""bench/bench_instructions.py reads callgrind's dumps right: a dump's count is its `summary:`
line (every thread's instructions since the zero), and a function's own instructions leave out
the inclusive cost a call line carries, name a function once under callgrind's compressed names
and merge a recursion's 'N copies."""

from __future__ import annotations

from pathlib import Path

from bench import bench_instructions as bi

# as callgrind 3.19 writes a dump with --dump-instr=no (positions: line, compressed names)
DUMP = """# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 4242
cmd:  python -m shieldes serve
part: 2

desc: Trigger: dump node-2

positions: line
events: Ir
summary: 1500


ob=(1) /usr/lib/libpython3.11.so.1.0
fl=(1) ceval.c
fn=(1) _PyEval_EvalFrameDefault
10 400
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfi=(2) memchr.S
cfn=(2) __memchr_avx2
calls=3 5
* 900
+1 100
cfn=(1)
calls=1 10
* 50

fn=(3) _PyEval_EvalFrameDefault'2
12 30

ob=(2)
fl=(2)
fn=(2)
5 600

totals: 2100
"""


def test_self_costs_leave_out_call_lines_and_merge_names(tmp_path: Path) -> None:
    dump = tmp_path / "node.4242.2"
    dump.write_text(DUMP)
    assert bi.self_costs(dump) == {
        "libpython3.11.so.1.0:_PyEval_EvalFrameDefault": 400 + 100 + 30,
        "libc.so.6:__memchr_avx2": 600,
    }


def test_a_dumps_count_is_its_summary(tmp_path: Path) -> None:
    (tmp_path / "node.4242.2").write_text(DUMP)
    # (totals: 2100 would count what callgrind carried over from before the zero)
    assert bi.dumped_total(tmp_path / "node", 4242, 2) == 1500


def test_the_fit_tells_the_clocks_share_from_the_requests() -> None:
    # windows of about the same length, the long one overrun: 2M a second by the clock, 900k a request
    windows = [(t, n, round(2_000_000 * t + 900_000 * n)) for t, n in ((6.0, 10), (6.4, 30), (5.9, 10), (7.5, 30))]
    rate, per_request = bi.fit(windows)
    assert abs(rate - 2_000_000) < 1 and abs(per_request - 900_000) < 1


def test_a_cache_simulated_dumps_count_is_its_estimated_cycles(tmp_path: Path) -> None:
    # --cache-sim: the summary carries the misses too; callgrind leaves trailing zero columns out
    dump = DUMP.replace("events: Ir\nsummary: 1500",
                        "events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw\nsummary: 1500 700 300 20 30 5 2")
    (tmp_path / "node.4242.2").write_text(dump)
    assert bi.dumped_total(tmp_path / "node", 4242, 2) == 1500 + 10 * (20 + 30 + 5) + 100 * 2
