"""The cap on an async actor's calls running at once (actor_host._CallSlots), on a bare loop."""
import asyncio

from zray.core.actor_host import _CallSlots


async def _run(slots, log, name, hold):
    if slots.free > 0 and not slots.waiters:
        slots.free -= 1
    else:
        await slots.wait()
    log.append(("start", name))
    try:
        await asyncio.sleep(hold)
    finally:
        log.append(("end", name))
        slots.release()


def test_slots_cap_running_calls_and_start_waiters_in_order():
    async def main():
        slots, log, running, peak = _CallSlots(2), [], [0], [0]

        async def call(name):
            await _run(slots, log, name, 0.01)

        tasks = [asyncio.get_running_loop().create_task(call(i)) for i in range(7)]
        while not all(t.done() for t in tasks):
            running[0] = sum(1 for e in log if e[0] == "start") - sum(1 for e in log if e[0] == "end")
            peak[0] = max(peak[0], running[0])
            await asyncio.sleep(0.001)
        return slots, log, peak[0]

    slots, log, peak = asyncio.run(main())
    assert peak <= 2
    assert [n for kind, n in log if kind == "start"] == list(range(7))
    assert slots.free == 2 and not slots.waiters


def test_a_cancelled_waiter_passes_its_slot_on():
    async def main():
        slots, log = _CallSlots(1), []
        loop = asyncio.get_running_loop()
        first = loop.create_task(_run(slots, log, "first", 0.02))
        await asyncio.sleep(0)
        second = loop.create_task(_run(slots, log, "second", 0))
        third = loop.create_task(_run(slots, log, "third", 0))
        await asyncio.sleep(0)
        second.cancel()                 # cancelled while waiting: never starts
        await asyncio.gather(first, third, return_exceptions=True)
        # granted a slot and cancelled before it resumed: the slot goes to the next waiter
        slots.free -= 1                  # a call holds the one slot
        granted = loop.create_task(slots.wait())
        behind = loop.create_task(slots.wait())
        await asyncio.sleep(0)
        slots.release()                  # hands the slot to `granted`...
        granted.cancel()                 # ...which is cancelled before it runs
        await asyncio.wait_for(asyncio.gather(granted, behind, return_exceptions=True), 5)
        assert not behind.cancelled() and slots.free == 0
        slots.release()                  # `behind` ends its call
        return slots, log, second.cancelled(), granted.cancelled()

    slots, log, second_cancelled, granted_cancelled = asyncio.run(main())
    starts = [n for kind, n in log if kind == "start"]
    assert starts == ["first", "third"]
    assert second_cancelled and granted_cancelled
    assert slots.free == 1 and not slots.waiters
