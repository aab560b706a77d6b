"""harness.core.slots.PrioritySlots: the per-endpoint limit of the model client."""

from __future__ import annotations

import asyncio

import pytest

from harness.core.slots import PrioritySlots


def test_a_freed_slot_goes_to_the_lowest_priority_number_then_the_earliest() -> None:
    async def scenario() -> list[str]:
        slots = PrioritySlots(1)
        order: list[str] = []
        gate = asyncio.Event()

        async def request(name: str, priority: int) -> None:
            async with slots.hold(priority):
                order.append(name)
                if name == "first":
                    await gate.wait()

        first = asyncio.create_task(request("first", 1))
        await asyncio.sleep(0)  # "first" holds the one slot
        waiting = [asyncio.create_task(request(name, priority))
                   for name, priority in [("late-1", 1), ("soon-a", 0), ("late-2", 1), ("soon-b", 0)]]  # fmt: skip
        await asyncio.sleep(0)
        gate.set()
        await asyncio.gather(first, *waiting)
        return order

    assert asyncio.run(scenario()) == ["first", "soon-a", "soon-b", "late-1", "late-2"]


def test_never_more_holders_than_slots_and_all_get_through() -> None:
    async def scenario() -> tuple[int, int]:
        slots = PrioritySlots(3)
        most = done = 0

        async def request(priority: int) -> None:
            nonlocal most, done
            async with slots.hold(priority):
                most = max(most, slots.held)
                await asyncio.sleep(0.001)
                done += 1

        await asyncio.gather(*(request(index % 3) for index in range(50)))
        return most, done

    assert asyncio.run(scenario()) == (3, 50)


def test_a_cancelled_waiter_gives_up_its_place_and_loses_no_slot() -> None:
    async def scenario() -> list[str]:
        slots = PrioritySlots(1)
        order: list[str] = []
        gate = asyncio.Event()

        async def request(name: str) -> None:
            async with slots.hold():
                order.append(name)
                if name == "first":
                    await gate.wait()

        first = asyncio.create_task(request("first"))
        await asyncio.sleep(0)
        cancelled = asyncio.create_task(request("cancelled"))
        after = asyncio.create_task(request("after"))
        await asyncio.sleep(0)
        cancelled.cancel()
        gate.set()
        await asyncio.gather(first, after)
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert slots.held == 0
        return order

    assert asyncio.run(scenario()) == ["first", "after"]
