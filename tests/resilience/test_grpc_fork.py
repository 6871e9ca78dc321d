"""A node forks (pg_ctl run as the embedded Postgres's user) while its gossip threads run: the fork
must not crash or hang the process in gRPC's fork handlers (the package turns them off)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PROGRAM = textwrap.dedent("""
    import asyncio, os, subprocess, threading, time
    import shieldes.cluster
    import grpc
    from shieldes.cluster import gossip_pb2, gossip_pb2_grpc

    class Servicer(gossip_pb2_grpc.GossipServicer):
        async def Push(self, request, context):
            return gossip_pb2.Ack(accepted=True)

    def fork_repeatedly(stop):
        while not stop.is_set():  # user= makes subprocess fork() rather than vfork()
            subprocess.run(["true"], user=os.getuid(), check=True)

    async def main():
        server = grpc.aio.server()
        gossip_pb2_grpc.add_GossipServicer_to_server(Servicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        stop = threading.Event()
        forker = threading.Thread(target=fork_repeatedly, args=(stop,))
        forker.start()
        end, calls = time.monotonic() + 4, 0
        while time.monotonic() < end:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for _ in range(10):
                    await gossip_pb2_grpc.GossipStub(channel).Push(gossip_pb2.Envelope(payload=b"x"))
                    calls += 1
        stop.set()
        forker.join()
        await server.stop(0)
        print("calls", calls)

    asyncio.run(main())
""")


def test_forking_while_gossip_threads_run_neither_crashes_nor_hangs() -> None:
    done = subprocess.run([sys.executable, "-X", "faulthandler", "-c", PROGRAM], capture_output=True, text=True,
                          timeout=60)
    assert "Fatal Python error" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("calls "), done.stdout
