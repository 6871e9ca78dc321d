"""Cluster state shared between nodes: gossip, the leader, limits and budgets across nodes."""

import os

# gRPC's own fork handlers pause and restart its threads around every fork() of the process. A
# fork from another thread while those threads run (subprocess with `user=`, as the embedded
# Postgres's pg_ctl is run) can crash or hang the process in them. No shieldes process forks a
# child that goes on using gRPC (workers are new processes), so the handlers are turned off before
# gRPC is first imported; an operator's own GRPC_ENABLE_FORK_SUPPORT still wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "0")
