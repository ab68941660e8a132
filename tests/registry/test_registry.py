"""One suite for every `Registry` implementation (STYLE §2.9): local and Redis.

Each "gateway" is a registry made by `Backend.make`; they share one state. A kick that a
registry reports lands in ``backend.kicks[gateway_id]``.
"""

from __future__ import annotations

import asyncio

from netbus.registry import Owner
from tests.registry.conftest import Backend


async def test_claim_of_a_free_uid_returns_none(backend: Backend) -> None:
    a = await backend.make("gwA")
    assert await a.claim(7, "c.1") is None
    assert await a.owner(7) == Owner("gwA", "c.1")
    assert dict(a.held) == {7: "c.1"}


async def test_claiming_again_from_the_same_connection_changes_nothing(backend: Backend) -> None:
    a = await backend.make("gwA")
    await a.claim(7, "c.1")
    assert await a.claim(7, "c.1") is None
    assert await a.owner(7) == Owner("gwA", "c.1")


async def test_owner_of_an_unknown_uid_is_none(backend: Backend) -> None:
    a = await backend.make("gwA")
    assert await a.owner(424242) is None


async def test_claim_from_another_gateway_kicks_the_previous_owner(backend: Backend) -> None:
    a = await backend.make("gwA")
    b = await backend.make("gwB")
    await a.claim(7, "a.1")
    previous = await b.claim(7, "b.1")
    assert previous == Owner("gwA", "a.1")
    await backend.wait_kicks("gwA", 1)
    assert backend.kicks["gwA"] == [(7, "a.1")]
    assert backend.kicks["gwB"] == []
    assert 7 not in a.held
    assert dict(b.held) == {7: "b.1"}
    assert await a.owner(7) == Owner("gwB", "b.1")


async def test_claim_on_the_same_gateway_returns_the_previous_without_a_kick(
    backend: Backend,
) -> None:
    a = await backend.make("gwA")
    c = await backend.make("gwC")
    await a.claim(7, "a.1")
    assert await a.claim(7, "a.2") == Owner("gwA", "a.1")
    # Barrier: a kick for another uid goes through the same channel, after any kick the
    # first claim could have sent. Only the barrier may arrive.
    await a.claim(8, "a.3")
    await c.claim(8, "c.1")
    await backend.wait_kicks("gwA", 1)
    assert backend.kicks["gwA"] == [(8, "a.3")]
    assert dict(a.held) == {7: "a.2"}


async def test_release_deletes_only_its_own_entry(backend: Backend) -> None:
    a = await backend.make("gwA")
    b = await backend.make("gwB")
    await a.claim(7, "a.1")
    await b.claim(7, "b.1")
    assert await a.release(7, "a.1") is False  # a late release cannot undo the newer login
    assert await a.owner(7) == Owner("gwB", "b.1")
    assert await b.release(7, "b.2") is False  # another connection of the owner's gateway
    assert await b.release(7, "b.1") is True
    assert await b.owner(7) is None
    assert 7 not in b.held


async def test_refresh_keeps_what_is_still_ours(backend: Backend) -> None:
    a = await backend.make("gwA")
    await a.claim(7, "a.1")
    await a.claim(8, "a.2")
    assert await a.refresh() == []
    assert backend.kicks["gwA"] == []
    assert dict(a.held) == {7: "a.1", 8: "a.2"}


async def test_refresh_reports_a_claim_taken_without_a_kick(backend: Backend) -> None:
    """The repair path for a lost pub/sub kick: the entry names someone else."""
    a = await backend.make("gwA")
    await a.claim(7, "a.1")
    await a.claim(8, "a.2")
    await backend.steal(7, Owner("gwZ", "z.9"))
    assert await a.refresh() == [7]
    assert backend.kicks["gwA"] == [(7, "a.1")]
    assert dict(a.held) == {8: "a.2"}
    assert await a.owner(7) == Owner("gwZ", "z.9")


async def test_refresh_recreates_an_entry_that_vanished(backend: Backend) -> None:
    """A Redis restart without persistence loses every entry; holders put theirs back."""
    a = await backend.make("gwA")
    await a.claim(7, "a.1")
    await backend.wipe(7)
    assert await a.owner(7) is None
    assert await a.refresh() == []
    assert await a.owner(7) == Owner("gwA", "a.1")
    assert backend.kicks["gwA"] == []


async def test_refresh_does_not_resurrect_a_released_claim(backend: Backend) -> None:
    a = await backend.make("gwA")
    await a.claim(7, "a.1")
    await a.release(7, "a.1")
    await a.refresh()
    assert await a.owner(7) is None


async def test_close_releases_what_the_gateway_holds(backend: Backend) -> None:
    a = await backend.make("gwA")
    b = await backend.make("gwB")
    for uid in (1, 2, 3):
        await a.claim(uid, f"a.{uid}")
    await b.claim(4, "b.4")
    await a.close()
    backend.registries.remove(a)
    for uid in (1, 2, 3):
        assert await b.owner(uid) is None
    assert await b.owner(4) == Owner("gwB", "b.4")


async def test_concurrent_claims_form_one_chain(backend: Backend) -> None:
    """30 claims of one uid from 3 gateways at once: one winner, every loser superseded once.

    Each claim returns the owner it replaced, so the returned owners are exactly the losers,
    each once; the losers on another gateway than their successor are kicked there.
    """
    gateways = [await backend.make(f"gw{i}") for i in range(3)]
    claimants = [Owner(f"gw{i % 3}", f"x.{i}") for i in range(30)]
    results = await asyncio.gather(
        *(gateways[i % 3].claim(99, owner.conn) for i, owner in enumerate(claimants))
    )
    winner = await gateways[0].owner(99)
    assert winner in claimants
    replaced = [prev for prev in results if prev is not None]
    assert sorted(replaced) == sorted(o for o in claimants if o != winner)
    # a replaced owner on the claimant's own gateway is the caller's to kick: no message
    cross = [
        prev
        for claimant, prev in zip(claimants, results, strict=True)
        if prev is not None and prev.gateway != claimant.gateway
    ]
    for i in range(3):
        expected = sorted((99, o.conn) for o in cross if o.gateway == f"gw{i}")
        await backend.wait_kicks(f"gw{i}", len(expected))
        assert sorted(backend.kicks[f"gw{i}"]) == expected
    holders = [g for g in gateways if 99 in g.held and g.held[99] == winner.conn]  # type: ignore[union-attr]
    assert len(holders) == 1
