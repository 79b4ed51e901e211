"""The ``vidgate`` command line."""

from __future__ import annotations

import asyncio
import signal
from typing import TYPE_CHECKING, Annotated

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
from vidgate.cli_usage import describe_limits
from vidgate.cli_usage import register as _register_account_commands
from vidgate.config import Settings

if TYPE_CHECKING:
    from vidgate.store.records import KeyRecord

app = typer.Typer(
    help="vidgate: a self-hosted gateway for AI video generation.",
    no_args_is_help=True,
    add_completion=False,
)
keys_app = typer.Typer(
    help="Create, list and revoke API keys; their webhook secrets and URLs.", no_args_is_help=True
)
app.add_typer(keys_app, name="keys")

LogFormat = Annotated[
    str,
    typer.Option("--log-format", help="auto (JSON unless on a terminal), json or console"),
]


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
    log_format: LogFormat = "auto",
) -> None:
    """Start the HTTP API (and, unless --no-worker, an in-process worker)."""
    from vidgate import logs
    from vidgate.server.serve import ServerNotStarted, print_welcome, serve_until_stopped
    from vidgate.worker.runtime import run_worker

    settings = _settings(data_dir, config, serving=True)
    server = settings.server.model_copy(
        update={k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    )
    settings = settings.model_copy(update={"server": server})
    _check_storage(settings)  # before a first key is made: it is shown only once
    first_key = asyncio.run(_first_start_key(settings))
    shown_host = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host  # noqa: S104
    base = settings.server.public_base_url or f"http://{shown_host}:{server.port}"
    print_welcome(base, first_key, settings)
    logs.configure(log_level.upper(), secrets=settings.log_secrets(), log_format=log_format)
    with_worker = not no_worker and settings.worker.enabled
    try:
        failure = serve_until_stopped(
            settings, background=run_worker if with_worker else None, log_level=log_level.lower()
        )
    except ServerNotStarted:
        raise typer.Exit(3) from None  # uvicorn's own code for a failed start, logged above
    if failure is not None:
        typer.echo(
            f"error: the worker in this process stopped ({failure}), so vidgate exited "
            "instead of accepting runs that no one would work on; the log above has the "
            "details. A supervisor (systemd, Docker, Kubernetes) restarts it.",
            err=True,
        )
        raise typer.Exit(1)


def _check_storage(settings: Settings) -> None:
    """Refuse to start on storage whose signing secret is damaged (made on first start)."""
    from vidgate.services import build_storage
    from vidgate.storage.base import StorageError

    try:
        build_storage(settings)
    except StorageError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


async def _first_start_key(settings: Settings) -> str | None:
    store = await _open_store(settings)
    try:
        if await store.list_keys():
            return None
        _, secret = await store.create_key("default")
        return secret
    finally:
        await store.close()


@app.command()
def worker(
    data_dir: DataDir = None,
    config: ConfigFile = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    log_format: LogFormat = "auto",
    metrics_port: Annotated[
        int | None,
        typer.Option(help="Serve this process's /metrics on this port [metrics.worker_port]"),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="Take only these models' runs, comma-separated, e.g. wan-t2v,wan-i2v "
            "(a GPU worker takes the models it has loaded, others the rest) [worker.models]"
        ),
    ] = None,
) -> None:
    """Run a worker process only (pair with `vidgate serve --no-worker`)."""
    from vidgate import logs
    from vidgate.metrics import Metrics
    from vidgate.server.serve import serve_metrics
    from vidgate.services import Services, build_catalog, build_storage
    from vidgate.worker.runtime import run_worker

    only = [slug.strip() for slug in models.split(",") if slug.strip()] if models else None
    overrides = {"worker.models": only} if only else {}
    settings = _settings(data_dir, config, serving=True, **overrides)
    _check_storage(settings)
    logs.configure(log_level.upper(), secrets=settings.log_secrets(), log_format=log_format)
    port = metrics_port if metrics_port is not None else settings.metrics.worker_port

    async def main() -> None:
        store = await _open_store(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await store.listen()
        metrics = Metrics(in_flight_gauges=False)
        store.events.add_commit_listener(metrics.committed)
        services = Services(
            settings, store, build_storage(settings), build_catalog(settings), metrics
        )
        try:
            async with asyncio.TaskGroup() as parts:
                if port is not None:
                    parts.create_task(serve_metrics(metrics, settings, port, stop))
                parts.create_task(run_worker(services, stop))
        finally:
            await store.close()

    try:  # uvloop (uvicorn[standard] brings it on Linux): less CPU per I/O event
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


@app.command()
def migrate(data_dir: DataDir = None, config: ConfigFile = None) -> None:
    """Bring the database schema up to date (serve and worker also do this at start)."""

    async def main() -> None:
        store = await _open_store(_settings(data_dir, config))
        await store.close()

    asyncio.run(main())
    typer.echo("database schema is up to date")


@keys_app.command("create")
def keys_create(
    name: str,
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", help="Default webhook URL for runs submitted without one"),
    ] = None,
    budget_usd_per_day: Budget = None,
    max_in_flight: MaxInFlight = None,
    admin: Annotated[
        bool,
        typer.Option("--admin", help="The key may also sign in to the dashboard at /ui"),
    ] = False,
    providers: Providers = None,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Create an API key. The last line printed is the key and nothing else."""
    from vidgate.store.errors import KeyNameTaken

    settings = _settings(data_dir, config)
    url = _webhook_url(webhook_url, settings) if webhook_url is not None else None
    allowed = provider_list(providers, settings) if providers is not None else None

    async def main() -> str:
        store = await _open_store(settings)
        try:
            _, secret = await store.create_key(
                name,
                webhook_url=url,
                budget_usd_per_day=budget_usd_per_day,
                max_in_flight=max_in_flight,
                admin=admin,
                providers=allowed,
            )
            return secret
        finally:
            await store.close()

    try:
        secret = asyncio.run(main())
    except KeyNameTaken as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    kind = "admin key (API and dashboard)" if admin else "API key"
    typer.echo(f"Created {kind} {name!r}. It is shown only once:", err=True)
    typer.echo(secret)


def _webhook_url(url: str, settings: Settings) -> str:
    """``url`` if it is an absolute http(s) URL; otherwise the command ends with exit 2.
    A URL that submits would refuse (a non-public address) is taken with a warning."""
    import httpx

    from vidgate.netguard import UnsafeTarget, check_public

    try:
        parsed = httpx.URL(url.strip())
    except httpx.InvalidURL:
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        typer.echo(
            f"error: {url!r} is not a webhook URL; give an absolute http:// or https:// URL, "
            "e.g. https://example.com/hooks/vidgate",
            err=True,
        )
        raise typer.Exit(2)
    if not settings.webhooks.allow_private_hosts:
        try:
            asyncio.run(check_public(str(parsed)))
        except UnsafeTarget as exc:
            typer.echo(
                f"warning: the webhook URL {exc}; submits that use it are refused until "
                "[webhooks] allow_private_hosts = true",
                err=True,
            )
    return str(parsed)


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
        limits = f"\t{describe_limits(key)}" if key.limited or key.providers else ""
        admin = "\tadmin" if key.admin else ""
        typer.echo(
            f"{key.name}\t{key.prefix}…\tcreated {iso(key.created_at)}\t{state}{admin}{limits}"
        )


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


@keys_app.command("webhook-secret")
def keys_webhook_secret(
    name: str,
    rotate: Annotated[
        bool,
        typer.Option("--rotate", help="Make a new secret; the old one keeps signing a while"),
    ] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Print the secret a key's webhooks are signed with (the last line is the secret)."""
    from vidgate.store.errors import KeyNotFound

    settings = _settings(data_dir, config)

    async def main() -> KeyRecord:
        store = await _open_store(settings)
        try:
            if rotate:
                return await store.rotate_webhook_secret(name)
            return await store.get_key(name)
        finally:
            await store.close()

    try:
        key = asyncio.run(main())
    except KeyNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if rotate:
        overlap_s = settings.webhooks.secret_overlap_s
        typer.echo(
            f"Rotated the webhook secret of {name!r}. For the next {overlap_s:g} s "
            "([webhooks] secret_overlap_s) every delivery carries a signature by the old "
            "secret too, so receivers can switch over. The new secret:",
            err=True,
        )
    typer.echo(key.webhook_secret)


@keys_app.command("webhook-url")
def keys_webhook_url(
    name: str,
    url: Annotated[str | None, typer.Argument(help="The new default webhook URL")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the default URL")] = False,
    data_dir: DataDir = None,
    config: ConfigFile = None,
) -> None:
    """Show or set the webhook URL used for a key's runs submitted without 'webhookUrl'."""
    from vidgate.store.errors import KeyNotFound

    if url is not None and clear:
        typer.echo("error: give a URL or --clear, not both", err=True)
        raise typer.Exit(2)
    settings = _settings(data_dir, config)
    new_url = _webhook_url(url, settings) if url is not None else None

    async def main() -> KeyRecord:
        store = await _open_store(settings)
        try:
            if url is None and not clear:
                return await store.get_key(name)
            return await store.set_webhook_url(name, new_url)
        finally:
            await store.close()

    try:
        key = asyncio.run(main())
    except KeyNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if url is None and not clear:
        if key.webhook_url:
            typer.echo(key.webhook_url)
        else:
            typer.echo(f"API key {name!r} has no default webhook URL", err=True)
    elif clear:
        typer.echo(f"Removed the default webhook URL of {name!r}.")
    else:
        typer.echo(f"Runs of {name!r} submitted without 'webhookUrl' now notify {new_url}")


def _register_client_commands() -> None:
    try:
        from vidgate.client.cli import register
    except ImportError:  # pragma: no cover - the SDK's commands are being built
        return
    register(app)


_register_client_commands()
_register_account_commands(app, keys_app)


def main() -> None:
    app(prog_name="vidgate")


if __name__ == "__main__":
    main()
