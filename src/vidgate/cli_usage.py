"""``vidgate keys update`` (a key's budget and in-flight limit) and ``vidgate usage``: run on
the server, reading the store directly, like the other ``keys`` commands."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Annotated

import typer

from vidgate.cli_common import (
    Budget,
    ConfigFile,
    DataDir,
    MaxInFlight,
    Providers,
    _open_store,
    _settings,
    provider_list,
)
from vidgate.store.records import KeyRecord, UsageRow


def keys_update(
    name: str,
    budget_usd_per_day: Budget = None,
    max_in_flight: MaxInFlight = None,
    no_budget: Annotated[bool, typer.Option("--no-budget", help="Remove the daily budget")] = False,
    no_max_in_flight: Annotated[
        bool, typer.Option("--no-max-in-flight", help="Remove the in-flight limit")
    ] = False,
    providers: Providers = None,
    any_provider: Annotated[
        bool, typer.Option("--any-provider", help="Remove the key's provider restriction")
    ] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Set or remove an API key's daily budget (USD, UTC day), in-flight limit and the
    providers its runs may use."""
    from vidgate.store.errors import KeyNotFound

    if (
        (budget_usd_per_day is not None and no_budget)
        or (max_in_flight is not None and no_max_in_flight)
        or (providers is not None and any_provider)
    ):
        typer.echo("error: give a limit or its --no- option, not both", err=True)
        raise typer.Exit(2)
    settings = _settings(data_dir, config)
    limits: dict[str, float | int | str | None] = {}
    if budget_usd_per_day is not None or no_budget:
        limits["budget_usd_per_day"] = budget_usd_per_day
    if max_in_flight is not None or no_max_in_flight:
        limits["max_in_flight"] = max_in_flight
    if providers is not None or any_provider:
        limits["providers"] = provider_list(providers, settings) if providers else None
    if not limits:
        typer.echo(
            "error: nothing to change; give --budget-usd-per-day, --max-in-flight, "
            "--providers, --no-budget, --no-max-in-flight or --any-provider",
            err=True,
        )
        raise typer.Exit(2)

    async def main() -> KeyRecord:
        store = await _open_store(settings)
        try:
            return await store.set_limits(name, **limits)
        finally:
            await store.close()

    try:
        key = asyncio.run(main())
    except KeyNotFound as exc:
        typer.echo(f"error: {exc}; see vidgate keys list", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"API key {name!r}: {describe_limits(key)}")


def describe_limits(key: KeyRecord) -> str:
    budget = key.budget_usd_per_day
    flight = key.max_in_flight
    return (
        ("no daily budget" if budget is None else f"daily budget ${budget:g} (UTC day)")
        + ", "
        + ("no in-flight limit" if flight is None else f"at most {flight} runs in flight")
        + ", "
        + ("any provider" if key.providers is None else f"providers {key.providers}")
    )


def usage(
    key: Annotated[
        str | None, typer.Option("--key", help="Only this API key (name); default: all keys")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--from", help="First UTC day, YYYY-MM-DD (default: the last --days)"),
    ] = None,
    days: Annotated[
        int, typer.Option("--days", min=1, max=366, help="How many days from --from")
    ] = 30,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Runs, seconds of video and cost by UTC day, key and model."""
    from rich.console import Console
    from rich.table import Table

    from vidgate.runs.days import BadDay, day_bounds, parse_day, usage_range
    from vidgate.store.errors import KeyNotFound

    try:
        first, last = usage_range(parse_day(since, "--from"), days, dt.datetime.now(dt.UTC).date())
    except BadDay as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = _settings(data_dir, config)

    async def main() -> tuple[list[UsageRow], dict[str, str]]:
        store = await _open_store(settings)
        try:
            names = {k.id: k.name for k in await store.list_keys()}
            key_id = (await store.get_key(key)).id if key is not None else None
            return await store.usage(*day_bounds(first, last), api_key_id=key_id), names
        finally:
            await store.close()

    try:
        rows, names = asyncio.run(main())
    except KeyNotFound as exc:
        typer.echo(f"error: {exc}; see vidgate keys list", err=True)
        raise typer.Exit(1) from None
    table = Table(title=f"Usage {first} to {last} (UTC)")
    for column in ("Day", "Key", "Model"):
        table.add_column(column)
    for column in ("Runs", "Seconds", "Cost (USD)"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row.day,
            names.get(row.api_key_id, row.api_key_id),
            row.model,
            str(row.runs),
            f"{row.seconds:g}",
            f"{row.cost_usd:.4f}",
        )
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        str(sum(r.runs for r in rows)),
        f"{sum(r.seconds for r in rows):g}",
        f"{sum(r.cost_usd for r in rows):.4f}",
    )
    Console(width=120).print(table)


def register(app: typer.Typer, keys_app: typer.Typer) -> None:
    keys_app.command("update")(keys_update)
    app.command()(usage)
