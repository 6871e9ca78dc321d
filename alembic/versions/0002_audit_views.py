"""audit views (audit_log, usage_deltas, usage_daily, virtual_keys) and the read-only audit role

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE VIEW virtual_keys AS
        SELECT e.data->>'id' AS key_id, e.data->>'name' AS key_name, e.data->>'prefix' AS prefix,
               e.data->>'team_id' AS team_id, e.recorded_at AS created_at,
               EXISTS (SELECT 1 FROM events r WHERE r.type = 'virtual_key.revoked'
                       AND r.data->>'id' = e.data->>'id') AS revoked
        FROM events e
        WHERE e.type = 'virtual_key.created';

        -- Raw flushes and compaction rollups expanded to one row per (key, deployment, model, hour).
        CREATE VIEW usage_deltas AS
        SELECT e.position, e.recorded_at, e.stream, e.type AS source,
               d.key_id, d.team_id, d.provider, d.model,
               to_timestamp(d.hour * 3600) AS hour,
               d.requests, d.prompt_tokens, d.completion_tokens, d.cost_nusd
        FROM events e
        CROSS JOIN LATERAL jsonb_to_recordset(e.data->'deltas') AS d(
            key_id text, team_id text, provider text, model text, hour bigint,
            requests bigint, prompt_tokens bigint, completion_tokens bigint, cost_nusd bigint)
        WHERE e.type IN ('usage.recorded', 'usage.rolled_up');

        CREATE VIEW usage_daily AS
        SELECT coalesce(k.key_name, u.key_id) AS key_name,
               u.key_id,
               (u.hour AT TIME ZONE 'UTC')::date AS day,
               sum(u.requests)::bigint AS requests,
               sum(u.prompt_tokens)::bigint AS prompt_tokens,
               sum(u.completion_tokens)::bigint AS completion_tokens,
               (sum(u.cost_nusd) / 1000000000.0)::numeric(24, 9) AS cost_usd
        FROM usage_deltas u
        LEFT JOIN virtual_keys k ON k.key_id = u.key_id
        GROUP BY 1, 2, 3;

        -- Config changes only, secrets redacted (key hashes and provider secret references).
        CREATE VIEW audit_log AS
        SELECT e.position, e.recorded_at,
               coalesce(e.metadata->>'actor', 'unknown') AS actor,
               e.type,
               coalesce(e.data->>'name', k.key_name, e.data->>'model', e.data->>'subject_id',
                        e.data->>'key_id', e.data->>'id') AS subject,
               e.data - 'key_hash' - 'secret_ref' AS data,
               e.hash
        FROM events e
        LEFT JOIN virtual_keys k
          ON k.key_id = coalesce(e.data->>'id', e.data->>'key_id', e.data->>'subject_id')
        WHERE e.stream = 'config';

        DO $$
        BEGIN
            CREATE ROLE shieldes_audit NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
        END
        $$;
        GRANT USAGE ON SCHEMA public TO shieldes_audit;
        GRANT SELECT ON audit_log, usage_daily, usage_deltas, virtual_keys TO shieldes_audit;
        """
    )


def downgrade() -> None:
    op.execute(
        """
        REVOKE ALL ON audit_log, usage_daily, usage_deltas, virtual_keys FROM shieldes_audit;
        REVOKE USAGE ON SCHEMA public FROM shieldes_audit;
        DROP VIEW audit_log;
        DROP VIEW usage_daily;
        DROP VIEW usage_deltas;
        DROP VIEW virtual_keys;
        """
    )
