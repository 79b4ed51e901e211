"""Run events: every change of a run, published after its commit, to whoever waits for it.

One hub per process fans changes out in memory (:mod:`vidgate.events.hub`). Changes made by
other processes reach it through a feed: ``LISTEN/NOTIFY`` on PostgreSQL
(:mod:`vidgate.events.pg_feed`) or one ``PRAGMA data_version`` watcher per process on a
shared SQLite file (:mod:`vidgate.events.sqlite_feed`). Long-poll, server-sent events, the
webhook sender and the worker's wake-up all subscribe to the hub; none of them polls.
"""

from vidgate.events.hub import RunChange, RunEvents, Watch

__all__ = ["RunChange", "RunEvents", "Watch"]
