"""The ``vidgate`` command line."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vidgate.config import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from vidgate.store.records import KeyRecord
    from vidgate.store.sql import SQLStore

app = typer.Typer(
    help="vidgate: a self-hosted gateway for AI video generation.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Data directory [env VIDGATE_DATA_DIR; default ./.vidgate]"),
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", help="TOML config file [env VIDGATE_CONFIG]")
]


def _settings(data_dir: Path | None, config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config_file=config, data_dir=data_dir, overrides=overrides or None)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


async def _open_store(settings: Settings) -> SQLStore:
    from vidgate.store.sql import SQLStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return await SQLStore.open(settings.resolved_database_url)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run `vidgate worker` apart")
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Start the HTTP API (and, unless --no-worker, an in-process worker)."""
    import uvicorn

    from vidgate import logs
    from vidgate.server.app import create_app
    from vidgate.worker.runtime import run_worker

    settings = _settings(data_dir, config)
    server = settings.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    first_key = asyncio.run(_first_start_key(settings))
    shown_host = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host  # noqa: S104
    base = settings.server.public_base_url or f"http://{shown_host}:{server.port}"
    _print_welcome(base, first_key, settings)
    logs.configure(log_level.upper())
    with_worker = not no_worker and settings.worker.enabled
    uvicorn.run(
        create_app(settings, background=run_worker if with_worker else None),
        host=server.host,
        port=server.port,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=5,
    )


async def _first_start_key(settings: Settings) -> str | None:
    store = await _open_store(settings)
    try:
        if await store.list_keys():
            return None
        _, secret = await store.create_key("default")
        return secret
    finally:
        await store.close()


def _print_welcome(base: str, key: str | None, settings: Settings) -> None:
    shown_key = key or "$VIDGATE_API_KEY"
    body = json.dumps(
        {
            "model": "testcard-video",
            "prompt": "a red fox in the snow",
            "duration": 3,
            "resolution": "480p",
        }
    )
    lines = [f"vidgate is starting on {base} (data dir: {settings.data_dir})"]
    if key:
        lines += ["", "Created your first API key (shown once; keep it):", f"  {key}"]
    else:
        lines += ["", "API keys exist already; create another with: vidgate keys create NAME"]
    lines += [
        "",
        "Try it:",
        f"  curl -s -X POST {base}/api/generate-video \\",
        f"    -H 'x-api-key: {shown_key}' -H 'content-type: application/json' \\",
        f"    -d {shlex.quote(body)}",
        "",
        "then poll with the runId it returns:",
        f"  curl -s '{base}/api/generate-video/status?runId=RUN_ID&modelSlug=testcard-video' \\",
        f"    -H 'x-api-key: {shown_key}'",
        "",
        f"API docs: {base}/docs",
        "",
    ]
    print("\n".join(lines), flush=True)


@app.command()
def worker(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Run a worker process only (pair with `vidgate serve --no-worker`)."""
    from vidgate import logs
    from vidgate.services import Services, build_catalog, build_storage
    from vidgate.worker.runtime import run_worker

    settings = _settings(data_dir, config)
    logs.configure(log_level.upper())

    async def main() -> None:
        store = await _open_store(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await store.listen()
        services = Services(settings, store, build_storage(settings), build_catalog(settings))
        try:
            await run_worker(services, stop)
        finally:
            await store.close()

    asyncio.run(main())


@app.command()
def migrate(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Bring the database schema up to date (serve and worker also do this at start)."""

    async def main() -> None:
        store = await _open_store(_settings(data_dir, config))
        await store.close()

    asyncio.run(main())
    typer.echo("database schema is up to date")


@keys_app.command("create")
def keys_create(name: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Create an API key. The last line printed is the key and nothing else."""
    from vidgate.store.errors import KeyNameTaken

    async def main() -> str:
        store = await _open_store(_settings(data_dir, config))
        try:
            _, secret = await store.create_key(name)
            return secret
        finally:
            await store.close()

    try:
        secret = asyncio.run(main())
    except KeyNameTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Created API key {name!r}. It is shown only once:", err=True)
    typer.echo(secret)


@keys_app.command("list")
def keys_list(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """List API keys (names and prefixes; the keys themselves are not stored)."""
    from vidgate.views import iso

    async def main() -> list[KeyRecord]:
        store = await _open_store(_settings(data_dir, config))
        try:
            return await store.list_keys()
        finally:
            await store.close()

    for key in asyncio.run(main()):
        state = f"revoked {iso(key.revoked_at)}" if key.revoked_at else "active"
        typer.echo(f"{key.name}\t{key.prefix}…\tcreated {iso(key.created_at)}\t{state}")


@keys_app.command("revoke")
def keys_revoke(name: str, data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Revoke an API key by name; it stops working at once."""
    from vidgate.store.errors import KeyNotFound

    async def main() -> None:
        store = await _open_store(_settings(data_dir, config))
        try:
            await store.revoke_key(name)
        finally:
            await store.close()

    try:
        asyncio.run(main())
    except KeyNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Revoked API key {name!r}.")


def _register_client_commands() -> None:
    try:
        from vidgate.client.cli import register
    except ImportError:  # pragma: no cover - the SDK's commands are being built
        return
    register(app)


_register_client_commands()


def main() -> None:
    app(prog_name="vidgate")


if __name__ == "__main__":
    main()
