"""The asyncio client: the same API as :mod:`fdrpc.client`, with coroutines.

The stock Thrift generated client is blocking, so each call runs in a worker thread
(``asyncio.to_thread``): the event loop never blocks, and calls on one connection are made one
at a time, in the order they were awaited (a stock client has one call in flight). Open
several connections for calls in parallel.

    async with await fdrpc.aio.connect("/run/broker.sock", Broker.Client) as conn:
        index = await conn.call("open", "/etc/hostname")
        with conn.take(index) as fd:
            ...
        async for fd in conn.stream("memfds", 3, item=fdrpc.FD):
            fd.close()
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Callable, Iterable, Optional

from . import client as _client
from .fd import Fd


class AsyncStream:
    """The items of a server stream, as an async iterator (see :class:`fdrpc.Stream`)."""

    def __init__(self, conn: "AsyncConnection", stream: _client.Stream[Any]) -> None:
        self._conn, self._stream = conn, stream

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        async with self._conn._lock:
            try:
                return await asyncio.to_thread(next, self._stream)
            except StopIteration:
                raise StopAsyncIteration from None

    async def close(self) -> None:
        """Gives the stream up: sends ``cancel`` unless it ended."""
        async with self._conn._lock:
            await asyncio.to_thread(self._stream.close)

    async def __aenter__(self) -> "AsyncStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AsyncConnection:
    """One connection, for coroutines: ``await conn.call("method", *args)``."""

    def __init__(self, conn: _client.Connection[Any]) -> None:
        self.sync = conn
        self._lock = asyncio.Lock()

    async def call(self, method: str, *args: Any) -> Any:
        """Calls ``method`` of the generated client with ``args``; returns its result (its
        declared exception is raised, :class:`fdrpc.Timeout` after the connection's timeout)."""
        async with self._lock:
            return await asyncio.to_thread(getattr(self.sync.client, method), *args)

    def attach(self, fd: Any) -> int:
        """As :meth:`fdrpc.Connection.attach`: the index of ``fd`` in the next call."""
        return self.sync.attach(fd)

    def take(self, index: int) -> Fd:
        """As :meth:`fdrpc.Connection.take`: fd ``index`` of the last reply, owned now."""
        return self.sync.take(index)

    async def stream(
        self,
        method: str,
        *args: Any,
        item: _client.Item,
        window: int = 64,
        error: Optional[_client.Item] = None,
    ) -> AsyncStream:
        """As :meth:`fdrpc.Connection.stream`, as an async iterator."""
        async with self._lock:
            stream = await asyncio.to_thread(
                lambda: self.sync.stream(method, *args, item=item, window=window, error=error)
            )
        return AsyncStream(self, stream)

    async def sink(
        self,
        method: str,
        *args: Any,
        items: Iterable[Any],
        item: _client.Item,
        error: Optional[_client.Item] = None,
    ) -> Any:
        """As :meth:`fdrpc.Connection.sink` (``items`` is iterated in the worker thread)."""
        async with self._lock:
            return await asyncio.to_thread(
                lambda: self.sync.sink(method, *args, items=items, item=item, error=error)
            )

    async def close(self) -> None:
        """Closes the connection and every fd it still holds."""
        async with self._lock:
            self.sync.close()

    async def __aenter__(self) -> "AsyncConnection":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def connect(
    path: str,
    client_class: Callable[[Any], Any],
    timeout: Optional[float] = _client.DEFAULT_TIMEOUT,
) -> AsyncConnection:
    """Connects to the fdrpc server at ``path``; see :func:`fdrpc.connect`."""
    return AsyncConnection(await asyncio.to_thread(_client.connect, path, client_class, timeout))


def from_socket(
    sock: Any,
    client_class: Callable[[Any], Any],
    timeout: Optional[float] = _client.DEFAULT_TIMEOUT,
) -> AsyncConnection:
    """An :class:`AsyncConnection` over an already-connected socket (which it now owns)."""
    return AsyncConnection(_client.from_socket(sock, client_class, timeout))
