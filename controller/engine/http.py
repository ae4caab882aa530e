"""The real `HttpCaller`: aiohttp (already a dependency of kopf), one shared session.

Responses are read up to a limit (a step keeps a few KiB of output; a huge body must not
exhaust the operator's memory); redirects are followed as a browser would.
"""

from __future__ import annotations

import asyncio

import aiohttp

from controller.engine.steps import HttpError, HttpRequest, HttpResponse

READ_LIMIT = 1 << 20  # bytes read from a response body


class AiohttpCaller:
    def __init__(self, connections: int = 256) -> None:
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                headers={"User-Agent": "flowpin"},
            )
        return self._session

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            async with self._client().request(
                request.method,
                request.url,
                headers=request.headers,
                data=request.body,
                timeout=aiohttp.ClientTimeout(total=request.timeout),
            ) as response:
                body = await response.content.read(READ_LIMIT)
                return HttpResponse(
                    response.status,
                    {k: v for k, v in response.headers.items()},
                    body,
                )
        except TimeoutError:
            raise HttpError(f"no answer within {request.timeout:g}s") from None
        except (aiohttp.ClientError, ValueError) as error:
            raise HttpError(str(error) or type(error).__name__) from None
        except asyncio.CancelledError:
            raise

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
