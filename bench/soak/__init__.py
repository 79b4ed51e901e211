"""Soak: submit and follow runs without pause for N minutes while processes are restarted
(SIGTERM and SIGKILL), then count what was lost, doubled or answered with an unexpected 5xx.

Topology: on PostgreSQL (``--database-url``, or ``VIDGATE_BENCH_DATABASE_URL``) two
``serve --no-worker`` and two ``vidgate worker``; on SQLite one of each sharing the data
dir. Half the runs are testcard renders (240p, 1 s) and half are provider jobs at the fal
emulator, which runs in a process of its own and counts the jobs it was sent.

Clients behave as careful clients do: every submit carries an ``Idempotency-Key`` and is
sent again, to the next API process, when the connection fails; each accepted run is
followed by long-poll until it ends. A restart makes connections fail (expected, counted
apart); a 5xx answer is always counted as unexpected.

At the end, with submits stopped, every accepted run has ``--drain-s`` to end. A run that
has not ended, or that the API no longer knows, is lost. Two run ids for one idempotency
key, or two provider jobs for one run, are doubled. The report is printed and written to
``--report`` (``docs/soak.md`` by default) when ``--minutes`` is at least 5.

    make soak                      # 10 minutes on PostgreSQL, 3 restarts
    python -m bench.soak --minutes 1 --database-url ""   # SQLite
"""
