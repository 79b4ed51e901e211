"""Workers: claim runs, drive backends, keep leases."""
