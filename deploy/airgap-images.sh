#!/usr/bin/env bash
# Builds local images under the names the deploy files use (python:3.11-slim, postgres:16,
# nginx:1.27-alpine) from a Debian bookworm root filesystem, for hosts that reach a Debian mirror
# but no container registry. They are functional equivalents, not the public images: Postgres is
# Debian's 15 and nginx Debian's 1.22 (deploy/nginx.conf uses nothing newer).
#
#   sudo deploy/airgap-images.sh            # needs debootstrap and podman or docker; ~1-2 minutes
#
# Set MIRROR to use another Debian mirror (default: the first one apt is configured with).
set -euo pipefail

ENGINE=${ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$ENGINE" ] || { echo "error: neither podman nor docker is installed" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (apt-get install -y debootstrap)" >&2; exit 1; }
if [ -z "${MIRROR:-}" ]; then
  MIRROR=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
    | awk '{print $2}' | grep -v security | head -n1 || true)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

have() { "$ENGINE" image inspect "$1" >/dev/null 2>&1; }

if ! have localhost/bookworm:base; then
  echo "== debootstrap bookworm from $MIRROR"
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -n 20 "$WORK/debootstrap.log" >&2; exit 1; }
  tar -C "$WORK/rootfs" -c . | "$ENGINE" import - localhost/bookworm:base
  rm -rf "$WORK/rootfs"
fi

build() {  # build TAG <<Dockerfile (context: $WORK/ctx)
  local tag=$1
  if have "$tag"; then echo "== $tag present"; return; fi
  echo "== building $tag"
  "$ENGINE" build -q -t "$tag" -f - "$WORK/ctx" >/dev/null
}

mkdir -p "$WORK/ctx"
cp /etc/ssl/certs/ca-certificates.crt "$WORK/ctx/host-ca.crt"  # HTTPS to PyPI may go through a proxy

build docker.io/library/python:3.11-slim <<'EOF'
FROM localhost/bookworm:base
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* && ln -sf /usr/bin/python3 /usr/local/bin/python && ln -sf /usr/bin/pip3 /usr/local/bin/pip
COPY host-ca.crt /usr/local/share/ca-certificates/host-ca.crt
RUN update-ca-certificates >/dev/null
ENV PIP_BREAK_SYSTEM_PACKAGES=1 REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
EOF

cat >"$WORK/ctx/pg-entrypoint.sh" <<'EOF'
#!/bin/sh
# Honours POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB like the public image.
set -e
BIN=/usr/lib/postgresql/15/bin
PGDATA=${PGDATA:-/var/lib/postgresql/data}
mkdir -p "$PGDATA" /run/postgresql && chown -R postgres:postgres "$PGDATA" /run/postgresql
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "$POSTGRES_PASSWORD" >/tmp/pwfile
  su postgres -c "$BIN/initdb -D $PGDATA -U ${POSTGRES_USER:-postgres} --pwfile=/tmp/pwfile -A scram-sha-256 -E UTF8 --locale=C.UTF-8" >/dev/null
  rm -f /tmp/pwfile
  echo "host all all 0.0.0.0/0 scram-sha-256" >>"$PGDATA/pg_hba.conf"
  su postgres -c "$BIN/pg_ctl -D $PGDATA -o '-c listen_addresses=' -w start" >/dev/null
  if [ -n "$POSTGRES_DB" ] && [ "$POSTGRES_DB" != postgres ]; then
    PGPASSWORD=$POSTGRES_PASSWORD su postgres -c "psql -h /run/postgresql -U ${POSTGRES_USER:-postgres} -d postgres -c 'CREATE DATABASE \"$POSTGRES_DB\"'" >/dev/null
  fi
  su postgres -c "$BIN/pg_ctl -D $PGDATA -w stop" >/dev/null
fi
exec su postgres -c "exec $BIN/postgres -D $PGDATA -c listen_addresses='*'"
EOF
build docker.io/library/postgres:16 <<'EOF'
FROM localhost/bookworm:base
RUN apt-get update && apt-get install -y --no-install-recommends postgresql-15 && rm -rf /var/lib/apt/lists/*
COPY pg-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod +x /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
EXPOSE 5432
CMD ["/usr/local/bin/docker-entrypoint.sh"]
EOF

build docker.io/library/nginx:1.27-alpine <<'EOF'
FROM localhost/bookworm:base
RUN apt-get update && apt-get install -y --no-install-recommends nginx-light && rm -rf /var/lib/apt/lists/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
CMD ["nginx", "-g", "daemon off;"]
EOF
echo "== images ready"
