"""Version stamps under a burst: concurrent misses for one feed share one query."""

from __future__ import annotations

import asyncio
from functools import partial

import pytest

from dhr_workflow.web.feeds import OneFlight


def test_concurrent_calls_for_one_key_share_one_run() -> None:
    calls: list[str] = []

    async def stamp(key: str) -> str:
        calls.append(key)
        await asyncio.sleep(0.01)
        return f'"{key}"'

    async def burst() -> list[str]:
        flight: OneFlight[str] = OneFlight()
        tags = await asyncio.gather(
            *(flight.run(k, partial(stamp, k)) for k in ["a"] * 8 + ["b"] * 2)
        )
        assert flight.running == {}
        again = await flight.run("a", lambda: stamp("a"))  # finished: runs anew
        return [*tags, again]

    tags = asyncio.run(burst())
    assert tags == ['"a"'] * 8 + ['"b"'] * 2 + ['"a"']
    assert calls == ["a", "b", "a"]


def test_a_failure_reaches_every_caller_and_is_not_kept() -> None:
    async def broken() -> str:
        await asyncio.sleep(0.01)
        raise RuntimeError("database gone")

    async def burst() -> list[object]:
        flight: OneFlight[str] = OneFlight()
        results = await asyncio.gather(
            *(flight.run("a", broken) for _ in range(3)), return_exceptions=True
        )
        assert flight.running == {}
        return results

    results = asyncio.run(burst())
    assert all(isinstance(r, RuntimeError) for r in results)


def test_a_caller_that_goes_away_does_not_cancel_the_others() -> None:
    async def slow() -> str:
        await asyncio.sleep(0.05)
        return '"x"'

    async def burst() -> str:
        flight: OneFlight[str] = OneFlight()
        first = asyncio.ensure_future(flight.run("a", slow))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(flight.run("a", slow))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(burst()) == '"x"'
