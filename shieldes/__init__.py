"""shieldes: an OpenAI-compatible AI gateway whose cluster state lives in a Postgres event log."""

__version__ = "0.1.0"
