#!/usr/bin/env bash
# The HTTP API with curl. Usage: SHIELDES_KEY=sk-shd-... examples/curl.sh
#   SHIELDES_KEY              a virtual key (required; `shieldes key create --name demo --secret-only`)
#   SHIELDES_URL              gateway base URL (default http://127.0.0.1:8080)
#   SHIELDES_MODEL            chat model (default gpt-4o-mini, as in the README quickstart)
#   SHIELDES_ANTHROPIC_MODEL  model for the Anthropic-shaped call (default: SHIELDES_MODEL)
#   SHIELDES_EMBEDDING_MODEL  embedding model (default text-embedding-3-small; a provider must list it)
set -euo pipefail
URL="${SHIELDES_URL:-http://127.0.0.1:8080}"
KEY="${SHIELDES_KEY:?set SHIELDES_KEY to a virtual key (shieldes key create --name demo)}"
MODEL="${SHIELDES_MODEL:-gpt-4o-mini}"

echo "== health and readiness"
curl -fsS "$URL/health"; echo
curl -fsS "$URL/ready"; echo

echo "== models this key may use"
curl -fsS "$URL/v1/models" -H "Authorization: Bearer $KEY"; echo

echo "== chat completion"
curl -fsS "$URL/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
  -d "{\"model\": \"$MODEL\", \"messages\": [{\"role\": \"user\", \"content\": \"Say hello\"}]}"
echo

echo "== streamed chat completion (server-sent events; -N turns off curl's buffering)"
curl -fsSN "$URL/v1/chat/completions" \
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
  -d "{\"model\": \"$MODEL\", \"stream\": true, \"stream_options\": {\"include_usage\": true},
       \"messages\": [{\"role\": \"user\", \"content\": \"Count to three\"}]}"

echo "== embeddings"
curl -sS "$URL/v1/embeddings" \
  -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \
  -d "{\"model\": \"${SHIELDES_EMBEDDING_MODEL:-text-embedding-3-small}\", \"input\": \"hello\"}"
echo

echo "== Anthropic Messages shape (x-api-key works too)"
curl -sS "$URL/v1/messages" \
  -H "x-api-key: $KEY" -H "anthropic-version: 2023-06-01" -H "Content-Type: application/json" \
  -d "{\"model\": \"${SHIELDES_ANTHROPIC_MODEL:-$MODEL}\", \"max_tokens\": 64,
       \"messages\": [{\"role\": \"user\", \"content\": \"Say hello\"}]}"
echo

echo "== an error, in the OpenAI shape: a bad key gives 401 invalid_api_key"
curl -sS -o /dev/stdout -w "\nHTTP %{http_code}\n" "$URL/v1/models" -H "Authorization: Bearer sk-shd-wrong"
