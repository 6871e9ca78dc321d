"""Client traffic for deploy/smoke.sh: official `openai` SDK clients (no retries: every failure
counts) call the compose stack through nginx without pause while the script revokes a key, stops
a node, and brings it back as a new container. Prints one line per phase and exits non-zero on
any client error, a revoked key still served, or a restarted node that gets no traffic.

    SMOKE_COMPOSE='["docker-compose", "-p", "x", ...]' python deploy/smoke_traffic.py URL KEY_A KEY_B
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import openai

MODEL = "gpt-4o-mini"
WORKERS = 4


@dataclass
class Phase:
    name: str
    ok: int = 0
    refused: int = 0  # 401 for the revoked key, as it should be
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


class Traffic:
    def __init__(self, url: str, key_a: str, key_b: str) -> None:
        self.clients = {k: openai.OpenAI(base_url=url + "/v1", api_key=k, max_retries=0, timeout=30.0)
                        for k in (key_a, key_b)}
        self.key_a, self.key_b = key_a, key_b
        self.phase = Phase("start")
        self.phases: list[Phase] = []
        self.revoking = False  # `key revoke` started: a 401 for key b is right from now on
        self.revoked_at: float | None = None  # when `key revoke` returned
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def begin(self, name: str) -> None:
        with self.lock:
            self.phase = Phase(name)
            self.phases.append(self.phase)

    def _one(self, key: str, stream: bool) -> None:
        started = time.monotonic()
        phase = self.phase
        try:
            client = self.clients[key]
            if stream:
                chunks = client.chat.completions.create(model=MODEL, stream=True,
                                                        messages=[{"role": "user", "content": "stream please"}])
                text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            else:
                reply = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
                text = reply.choices[0].message.content or ""
            if not text:
                raise RuntimeError("empty completion")
            if key == self.key_b and self.revoked_at is not None and started > self.revoked_at + 1.0:
                with self.lock:
                    phase.errors["revoked key served"] += 1
                return
            with self.lock:
                phase.ok += 1
                phase.latencies.append(time.monotonic() - started)
        except openai.AuthenticationError:
            with self.lock:
                if key == self.key_b and self.revoking:
                    phase.refused += 1
                else:
                    phase.errors["401"] += 1
        except openai.APIStatusError as exc:
            with self.lock:
                phase.errors[f"HTTP {exc.status_code}"] += 1
        except Exception as exc:
            with self.lock:
                phase.errors[type(exc).__name__] += 1

    def worker(self, n: int) -> None:
        i = 0
        while not self.stop.is_set():
            key = self.key_b if n == 0 else self.key_a
            self._one(key, stream=i % 2 == 1)
            i += 1

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.worker, args=(n,), daemon=True) for n in range(WORKERS)]
        for t in threads:
            t.start()
        return threads


def compose(*args: str) -> str:
    cmd = json.loads(os.environ["SMOKE_COMPOSE"]) + list(args)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def node_served(node: str) -> int:
    """Chat completions this node answered (its own /metrics, read inside its container)."""
    script = ("import urllib.request;print(urllib.request.urlopen("
              "'http://127.0.0.1:8080/metrics',timeout=5).read().decode())")
    text = compose("exec", "-T", node, "python", "-c", script)
    found = re.findall(r'^shieldes_requests_total\{route="/v1/chat/completions",status="2xx"\} (\S+)$', text, re.M)
    return int(float(found[0])) if found else 0


def wait_ready(node: str, timeout: float = 120.0) -> float:
    started = time.monotonic()
    script = "import urllib.request;urllib.request.urlopen('http://127.0.0.1:8080/ready',timeout=2)"
    cmd = [*json.loads(os.environ["SMOKE_COMPOSE"]), "exec", "-T", node, "python", "-c", script]
    while time.monotonic() - started < timeout:
        if subprocess.run(cmd, capture_output=True, timeout=60).returncode == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    raise SystemExit(f"error: {node} not ready after {timeout:.0f} s")


def report(p: Phase) -> str:
    lat = sorted(p.latencies)
    pct = (lambda q: f"{lat[min(len(lat) - 1, int(q * len(lat)))] * 1000:.0f}") if lat else (lambda q: "-")
    errors = ", ".join(f"{k}: {v}" for k, v in p.errors.items()) or "none"
    return (f"{p.name:<34} ok {p.ok:>5}  refused(revoked) {p.refused:>4}  errors {sum(p.errors.values()):>3} ({errors})"
            f"  p50 {pct(0.5)} ms  p99 {pct(0.99)} ms  max {pct(1.0)} ms")


def main() -> int:
    url, key_a, key_b = sys.argv[1:4]
    traffic = Traffic(url, key_a, key_b)
    traffic.begin("steady, 3 nodes")
    threads = traffic.run()
    time.sleep(5)

    traffic.begin("revoke key b")
    traffic.revoking = True
    compose("run", "--rm", "-T", "migrate", "shieldes", "key", "revoke", "smoke-b")
    traffic.revoked_at = time.monotonic()
    time.sleep(4)

    traffic.begin("stop shieldes-2 (SIGTERM, drain)")
    compose("stop", "shieldes-2")
    time.sleep(10)

    traffic.begin("shieldes-2 back as a new container")
    compose("rm", "-f", "-v", "shieldes-2")
    compose("up", "-d", "--no-deps", "shieldes-2")
    took = wait_ready("shieldes-2")
    before = node_served("shieldes-2")
    time.sleep(10)
    after = node_served("shieldes-2")

    traffic.stop.set()
    for t in threads:
        t.join(timeout=60)
    for p in traffic.phases:
        print(report(p))
    total_ok = sum(p.ok for p in traffic.phases)
    total_errors = sum(sum(p.errors.values()) for p in traffic.phases)
    refused = sum(p.refused for p in traffic.phases)
    print(f"shieldes-2 ready {took:.1f} s after its new container started; served {after - before} "
          f"requests through nginx in the next 10 s")
    print(f"TOTAL ok {total_ok}  client errors {total_errors}  revoked-key requests refused {refused}")
    failed = total_errors > 0 or refused == 0 or after - before <= 0
    print("SMOKE FAILED" if failed else "SMOKE PASSED: zero client errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
