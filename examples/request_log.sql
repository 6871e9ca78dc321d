-- Example queries over the per-request log (view `request_log`), readable by the shieldes_audit
-- role. Run them with:
--   psql "$SHIELDES_DATABASE_URL" -c 'SET ROLE shieldes_audit' -f examples/request_log.sql
-- Each query is preceded by a `-- name:` line; the test suite runs every one of them.

-- name: failed_requests_of_a_key
-- Which requests of key 'good' failed in the last day, on which deployment, and how slow.
SELECT started_at, request_id, route, model, deployment, attempts, status, error_code, latency_ms
FROM request_log
WHERE key_name = 'good' AND started_at > now() - interval '1 day'
  AND (status >= 400 OR error_code IS NOT NULL)
ORDER BY started_at DESC;

-- name: errors_per_deployment
-- Failures per deployment and error code in the last 24 hours (refusals carry no deployment), of
-- the clients' requests: the admin API's and the console's refusals are not the gateway's failures.
SELECT coalesce(deployment, '(none)') AS deployment, status, error_code, count(*) AS requests
FROM request_log
WHERE started_at > now() - interval '24 hours' AND (status >= 400 OR error_code IS NOT NULL)
  AND path NOT LIKE '/admin/%' AND path NOT LIKE '/ui/%'
GROUP BY 1, 2, 3
ORDER BY requests DESC;

-- name: failovers
-- Requests that needed more than one attempt, with the deployments tried in order.
SELECT started_at, request_id, model, failover_path, deployment, status
FROM request_log
WHERE attempts > 1
ORDER BY started_at DESC
LIMIT 100;

-- name: latency_per_model
-- Latency and time to first token percentiles per model over the last hour (successful calls).
SELECT model, count(*) AS requests,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50_ms,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS p99_ms,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_ms) AS p50_ttft_ms
FROM request_log
WHERE started_at > now() - interval '1 hour' AND status = 200 AND model IS NOT NULL
GROUP BY model
ORDER BY requests DESC;

-- name: cost_per_key_today
-- Requests, tokens and cost per key since midnight UTC, from individual requests.
SELECT key_name, count(*) AS requests, sum(prompt_tokens) AS prompt_tokens,
       sum(completion_tokens) AS completion_tokens, sum(cost_usd) AS cost_usd
FROM request_log
WHERE started_at >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AND key_name IS NOT NULL
GROUP BY key_name
ORDER BY cost_usd DESC NULLS LAST;

-- name: requests_per_route
-- Which endpoints clients call (unknown paths show as route 'unmatched' with their path).
SELECT route, CASE WHEN route = 'unmatched' THEN path END AS unknown_path, count(*) AS requests
FROM request_log
WHERE started_at > now() - interval '1 day'
GROUP BY 1, 2
ORDER BY requests DESC;

-- name: tiers_and_hosted_tools_per_key
-- What an invoice bills apart from list-price tokens, per key over the last 30 days: requests served
-- at each service tier (flex and priority cost the model's multiplier) and hosted tool uses (web
-- searches, file searches, code interpreter containers), with their cost.
SELECT key_name, coalesce(service_tier, 'unreported') AS service_tier, count(*) AS requests,
       coalesce(sum(web_searches), 0) AS web_searches, coalesce(sum(file_searches), 0) AS file_searches,
       coalesce(sum(containers), 0) AS containers, sum(cost_usd) AS cost_usd
FROM request_log
WHERE started_at > now() - interval '30 days' AND key_name IS NOT NULL
GROUP BY 1, 2
ORDER BY cost_usd DESC NULLS LAST;

-- who called the admin API (the console's calls included) in the last 7 days: reads, refused
-- attempts and probes of paths it does not serve (route `unmatched`: match the path as sent)
-- (`actor` as audit_log names the author of a change; NULL: a refused sign-in)
SELECT started_at, actor, client_ip, method, path, route, status
FROM request_log
WHERE path LIKE '/admin/%' AND started_at > now() - interval '7 days'
ORDER BY started_at DESC
LIMIT 100;

-- name: cost_per_tag_this_month
-- Requests and cost per tag (the client's `tags`, `metadata.tags` or x-litellm-tags) since the first
-- of the month, UTC. A request with several tags counts under each; untagged ones under none.
SELECT tag, count(*) AS requests, sum(cost_usd) AS cost_usd
FROM request_log, unnest(tags) AS tag
WHERE started_at >= date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
GROUP BY tag
ORDER BY cost_usd DESC NULLS LAST;

-- name: fallbacks_last_day
-- Requests a fallback answered in the last day (the request's own `fallbacks` or an alias's
-- `--fallback`), by requested model and the fallback that served: how often each model fails over.
SELECT model, fallback, upstream_model, count(*) AS requests, sum(cost_usd) AS cost_usd
FROM request_log
WHERE fallback IS NOT NULL AND started_at > now() - interval '1 day'
GROUP BY model, fallback, upstream_model
ORDER BY requests DESC;
