"""A minimal HTTP/1.1 client on asyncio streams, for measuring latency: httpx costs about a
millisecond of Python per request, which on a loaded 2-core machine would be measured
instead of the server. Keep-alive, ``content-length`` and chunked bodies; nothing else."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self.host, self.port = host, port
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def _send(self, method: str, path: str, body: bytes = b"") -> asyncio.StreamReader:
        reader, writer = await self._open()
        head = f"{method} {path} HTTP/1.1\r\nhost: {self.host}\r\n{self.headers}"
        if body:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        return reader

    async def _head(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None
    ) -> tuple[int, Any]:
        """Send a request and read the whole JSON answer; reconnects once if the server
        closed the kept-alive connection."""
        target = path + ("?" + urlencode(params) if params else "")
        payload = json.dumps(body).encode() if body is not None else b""
        for attempt in range(2):
            try:
                reader = await self._send(method, target, payload)
                status, headers = await self._head(reader)
                break
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        if headers.get("transfer-encoding") == "chunked":
            data = b"".join([chunk async for chunk in _chunks(reader)])
        else:
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection") == "close":
            self.close()
        return status, json.loads(data) if data else None

    async def lines(self, path: str, params: dict[str, Any]) -> AsyncIterator[str]:
        """The lines of a streamed answer (server-sent events), as they arrive."""
        reader = await self._send("GET", path + "?" + urlencode(params))
        status, _ = await self._head(reader)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
        buffer = b""
        async for chunk in _chunks(reader):
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                yield line.decode()
        self.close()


async def _chunks(reader: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return
        data = await reader.readexactly(size)
        await reader.readexactly(2)
        yield data
