-- shieldes audit queries.
--
-- Run them as the read-only role, which sees only the audit views (never the raw events table):
--   psql "${SHIELDES_DATABASE_URL:-$(shieldes db url)}" -c 'SET ROLE shieldes_audit' -f examples/audit.sql
-- or give a login user the role:  CREATE USER auditor LOGIN PASSWORD '...' IN ROLE shieldes_audit;
--
-- Views: audit_log (config changes, secrets redacted), virtual_keys, usage_deltas (one row per
-- key/deployment/model/hour in each usage flush or compaction rollup), usage_daily (per key per UTC day).
-- Usage numbers are identical before and after compaction: rollups feed the same views.
-- Each query below starts with a `-- name:` line; tests run every one of them.

-- name: recent_config_changes
-- The last 50 config changes of the past 7 days, newest first.
SELECT position, recorded_at, actor, type, subject, data
FROM audit_log
WHERE recorded_at > now() - interval '7 days'
ORDER BY position DESC
LIMIT 50;

-- name: who_revoked_what
-- Every key revocation: when, by whom, which key.
SELECT recorded_at, actor, subject AS key_name, data->>'id' AS key_id
FROM audit_log
WHERE type = 'virtual_key.revoked'
ORDER BY position;

-- name: changes_per_actor
-- How many changes of each kind each actor made.
SELECT actor, type, count(*) AS changes, min(recorded_at) AS first, max(recorded_at) AS last
FROM audit_log
GROUP BY actor, type
ORDER BY actor, changes DESC;

-- name: key_inventory
-- Every virtual key ever created (display prefix only; the secret is never stored), with the prefix
-- and team it was created with (rotations and team changes are in audit_log).
SELECT key_name, key_id, prefix, team_id, created_at, revoked
FROM virtual_keys
ORDER BY created_at, key_name;

-- name: usage_per_key_per_day
-- Requests, tokens and cost per key per UTC day over the last 30 days.
SELECT day, key_name, requests, prompt_tokens, completion_tokens, cost_usd
FROM usage_daily
WHERE day > (now() AT TIME ZONE 'UTC')::date - 30
ORDER BY day, key_name;

-- name: top_spenders_this_month
-- The ten keys that spent most in the current calendar month (UTC).
SELECT key_name, sum(cost_usd) AS cost_usd, sum(requests) AS requests,
       sum(prompt_tokens + completion_tokens) AS tokens
FROM usage_daily
WHERE day >= date_trunc('month', now() AT TIME ZONE 'UTC')::date
GROUP BY key_name
ORDER BY cost_usd DESC, key_name
LIMIT 10;

-- name: cost_per_model
-- Cost and tokens per provider and model this month (cost_nusd is exact integer nano-USD).
SELECT provider, model, sum(requests) AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens,
       (sum(cost_nusd) / 1000000000.0)::numeric(24, 9) AS cost_usd
FROM usage_deltas
WHERE hour >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY provider, model
ORDER BY cost_usd DESC, provider, model;

-- name: media_units_per_model
-- What media calls were billed in besides tokens, per model this month: images billed per image,
-- seconds of audio (whisper) and characters (tts-1); recorded from schema 0017 on.
SELECT provider, model, sum(requests) AS requests, sum(images) AS images,
       round(sum(audio_seconds) / 60.0, 1) AS audio_minutes, sum(characters) AS characters,
       (sum(cost_nusd) / 1000000000.0)::numeric(24, 9) AS cost_usd
FROM usage_deltas
WHERE hour >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
  AND (images > 0 OR audio_seconds > 0 OR characters > 0)
GROUP BY provider, model
ORDER BY cost_usd DESC, provider, model;

-- name: hosted_tools_per_key_this_month
-- Hosted tool uses billed per use, per key this month: web searches (Claude's, OpenAI's
-- web_search_call items, Gemini grounding), file searches, code interpreter containers, and what
-- they cost apart from tokens; recorded from schema 0024 on.
SELECT key_name, sum(web_searches) AS web_searches, sum(file_searches) AS file_searches,
       sum(containers) AS containers, sum(tools_usd) AS tools_usd,
       sum(cost_usd) - sum(tools_usd) AS tokens_usd
FROM usage_daily
WHERE day >= date_trunc('month', now() AT TIME ZONE 'UTC')::date
  AND (web_searches > 0 OR file_searches > 0 OR containers > 0)
GROUP BY key_name
ORDER BY tools_usd DESC, key_name;

-- name: team_spend_this_month
-- Spend per team this month (usage is tagged with the key's team when it was made).
SELECT coalesce(team_id, '(no team)') AS team_id, sum(requests) AS requests,
       (sum(cost_nusd) / 1000000000.0)::numeric(24, 9) AS cost_usd
FROM usage_deltas
WHERE hour >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY 1
ORDER BY cost_usd DESC;
