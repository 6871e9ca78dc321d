"""Bring configuration from other gateways (Bifrost config.json, LiteLLM config.yaml) and from
shieldes' own export into shieldes, and write shieldes configuration back out in those shapes."""
