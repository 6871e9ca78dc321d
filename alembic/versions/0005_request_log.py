"""request log: per-request metadata and (opt-in) captured bodies, partitioned by day; the
`request_log` view for the audit role and `request_log_bodies` for a separate body-reader role

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        -- Not the event log: plain rows, one per HTTP request, written in batches by each node.
        -- Daily partitions are created by the nodes (ahead of time and on demand) and dropped by
        -- the leader past SHIELDES_REQUEST_LOG_RETENTION; rows are never DELETEd.
        CREATE TABLE request_log_rows (
            request_id        text NOT NULL,
            started_at        timestamptz NOT NULL,
            finished_at       timestamptz NOT NULL,
            node_id           text NOT NULL,
            method            text NOT NULL,
            route             text NOT NULL,
            path              text NOT NULL,
            status            smallint NOT NULL,
            error_code        text,
            key_id            text,
            key_name          text,
            team_id           text,
            model             text,
            upstream_model    text,
            deployment        text,
            attempts          smallint NOT NULL DEFAULT 0,
            failover_path     text[],
            stream            boolean NOT NULL DEFAULT false,
            latency_ms        double precision NOT NULL,
            ttfb_ms           double precision,
            ttft_ms           double precision,
            prompt_tokens     bigint,
            completion_tokens bigint,
            cached_tokens     bigint,
            reasoning_tokens  bigint,
            cost_nusd         bigint,
            client_ip         text,
            user_agent        text,
            trace_id          text,
            logged_at         timestamptz NOT NULL DEFAULT now()
        ) PARTITION BY RANGE (started_at);
        CREATE INDEX request_log_rows_started ON request_log_rows (started_at);
        CREATE INDEX request_log_rows_request ON request_log_rows (request_id);
        CREATE INDEX request_log_rows_key ON request_log_rows (key_id, started_at);
        CREATE INDEX request_log_rows_logged ON request_log_rows (logged_at);

        CREATE TABLE request_log_bodies (
            request_id    text NOT NULL,
            started_at    timestamptz NOT NULL,
            node_id       text NOT NULL,
            request_body  text,
            response_body text,
            truncated     boolean NOT NULL DEFAULT false
        ) PARTITION BY RANGE (started_at);
        CREATE INDEX request_log_bodies_request ON request_log_bodies (request_id);

        CREATE VIEW request_log AS
        SELECT request_id, started_at, finished_at, node_id, key_id, key_name, team_id, method, route, path,
               model, upstream_model, deployment, attempts, failover_path, status, error_code,
               latency_ms, ttfb_ms, ttft_ms, prompt_tokens, completion_tokens, cached_tokens,
               reasoning_tokens, (cost_nusd / 1000000000.0)::numeric(24, 9) AS cost_usd, cost_nusd,
               stream, client_ip, user_agent, trace_id, logged_at
        FROM request_log_rows;

        DO $$
        BEGIN
            CREATE ROLE shieldes_audit NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END
        $$;
        DO $$
        BEGIN
            CREATE ROLE shieldes_audit_bodies NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END
        $$;
        GRANT USAGE ON SCHEMA public TO shieldes_audit, shieldes_audit_bodies;
        GRANT SELECT ON request_log TO shieldes_audit;
        -- bodies are granted separately: metadata auditors do not see payloads
        GRANT SELECT ON request_log, request_log_bodies TO shieldes_audit_bodies;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        REVOKE ALL ON request_log FROM shieldes_audit;
        REVOKE ALL ON request_log, request_log_bodies FROM shieldes_audit_bodies;
        DROP VIEW request_log;
        DROP TABLE request_log_bodies;
        DROP TABLE request_log_rows;
        """
    )
