#!/usr/bin/env bash
# End-to-end check of the compose stack, as an operator would run it:
#   builds the image, brings up Postgres + migration + 3 nodes + nginx (+ a fake OpenAI upstream),
#   configures a provider and two keys, then sends traffic through nginx without pause while it
#   revokes one key, stops a node and brings it back as a new container; reports every client
#   error (there must be none) and exits non-zero on any.
#
#   deploy/smoke.sh            # from anywhere; about 2 minutes once base images are present
#
# Uses Docker (docker compose or docker-compose) when a Docker daemon answers, else Podman with
# docker-compose 1.29 talking to `podman system service` (podman-compose does not honour
# depends_on conditions). Needs python3 with the `openai` package on the host (pip install -e
# '.[dev]'). Env: SMOKE_PORT (18080), SMOKE_PROJECT (shieldes-smoke), SMOKE_KEEP=1 to leave the
# stack running afterwards.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEPLOY=$ROOT/deploy
PROJECT=${SMOKE_PROJECT:-shieldes-smoke}
PORT=${SMOKE_PORT:-18080}
WORK=$(mktemp -d)
PIDS=()
COMPOSE=()
log() { printf '== %s %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() { echo "error: $*" >&2; exit 1; }

cleanup() {
  local rc=$?
  if [ ${#COMPOSE[@]} -gt 0 ] && [ -z "${SMOKE_KEEP:-}" ]; then
    log "tearing down"
    "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -f "$DEPLOY/.smoke-compose.yml" "$DEPLOY/.smoke-override.yml"
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT INT TERM

# --- engine -------------------------------------------------------------------------------------
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  ENGINE=docker
  if docker compose version >/dev/null 2>&1; then BASE=(docker compose); else BASE=(docker-compose); fi
elif command -v podman >/dev/null 2>&1; then
  ENGINE=podman
  command -v docker-compose >/dev/null || die "podman needs docker-compose (apt-get install -y docker-compose)"
  podman system service --time=0 "unix://$WORK/podman.sock" >/dev/null 2>&1 &
  PIDS+=($!)
  for _ in $(seq 100); do [ -S "$WORK/podman.sock" ] && break; sleep 0.1; done
  [ -S "$WORK/podman.sock" ] || die "podman system service did not start"
  export DOCKER_HOST=unix://$WORK/podman.sock
  BASE=(docker-compose)
else
  die "neither a Docker daemon nor podman is available"
fi
python3 -c "import openai" 2>/dev/null || die "the host's python3 needs the openai package (pip install -e '.[dev]')"
log "engine: $ENGINE, compose: ${BASE[*]}"

# Compose v1 refuses the top-level `name:` key (the project name is given with -p instead).
grep -v '^name:' "$DEPLOY/docker-compose.yml" >"$DEPLOY/.smoke-compose.yml"
cat >"$DEPLOY/.smoke-override.yml" <<'EOF'
services:
  fake-openai:   # the test suite's fake provider, speaking the OpenAI wire format
    image: shieldes:${SHIELDES_VERSION}
    working_dir: /app
    command: ["python", "-m", "tests.fake_upstream", "--host", "0.0.0.0", "--port", "9000",
              "--completion-tokens", "8"]
    volumes:
      - ../tests:/app/tests:ro
    healthcheck:
      disable: true
EOF
cat >"$WORK/env" <<EOF
POSTGRES_PASSWORD=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
SHIELDES_CLUSTER_SECRET=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
SHIELDES_ENCRYPTION_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
SHIELDES_ADMIN_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')
SHIELDES_VERSION=smoke
SHIELDES_PUBLIC_PORT=$PORT
OPENAI_API_KEY=smoke-upstream-key
EOF
COMPOSE=("${BASE[@]}" --env-file "$WORK/env" -p "$PROJECT" -f "$DEPLOY/.smoke-compose.yml" -f "$DEPLOY/.smoke-override.yml")
"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true

# --- build and start ----------------------------------------------------------------------------
log "building the image"
t0=$(date +%s)
FORMAT=(); [ "$ENGINE" = podman ] && FORMAT=(--format docker)  # keep the HEALTHCHECK
"$ENGINE" build -q "${FORMAT[@]}" -f "$DEPLOY/Dockerfile" -t shieldes:smoke "$ROOT" >"$WORK/build.log" 2>&1 \
  || { tail -n 30 "$WORK/build.log" >&2; die "image build failed"; }
log "image built in $(( $(date +%s) - t0 )) s"

if [ "$ENGINE" = podman ]; then
  # No systemd here to run healthchecks on schedule: run them ourselves, as compose waits on them.
  ( while sleep 2; do
      for c in $(podman ps -q --filter "label=com.docker.compose.project=$PROJECT"); do
        podman healthcheck run "$c" >/dev/null 2>&1 || true
      done
    done ) &
  PIDS+=($!)
fi

log "compose up"
t0=$(date +%s)
if ! "${COMPOSE[@]}" up -d >"$WORK/up.log" 2>&1; then
  cat "$WORK/up.log" >&2
  "${COMPOSE[@]}" logs --tail=30 >&2 || true
  die "compose up failed"
fi
for _ in $(seq 240); do
  curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fsS "http://127.0.0.1:$PORT/ready" >/dev/null || die "the stack did not become ready through nginx"
log "stack healthy through nginx in $(( $(date +%s) - t0 )) s"

# --- configure ----------------------------------------------------------------------------------
admin() {  # `shieldes ...` in a one-off container; retries name-resolution hiccups right after `up`
  local out
  for _ in 1 2 3 4 5; do
    if out=$("${COMPOSE[@]}" run --rm -T migrate shieldes "$@" 2>"$WORK/admin.err"); then echo "$out"; return 0; fi
    sleep 1
  done
  cat "$WORK/admin.err" >&2
  return 1
}
admin provider add fake --type openai --base-url http://fake-openai:9000/v1 --api-key-env OPENAI_API_KEY \
  --models gpt-4o-mini --json >/dev/null
KEY_A=$(admin key create --name smoke-a --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
KEY_B=$(admin key create --name smoke-b --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
log "provider and keys configured"

# --- traffic ------------------------------------------------------------------------------------
log "traffic through nginx: revoke a key, stop shieldes-2, bring it back"
SMOKE_COMPOSE=$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' "${COMPOSE[@]}") \
  python3 "$DEPLOY/smoke_traffic.py" "http://127.0.0.1:$PORT" "$KEY_A" "$KEY_B"
