#!/usr/bin/env bash
# Set up a gateway from nothing: a provider, prices, a team, a key with limits and a budget.
# Admin commands write events straight to Postgres (SHIELDES_DATABASE_URL, or the embedded one).
#   OPENAI_API_KEY=sk-... examples/admin.sh
set -euo pipefail
SHIELDES="${SHIELDES_BIN:-shieldes}"   # e.g. SHIELDES_BIN="python -m shieldes" from a checkout

$SHIELDES db upgrade

# A deployment: nodes read the upstream key from $OPENAI_API_KEY at call time (never stored).
$SHIELDES provider add openai --type openai --base-url https://api.openai.com/v1 \
  --api-key-env OPENAI_API_KEY --models gpt-4o,gpt-4o-mini
# A second deployment of gpt-4o gets a third of its traffic; `openai/gpt-4o` still pins the first.
# $SHIELDES provider add openai-eu --type openai --base-url https://eu.example.com/v1 \
#   --api-key-env OPENAI_EU_KEY --models gpt-4o --weight 0.5
$SHIELDES provider add anthropic --type anthropic --base-url https://api.anthropic.com \
  --api-key-env ANTHROPIC_API_KEY --models claude-3-5-sonnet-20241022
$SHIELDES provider list

# Prices in USD per million tokens: usage and budgets are accounted with them.
$SHIELDES pricing set gpt-4o --input 2.50 --output 10.00
$SHIELDES pricing set gpt-4o-mini --input 0.15 --output 0.60
$SHIELDES pricing set claude-3-5-sonnet-20241022 --input 3.00 --output 15.00

# A team with a monthly budget, and a key in it with rate limits and its own daily budget.
$SHIELDES team create research --budget 500 --budget-period 1mo
$SHIELDES --json key create --name demo --team research --models gpt-4o-mini,gpt-4o \
  --rpm 60 --tpm 100000 --budget 5 --budget-period 1d | tee /tmp/shieldes-demo-key.json
echo "the secret above is shown once; export SHIELDES_KEY=<key> to run the examples"

# Change the budget later; it applies cluster-wide within milliseconds.
$SHIELDES budget set demo --amount 10 --period 1d
$SHIELDES budget show demo

# What was spent, and who changed what (a hash-chained audit log).
$SHIELDES usage
$SHIELDES audit log --limit 20
$SHIELDES audit verify
