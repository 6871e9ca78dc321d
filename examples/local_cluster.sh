#!/usr/bin/env bash
# A 3-node cluster on one machine sharing the embedded Postgres. Ctrl-C stops all three.
#   examples/local_cluster.sh            # nodes on :8080 :8081 :8082, gossip on :7946 :7947 :7948
# Each node needs its own node id, HTTP port and gossip port; they share the database (with
# SHIELDES_DATABASE_URL unset, the embedded Postgres in the data dir, ~/.local/share/shieldes, as
# every shieldes command: the keys you created are there) and the cluster secret.
set -euo pipefail
SHIELDES="${SHIELDES_BIN:-shieldes}"
export SHIELDES_CLUSTER_SECRET="${SHIELDES_CLUSTER_SECRET:-local-cluster-secret}"
export SHIELDES_ADVERTISE_HOST=127.0.0.1
BASE_PORT="${BASE_PORT:-8080}"
BASE_GOSSIP="${BASE_GOSSIP:-7946}"
N="${NODES:-3}"

$SHIELDES db upgrade >/dev/null   # migrations first, once, before any node starts

pids=()
stop() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true   # nodes drain in-flight requests and flush usage before they exit
}
trap stop EXIT INT TERM

for i in $(seq 0 $((N - 1))); do
  peers=""
  for j in $(seq 0 $((N - 1))); do
    [ "$j" = "$i" ] || peers="${peers:+$peers,}127.0.0.1:$((BASE_GOSSIP + j))"
  done
  SHIELDES_NODE_ID="node-$((i + 1))" SHIELDES_PORT=$((BASE_PORT + i)) \
    SHIELDES_GOSSIP_PORT=$((BASE_GOSSIP + i)) SHIELDES_PEERS="$peers" \
    $SHIELDES serve &
  pids+=($!)
done

for i in $(seq 0 $((N - 1))); do
  port=$((BASE_PORT + i))
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/ready" >/dev/null || { echo "node on :$port did not become ready" >&2; exit 1; }
  echo "node-$((i + 1)) ready on http://127.0.0.1:$port (gossip :$((BASE_GOSSIP + i)))"
done
echo "cluster up; try: $SHIELDES cluster status"
wait
