"""The per-request log: one row per HTTP request in daily-partitioned Postgres tables, written in
batches off the request path (see writer.py); all its SQL is in store.py."""
