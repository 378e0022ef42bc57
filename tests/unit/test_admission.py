"""The admission gate: slots, a bounded queue, queue timeouts, and exact release accounting."""

from __future__ import annotations

import asyncio

import pytest

from chatworks.api.admission import AdmissionGate
from chatworks.api.errors import APIError


def gate(running=1, waiting=1, timeout=5.0) -> AdmissionGate:
    return AdmissionGate("m", running, waiting, timeout, retry_after_s=3)


def test_beyond_slots_and_queue_is_rejected_with_retry_after():
    async def run():
        g = gate(running=1, waiting=1)
        first = await g.admit()
        queued = asyncio.ensure_future(g.admit())
        await asyncio.sleep(0)
        assert (g.running, g.waiting) == (1, 1)
        with pytest.raises(APIError) as caught:
            await g.admit()
        assert caught.value.status_code == 503 and caught.value.code == "queue_full"
        assert caught.value.headers == {"Retry-After": "3"}
        first.release()
        second = await queued
        assert (g.running, g.waiting) == (1, 0)
        second.release()
        assert g.running == 0

    asyncio.run(run())


def test_waiting_too_long_times_out():
    async def run():
        g = gate(timeout=0.05)
        held = await g.admit()
        with pytest.raises(APIError) as caught:
            await g.admit()
        assert caught.value.code == "queue_timeout" and g.waiting == 0
        held.release()

    asyncio.run(run())


def test_release_is_idempotent():
    async def run():
        g = gate(running=2)
        ticket = await g.admit()
        ticket.release()
        ticket.release()
        assert g.running == 0
        # Both slots are still usable: a double release did not create a third.
        a, b = await g.admit(), await g.admit()
        assert g._slots.locked()
        a.release(), b.release()

    asyncio.run(run())


def test_cancelled_waiter_leaves_the_queue():
    async def run():
        g = gate()
        held = await g.admit()
        waiter = asyncio.ensure_future(g.admit())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert g.waiting == 0
        held.release()
        assert g.running == 0

    asyncio.run(run())
