"""Fixtures for client-level tests: a sandbox that accepts only one key, and a client with it.

The upstream, lyrics and sonic suites each use their own key (so a leak test can look for it),
so the fixtures are made per module: `sandbox_url, make_sandbox, client = keyed_fixtures(...)`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest

from receiver.sandbox import SandboxOptions, create_sandbox_app
from receiver.upstream.client import UpstreamClient
from tests.servers import run_asgi


def keyed_fixtures(
    key: str, fast: Mapping[str, Any], retry_delays: tuple[float, ...] = (0.01,)
) -> tuple[Any, Any, Any]:
    """`sandbox_url` (one sandbox per module), `make_sandbox(**options)` and `client`."""

    @pytest.fixture(scope="module")
    def sandbox_url() -> Iterator[str]:
        with run_asgi(create_sandbox_app(SandboxOptions(api_key=key, **fast))) as url:
            yield url

    @pytest.fixture
    def make_sandbox() -> Iterator[Callable[..., str]]:
        """Start a sandbox (accepting the module's key) with options of the test's choosing."""
        with contextlib.ExitStack() as stack:

            def make(**options: Any) -> str:
                app = create_sandbox_app(SandboxOptions(api_key=key, **{**fast, **options}))
                return stack.enter_context(run_asgi(app))

            yield make

    @pytest.fixture
    async def client(sandbox_url: str) -> AsyncIterator[UpstreamClient]:
        async with UpstreamClient(sandbox_url, key, retry_delays=retry_delays) as upstream:
            yield upstream

    return sandbox_url, make_sandbox, client
