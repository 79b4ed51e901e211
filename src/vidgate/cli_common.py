"""What the server-side commands share: their options, the settings, the store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vidgate.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from vidgate.store.sql import SQLStore

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory [env VIDGATE_DATA_DIR; default ./.vidgate]"),
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="TOML config file [env VIDGATE_CONFIG]")
]
Budget = Annotated[
    float | None,
    typer.Option(
        "--budget-usd-per-day", min=0, help="Refuse submits (402) past this cost per UTC day"
    ),
]
MaxInFlight = Annotated[
    int | None,
    typer.Option("--max-in-flight", min=1, help="Refuse submits (429) past this many runs going"),
]

Providers = Annotated[
    str | None,
    typer.Option(
        "--providers",
        help="Only these providers ([providers.X] names, comma-separated) make this key's "
        "videos; a model's other routes are skipped, and a model with none of them is refused",
    ),
]


def provider_list(value: str, settings: Settings) -> str:
    """``--providers`` checked against the configured providers, as stored (``a,b``); an
    unknown name ends the command with exit 2."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in settings.providers]
    if not names or unknown:
        known = ", ".join(sorted(settings.providers)) or "none"
        what = f"unknown provider(s) {', '.join(unknown)}" if unknown else "no provider named"
        typer.echo(f"error: --providers: {what}; the configured providers are {known}", err=True)
        raise typer.Exit(2)
    return ",".join(dict.fromkeys(names))


def _settings(
    data_dir: Path | None, config: Path | None, *, serving: bool = False, **overrides: object
) -> Settings:
    """The settings, or exit 2 saying what is wrong. ``serving``: the command serves
    ``/metrics`` (``serve``, ``worker``), so the metrics token must be there too."""
    try:
        settings = load_settings(config_file=config, data_dir=data_dir, overrides=overrides or None)
        if serving:
            settings.metrics_token()
        return settings
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


async def _open_store(settings: Settings) -> SQLStore:
    from vidgate.store.errors import StoreUnavailable
    from vidgate.store.sql import SQLStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return await SQLStore.open(
            settings.resolved_database_url,
            busy_timeout_s=settings.database_busy_timeout_s,
            durability=settings.durability,
        )
    except StoreUnavailable as exc:
        typer.echo(f"error: {exc}; start it, or check database_url, then try again", err=True)
        raise typer.Exit(1) from None
