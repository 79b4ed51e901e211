"""``python -m bench.soak``: see the package's docstring."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import uvloop

from bench.report import ROOT, run_facts
from bench.servers import fresh_database
from bench.soak import __doc__ as DOC
from bench.soak.load import soak, started
from bench.soak.verdict import findings, report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=DOC, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--rate", type=float, default=2.0, help="submits a second")
    parser.add_argument("--drain-s", type=float, default=180.0)
    parser.add_argument(
        "--database-url", default=os.environ.get("VIDGATE_BENCH_DATABASE_URL"), help="PostgreSQL"
    )
    parser.add_argument("--report", type=Path, default=ROOT / "docs" / "soak.md")
    args = parser.parse_args()
    shown: list[str] = []  # the command, without the database's address
    for arg in sys.argv[1:]:
        if shown and shown[-1] == "--database-url":
            arg = "$URL"
        elif arg.startswith("--database-url="):
            arg = "--database-url=$URL"
        shown.append(arg)
    args.command = ["python", "-m", "bench.soak", *shown]
    facts = run_facts(datetime.now(UTC), {})  # the code the processes run
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        url = stack.enter_context(fresh_database(args.database_url)) if args.database_url else None
        setup = stack.enter_context(started(Path(tmp), url))
        tally = uvloop.run(soak(setup, args.minutes, args.restarts, args.rate, args.drain_s))
        found = uvloop.run(findings(setup, tally))
        bad = found.lost or found.doubled or tally.unexpected
        if bad:  # the processes' logs outlive the run
            kept = Path(tempfile.mkdtemp(prefix="vidgate-soak-logs-"))
            for log in Path(tmp).glob("*.log"):
                shutil.copy(log, kept)
            print(f"the processes' logs are in {kept}")
    written = report(setup, tally, found, args, facts)
    print(written)
    if args.minutes >= 5:
        args.report.write_text(written)
        print(f"wrote {args.report}")
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
