"""The domain: runs, statuses, ids and request normalisation. No I/O here."""
