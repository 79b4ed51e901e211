"""The client half of the ``vidgate`` command line, built on the SDK.

``vidgate generate``, ``status``, ``wait``, ``watch``, ``download``, ``cancel`` and
``models``.
:func:`register` adds them to the main Typer app (``vidgate.cli``); run
``python -m vidgate.client.cli`` to use them alone.

Results go to stdout (``--json`` for scripts), progress and errors to stderr. Exit codes
are :class:`ExitCode`, documented in ``docs/sdk.md``.
"""

from __future__ import annotations

import base64
import json
import mimetypes
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from vidgate.client._base import DEFAULT_BASE_URL, DEFAULT_WAIT_TIMEOUT_S, ENV_API_KEY, ENV_BASE_URL
from vidgate.client._display import DownloadDisplay, WaitDisplay, describe
from vidgate.client._errors import (
    AuthenticationError,
    ContentPolicyError,
    GenerationCancelled,
    GenerationFailed,
    InvalidRequestError,
    NotFoundError,
    VideoNotReady,
    VidgateError,
    WaitTimeout,
)
from vidgate.client._sync import Client
from vidgate.client._types import VideoStatus


class ExitCode(IntEnum):
    """How a client command ended. Stable: scripts may rely on these numbers."""

    OK = 0
    """Done: the run completed (or the command did what it was asked)."""
    ERROR = 1
    """The server could not be reached, or answered an unexpected error."""
    USAGE = 2
    """Bad command line, or a request the server rejects as invalid (400)."""
    AUTH = 3
    """The API key is missing or not valid (401/403)."""
    FAILED = 4
    """The run failed (including content-policy failures), or the prompt was refused."""
    CANCELLED = 5
    """The run was cancelled."""
    TIMEOUT = 6
    """The wait's --timeout passed; the run goes on (resume with ``vidgate wait``)."""
    NOT_FOUND = 7
    """No such run for this key."""
    NOT_READY = 8
    """``download`` of a run that has no video yet."""
    INTERRUPTED = 130
    """Ctrl-C while waiting; the run goes on."""


def exit_code_for(error: BaseException) -> ExitCode:
    if isinstance(error, GenerationFailed | ContentPolicyError):
        return ExitCode.FAILED
    if isinstance(error, GenerationCancelled):
        return ExitCode.CANCELLED
    if isinstance(error, WaitTimeout):
        return ExitCode.TIMEOUT
    if isinstance(error, AuthenticationError):
        return ExitCode.AUTH
    if isinstance(error, NotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(error, VideoNotReady):
        return ExitCode.NOT_READY
    if isinstance(error, InvalidRequestError | ValueError):
        return ExitCode.USAGE
    return ExitCode.ERROR


def parse_param(text: str) -> tuple[str, Any]:
    """``k=v`` from ``--param``; ``v`` is read as JSON when it is JSON (``duration=5`` is
    the number 5, ``flag=true`` a boolean), else kept as text (``resolution=720p``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise typer.BadParameter(f"expected KEY=VALUE, got {text!r}", param_hint="--param")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def image_param(image: str) -> dict[str, str]:
    """``--image``: an http(s) URL is sent as ``imageUrl``, a file as ``imageDataUrl``."""
    if image.startswith(("http://", "https://")):
        return {"imageUrl": image}
    path = Path(image)
    if not path.is_file():
        raise typer.BadParameter(f"{image!r} is neither a URL nor a file", param_hint="--image")
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    payload = base64.b64encode(path.read_bytes()).decode("ascii")
    return {"imageDataUrl": f"data:{mime};base64,{payload}"}


_err = Console(stderr=True, highlight=False)

BaseUrl = Annotated[
    str,
    typer.Option("--base-url", envvar=ENV_BASE_URL, help="Server URL", show_default=True),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar=ENV_API_KEY, help="API key", show_default=False),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout")]
Model = Annotated[
    str | None,
    typer.Option("--model", "-m", help="The run's model (uses the legacy status route)"),
]
Timeout = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait before giving up (exit 6)", min=0.1)
]
Out = Annotated[Path | None, typer.Option("--out", "-o", help="Write the video to this file")]


def _print_json(data: Any, *, line: bool = False) -> None:
    """Pretty JSON; with ``line``, one compact line (``watch --json`` prints a stream)."""
    if line:
        typer.echo(json.dumps(data, sort_keys=True, separators=(",", ":")))
    else:
        typer.echo(json.dumps(data, indent=2, sort_keys=True))


def _fail(error: BaseException, as_json: bool, *, line: bool = False) -> NoReturn:
    code = exit_code_for(error)
    status = getattr(error, "status", None) or getattr(error, "last_status", None)
    message = str(error)
    if isinstance(error, GenerationFailed):
        message = error.user_friendly_error or error.error or message
    if as_json:
        payload: dict[str, Any] = {
            "error": {"type": type(error).__name__, "message": message, "exit_code": int(code)}
        }
        if isinstance(status, VideoStatus):
            payload["status"] = status.to_dict()
        _print_json(payload, line=line)
    _err.print(f"[red]Error:[/red] {message}", soft_wrap=True, markup=True)
    if isinstance(error, GenerationFailed) and error.error and error.error != message:
        _err.print(f"  detail: {error.error}", soft_wrap=True)
    if isinstance(error, WaitTimeout):
        _err.print(f"  the run goes on; resume with: vidgate wait {error.run_id}", soft_wrap=True)
    raise typer.Exit(int(code))


@contextmanager
def _errors(as_json: bool, run_id: str | None = None, *, line: bool = False) -> Iterator[None]:
    """Turn SDK errors into a message on stderr and the matching exit code."""
    try:
        yield
    except (VidgateError, ValueError) as error:
        _fail(error, as_json, line=line)
    except KeyboardInterrupt:
        if run_id:
            _err.print(f"\ninterrupted; the run goes on: vidgate wait {run_id}", soft_wrap=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None


def _client(base_url: str, api_key: str | None) -> Client:
    try:
        return Client(base_url, api_key)
    except ValueError as exc:
        _err.print(f"Error: {exc}", soft_wrap=True)
        raise typer.Exit(int(ExitCode.USAGE)) from None


def _wait_and_save(
    client: Client,
    run_id: str,
    model: str | None,
    *,
    timeout_s: float,
    out: Path | None,
    as_json: bool,
) -> None:
    with _errors(as_json, run_id):
        with WaitDisplay(_err, run_id, enabled=not as_json) as display:
            status = client.wait_for_video(
                run_id, model, timeout_s=timeout_s, on_update=display.update
            )
        _finish(client, status, out, as_json)


def _finish(client: Client, status: VideoStatus, out: Path | None, as_json: bool) -> None:
    result = status.to_dict()
    if out is not None:
        with DownloadDisplay(_err, out.name, enabled=not as_json) as bar:
            path = client.download_video(status, out, on_progress=bar.update)
        result["path"] = str(path)
        result["bytes"] = path.stat().st_size
    if as_json:
        _print_json(result)
    elif out is not None:
        typer.echo(f"{result['path']} ({result['bytes']} bytes)")
    else:
        typer.echo(status.video_url or "")


def generate(
    prompt: Annotated[str, typer.Argument(help="What the video should show")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model id (see `vidgate models`)")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Extra field KEY=VALUE (repeatable), e.g. duration=5"),
    ] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Source image: a file or an https URL")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to finish")] = False,
    out: Out = None,
    timeout: Timeout = DEFAULT_WAIT_TIMEOUT_S,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Makes a retried submit safe (never charged twice)"),
    ] = None,
    as_json: JsonOut = False,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Submit a run. Prints its id; with --wait (or --out) waits and shows progress."""
    params = dict(parse_param(p) for p in param or [])
    if image:
        params.update(image_param(image))
    with _client(base_url, api_key) as client:
        with _errors(as_json):
            run = client.generate_video(model, prompt, idempotency_key=idempotency_key, **params)
        if not (wait or out is not None):
            if as_json:
                submitted = run.submission.to_dict() if run.submission else {"run_id": run.id}
                _print_json(submitted)
            else:
                typer.echo(run.id)
                _err.print(f"submitted; follow it with: vidgate wait {run.id}", soft_wrap=True)
            return
        _wait_and_save(client, run.id, None, timeout_s=timeout, out=out, as_json=as_json)


def status(
    run_id: Annotated[str, typer.Argument(help="The run id (vid_...)")],
    model: Model = None,
    as_json: JsonOut = False,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Show a run's status once (exit 0 whatever the run's state)."""
    with _client(base_url, api_key) as client, _errors(as_json):
        current = client.get_video_status(run_id, model)
    if as_json:
        _print_json(current.to_dict())
        return
    typer.echo(f"{current.run_id}  {describe(current)}")
    if current.video_url:
        typer.echo(f"video: {current.video_url}")
    if current.message:
        typer.echo(f"error: {current.message}")


def wait(
    run_id: Annotated[str, typer.Argument(help="The run id (vid_...)")],
    model: Model = None,
    timeout: Timeout = DEFAULT_WAIT_TIMEOUT_S,
    out: Out = None,
    as_json: JsonOut = False,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Wait for a run to finish; prints the video URL (or saves it with --out)."""
    with _client(base_url, api_key) as client:
        _wait_and_save(client, run_id, model, timeout_s=timeout, out=out, as_json=as_json)


class _JsonLines:
    """``watch --json``: one line per state; a state read twice in a row is printed once."""

    def __init__(self) -> None:
        self._last: dict[str, Any] | None = None

    def __call__(self, status: VideoStatus) -> None:
        current = status.to_dict()
        if current != self._last:
            _print_json(current, line=True)
        self._last = current


def watch(
    run_id: Annotated[str, typer.Argument(help="The run id (vid_...)")],
    timeout: Timeout = DEFAULT_WAIT_TIMEOUT_S,
    as_json: JsonOut = False,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Follow a run live until it ends; exit codes as for `wait`.

    Prints the video URL; with --json, one JSON line per state (and one for an error).
    """
    with _client(base_url, api_key) as client, _errors(as_json, run_id, line=as_json):
        with WaitDisplay(_err, run_id, enabled=not as_json) as display:
            on_update = _JsonLines() if as_json else display.update
            done = client.wait_for_video(run_id, timeout_s=timeout, on_update=on_update)
        if not as_json:
            typer.echo(done.video_url or "")


def download(
    run_id: Annotated[str, typer.Argument(help="The run id (vid_...)")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the video to this file")],
    model: Model = None,
    as_json: JsonOut = False,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Download a completed run's video (exit 8 if it has none yet)."""
    with _client(base_url, api_key) as client, _errors(as_json, None):
        current = client.get_video_status(run_id, model)
        _finish(client, current, out, as_json)


def cancel(
    run_id: Annotated[str, typer.Argument(help="The run id (vid_...)")],
    as_json: JsonOut = False,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """Cancel a run (a finished run keeps its status)."""
    with _client(base_url, api_key) as client, _errors(as_json):
        current = client.cancel(run_id)
    if as_json:
        _print_json(current.to_dict())
    else:
        typer.echo(f"{current.run_id}  {describe(current)}")


def models(
    as_json: JsonOut = False,
    base_url: BaseUrl = DEFAULT_BASE_URL,
    api_key: ApiKey = None,
) -> None:
    """List the models the server offers."""
    with _client(base_url, api_key) as client, _errors(as_json):
        found = client.list_models()
    if as_json:
        _print_json([m.to_dict() for m in found])
        return
    table = Table("id", "name", "text→video", "image→video", "parameters")
    for m in found:
        table.add_row(
            m.id,
            m.name,
            "yes" if m.text_to_video else "",
            "yes" if m.image_to_video else "",
            ", ".join(sorted(m.parameters)),
        )
    Console(soft_wrap=True).print(table)


def register(app: typer.Typer) -> None:
    """Add the client commands to ``app``."""
    for command in (generate, status, wait, watch, download, cancel, models):
        app.command()(command)


def main() -> None:
    app = typer.Typer(help="vidgate's client commands.", no_args_is_help=True, add_completion=False)
    register(app)
    app(prog_name="vidgate")


if __name__ == "__main__":
    main()
