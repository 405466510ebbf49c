"""The lean record hand-over to Faust's streams: deliveries run in place until they suspend."""

from __future__ import annotations

import asyncio

import pytest

from earful.core import kafka
from earful.core.kafka import start_eagerly


def test_a_delivery_that_does_not_suspend_finishes_in_place() -> None:
    done = []

    async def deliver() -> None:
        done.append(1)

    assert start_eagerly(deliver()) is None
    assert done == [1]


def test_an_error_before_any_suspension_is_raised_at_once() -> None:
    async def deliver() -> None:
        raise ValueError("bad record")

    with pytest.raises(ValueError, match="bad record"):
        start_eagerly(deliver())


def test_a_delivery_that_suspends_is_finished_by_awaiting_the_rest() -> None:
    async def main() -> tuple[str, list[str]]:
        steps: list[str] = []
        room = asyncio.get_running_loop().create_future()

        async def deliver() -> str:
            steps.append("before")
            value = await room  # e.g. a full stream buffer
            steps.append(f"after {value}")
            return "delivered"

        rest = start_eagerly(deliver())
        assert rest is not None and steps == ["before"]
        asyncio.get_running_loop().call_later(0.01, room.set_result, "room")
        return await asyncio.ensure_future(rest), steps  # as wait_first wraps it in a task

    result, steps = asyncio.run(main())
    assert result == "delivered" and steps == ["before", "after room"]


def test_cancelling_the_rest_cancels_the_delivery() -> None:
    async def main() -> list[str]:
        steps: list[str] = []

        async def deliver() -> None:
            try:
                await asyncio.sleep(10)  # not a wait: a delivery that is still running when it is cancelled
            except asyncio.CancelledError:
                steps.append("cancelled")
                raise

        rest = start_eagerly(deliver())
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)  # one turn of the loop: the task takes its first step, awaiting the delivery
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return steps

    assert asyncio.run(main()) == ["cancelled"]


def test_errors_after_a_suspension_reach_the_awaiter() -> None:
    async def main() -> None:
        async def deliver() -> None:
            await asyncio.sleep(0)  # not a wait: the suspension the error must come after
            raise KeyError("late")

        rest = start_eagerly(deliver())
        with pytest.raises(KeyError, match="late"):
            await asyncio.ensure_future(rest)

    asyncio.run(main())


def test_the_services_consumer_drains_with_it() -> None:
    transport = kafka._low_latency_transport(100)
    assert transport.Consumer._drain_messages is not kafka.faust_aiokafka.Consumer._drain_messages
