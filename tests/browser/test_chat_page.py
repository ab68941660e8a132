"""The chat page in real headless Chromium against a real ``netbus up`` cluster.

Two browser contexts are two guest accounts (each keeps its guest key in its own
localStorage). Every wait is a Playwright ``expect`` on the page's test hooks
(``data-testid``, ``data-state``, ``data-kind``); there are no fixed sleeps.

Screenshots of each page at key moments go to ``test-artifacts/browser/<test>/``. The README
picture ``docs/img/chat.png`` is written from the chat in progress only when
``NETBUS_UPDATE_SCREENSHOT=1`` (so a normal run leaves the work tree alone); a normal run puts
the same picture in the artifacts folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster import ROOT, UpCluster

pytestmark = [
    # The cluster and Chromium are separate processes: one event loop for the test is enough.
    pytest.mark.asyncio(loop_factories=["asyncio"]),
    pytest.mark.timeout(120),
]

VIEWPORT = {"width": 1000, "height": 700}
README_SHOT = ROOT / "docs" / "img" / "chat.png"
README_SHOT_MAX = 200 * 1024
UID = re.compile(r"^\d+$")
TIMEOUT = 15_000  #: ms for one expected condition
RECOVERY_TIMEOUT = 40_000  #: ms for a killed talkroom to be restarted and rejoined


def _expect() -> Any:
    from playwright.async_api import expect

    expect.set_options(timeout=TIMEOUT)
    return expect


class Shots:
    """Numbered screenshots in one artifacts folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.n = 0

    async def take(self, label: str, **pages: Any) -> None:
        self.n += 1
        for name, page in pages.items():
            await page.screenshot(path=self.folder / f"{self.n:02d}-{label}-{name}.png")


@pytest.fixture
def page_errors() -> Iterator[list[str]]:
    """Collects uncaught exceptions and console errors of the pages; none are allowed."""
    errors: list[str] = []
    yield errors
    assert not errors, "the page reported errors:\n" + "\n".join(errors)


def watch_errors(page: Any, errors: list[str]) -> None:
    page.on("pageerror", lambda exc: errors.append(f"{page.url}: uncaught {exc}"))
    page.on(
        "console",
        lambda msg: msg.type == "error" and errors.append(f"{page.url}: console {msg.text}"),
    )


async def screenshot_failure(pages: dict[str, Any], folder: Path) -> None:
    """Best effort: the state of each page when the test failed."""
    for name, page in pages.items():
        with contextlib.suppress(Exception):
            await page.screenshot(path=folder / f"failure-{name}.png")


def tid(page: Any, test_id: str) -> Any:
    return page.get_by_test_id(test_id)


def member(page: Any, uname: str, *, self_: bool) -> Any:
    return page.locator(
        f'[data-testid="member"][data-uname="{uname}"][data-self="{str(self_).lower()}"]'
    )


def chat_lines(page: Any, uname: str, *, own: bool) -> Any:
    return page.locator(
        f'[data-testid="message"][data-kind="chat"][data-uname="{uname}"]'
        f'[data-own="{str(own).lower()}"] [data-testid="message-text"]'
    )


def system_lines(page: Any, event: str) -> Any:
    return page.locator(f'[data-testid="message"][data-kind="system"][data-event="{event}"]')


async def open_page(context: Any, url: str, errors: list[str]) -> tuple[Any, str]:
    """A new page of ``context`` at ``url``, logged in; (page, its uid)."""
    expect = _expect()
    page = await context.new_page()
    watch_errors(page, errors)
    await page.goto(url)
    await expect(tid(page, "status")).to_have_attribute("data-state", "ready")
    await expect(tid(page, "uid")).to_have_text(UID)
    await expect(tid(page, "unick")).not_to_be_empty()
    return page, await tid(page, "uid").inner_text()


async def enter_room(page: Any, name: str, sex: str) -> None:
    expect = _expect()
    await tid(page, "enter-name").fill(name)
    await tid(page, "enter-sex").select_option(sex)
    await tid(page, "enter-btn").click()
    await expect(tid(page, "status")).to_have_attribute("data-state", "in-room")
    await expect(member(page, name, self_=True)).to_have_count(1)
    await expect(tid(page, "msg-input")).to_be_enabled()


async def say(sender: Any, sender_name: str, text: str, *receivers: Any) -> None:
    """``sender`` sends ``text``; it shows as own there and as ``sender_name``'s elsewhere."""
    expect = _expect()
    await tid(sender, "msg-input").fill(text)
    await tid(sender, "send-btn").click()
    await expect(chat_lines(sender, sender_name, own=True).last).to_have_text(text)
    await expect(tid(sender, "msg-input")).to_have_value("")
    for page in receivers:
        await expect(chat_lines(page, sender_name, own=False).last).to_have_text(text)


async def test_two_guests_chat_reload_and_relogin_kick(
    browser: Any, up_cluster: UpCluster, artifacts: Path, page_errors: list[str]
) -> None:
    expect = _expect()
    shots = Shots(artifacts)
    url = up_cluster.web_url
    ctx1 = await browser.new_context(viewport=VIEWPORT, locale="en-US")
    ctx2 = await browser.new_context(viewport=VIEWPORT, locale="en-US")
    pages: dict[str, Any] = {}
    try:
        # Two browser contexts, two guest keys: two accounts.
        p1, uid1 = await open_page(ctx1, url, page_errors)
        p2, uid2 = await open_page(ctx2, url, page_errors)
        pages.update(p1=p1, p2=p2)
        assert uid1 != uid2
        await expect(tid(p1, "gateway-url")).to_have_text(up_cluster.ws_url)
        await shots.take("logged-in", p1=p1, p2=p2)

        # Both enter; each sees the other in the member list.
        await enter_room(p1, "Alice", "1")
        await enter_room(p2, "Bob", "0")
        for page, other in ((p1, "Bob"), (p2, "Alice")):
            await expect(member(page, other, self_=False)).to_have_count(1)
            await expect(tid(page, "members").get_by_test_id("member")).to_have_count(2)
            await expect(tid(page, "member-count")).to_have_text("2")
        await expect(system_lines(p1, "arrived")).to_have_count(1)  # Bob joined
        await expect(system_lines(p2, "arrived")).to_have_count(0)  # Alice was there
        await shots.take("in-room", p1=p1, p2=p2)

        # Messages both ways, emoji included.
        talk = [
            (p1, "Alice", "Hi Bob! 👋 Welcome to the talkroom.", p2),
            (p2, "Bob", "Hey Alice 🎲 up for a round of dice?", p1),
            (p1, "Alice", "Sure, count me in 👍", p2),
            (p2, "Bob", "Great: table 3 in five minutes 🚀", p1),
            (p1, "Alice", "On my way. Bringing snacks 🍕", p2),
        ]
        for sender, name, text, receiver in talk:
            await say(sender, name, text, receiver)
        for page in (p1, p2):
            chats = page.locator('[data-testid="message"][data-kind="chat"]')
            await expect(chats).to_have_count(len(talk))
        await shots.take("chat", p1=p1, p2=p2)
        await save_readme_shot(p1, artifacts)

        # Page 1 reloads: same localStorage key, so the same account (uid), back in the lobby.
        await p1.reload()
        await expect(tid(p1, "status")).to_have_attribute("data-state", "ready")
        await expect(tid(p1, "uid")).to_have_text(uid1)
        await expect(tid(p1, "enter-name")).to_have_value("Alice")  # remembered too
        await expect(system_lines(p2, "departed")).to_have_count(1)  # the old page left
        await expect(member(p2, "Alice", self_=False)).to_have_count(0)
        await enter_room(p1, "Alice", "1")
        await expect(member(p1, "Bob", self_=False)).to_have_count(1)
        await expect(member(p2, "Alice", self_=False)).to_have_count(1)
        await say(p1, "Alice", "Back again ✅", p2)
        await shots.take("reloaded", p1=p1, p2=p2)

        # A third page in page 1's context shares its key: it signs in as the same account,
        # and the gateway kicks page 1 (RELOGIN).
        p3, uid3 = await open_page(ctx1, url, page_errors)
        pages["p3"] = p3
        assert uid3 == uid1
        await expect(tid(p1, "banner")).to_be_visible()
        await expect(tid(p1, "banner")).to_have_attribute("data-kind", "relogin")
        await expect(tid(p1, "banner-text")).to_contain_text("signed in from another")
        await expect(tid(p1, "status")).to_have_attribute("data-state", "kicked")
        await expect(tid(p1, "msg-input")).to_be_disabled()
        await expect(system_lines(p1, "disconnected")).to_have_count(1)
        await expect(member(p2, "Alice", self_=False)).to_have_count(0)

        # The new page takes over the room; the kicked page stays kicked (no auto-reconnect).
        await enter_room(p3, "Alice", "1")
        await expect(member(p2, "Alice", self_=False)).to_have_count(1)
        await say(p2, "Bob", "Hello again, Alice's new tab", p3)
        await expect(tid(p1, "status")).to_have_attribute("data-state", "kicked")
        await expect(tid(p1, "banner")).to_have_attribute("data-kind", "relogin")
        await expect(tid(p3, "uid")).to_have_text(uid1)
        await expect(tid(p3, "banner")).to_be_hidden()
        await shots.take("kicked", p1=p1, p2=p2, p3=p3)
    except BaseException:
        await screenshot_failure(pages, artifacts)
        raise
    finally:
        await ctx1.close()
        await ctx2.close()


async def save_readme_shot(page: Any, artifacts: Path) -> None:
    """The chat in progress, as the README shows it (written to docs/ only on request)."""
    target = artifacts / "readme-chat.png"
    await tid(page, "msg-input").blur()  # no focus ring in the picture
    await page.screenshot(path=target)
    if os.environ.get("NETBUS_UPDATE_SCREENSHOT") == "1":
        data = target.read_bytes()
        assert len(data) < README_SHOT_MAX, f"{target}: {len(data)} bytes"
        README_SHOT.parent.mkdir(parents=True, exist_ok=True)
        README_SHOT.write_bytes(data)


async def test_unavailable_banner_while_talkroom_restarts(
    browser: Any, up_cluster: UpCluster, artifacts: Path, page_errors: list[str]
) -> None:
    expect = _expect()
    shots = Shots(artifacts)
    ctx = await browser.new_context(viewport=VIEWPORT, locale="en-US")
    pages: dict[str, Any] = {}
    try:
        page, uid = await open_page(ctx, up_cluster.web_url, page_errors)
        pages["page"] = page
        await enter_room(page, "Carol", "1")
        await say(page, "Carol", "before the crash")
        await shots.take("in-room", page=page)

        # Kill the talkroom process that `netbus up` runs; the room goes with it.
        talkroom = up_cluster.role_pids()["talkroom"]
        mark = len(up_cluster.lines)
        os.kill(talkroom, signal.SIGKILL)
        banner = page.locator('[data-testid="banner"][data-kind="unavailable"]:not([hidden])')
        await expect(banner).to_be_visible()
        await expect(tid(page, "status")).not_to_have_attribute("data-state", "in-room")
        await expect(system_lines(page, "service-down")).to_have_count(1)
        await shots.take("unavailable", page=page)

        # `netbus up` restarts it, the gateway relinks and says so, the page re-enters itself.
        await expect(tid(page, "status")).to_have_attribute(
            "data-state", "in-room", timeout=RECOVERY_TIMEOUT
        )
        await expect(tid(page, "banner")).to_be_hidden()
        await expect(system_lines(page, "entered").last).to_contain_text("back in the room")
        await expect(tid(page, "member-count")).to_have_text("1")
        await expect(tid(page, "uid")).to_have_text(uid)
        assert any("talkroom exited with code -9" in line for line in up_cluster.lines[mark:]), (
            up_cluster.log()
        )
        restarted = up_cluster.role_pids().get("talkroom")
        assert restarted not in (None, talkroom)
        await say(page, "Carol", "after the restart 🎉")
        await shots.take("recovered", page=page)
    except BaseException:
        await screenshot_failure(pages, artifacts)
        raise
    finally:
        await ctx.close()


class Listener:
    """A WebSocket server on a free port that records every connection and message: the
    attacker's gateway in a phishing link."""

    def __init__(self) -> None:
        self.connections = 0
        self.messages: list[bytes | str] = []
        self.server: Any = None

    async def __aenter__(self) -> Listener:
        from websockets.asyncio.server import serve

        async def record(ws: Any) -> None:
            self.connections += 1
            async for message in ws:
                self.messages.append(message)

        self.server = await serve(record, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"


async def test_a_link_cannot_send_the_guest_key_elsewhere(
    browser: Any, up_cluster: UpCluster, artifacts: Path, page_errors: list[str]
) -> None:
    """Issue 10 item 4: `/?gw=<attacker>` used to make the page send the stored guest key to
    the attacker's server (who then logged in as the victim). The page connects only to the
    configured gateway, and its CSP blocks any other WebSocket."""
    expect = _expect()
    ctx = await browser.new_context(viewport=VIEWPORT, locale="en-US")
    pages: dict[str, Any] = {}
    try:
        async with Listener() as attacker:
            page, uid = await open_page(ctx, up_cluster.web_url, page_errors)
            pages["page"] = page
            key = await page.evaluate("localStorage.getItem('netbus.guestKey')")
            assert isinstance(key, str) and len(key) == 32
            await page.close()

            # The victim follows the attacker's link: same browser, same stored key.
            for query in (f"?gw={attacker.url}", f"?gw={attacker.url}&proto=buf"):
                link = await ctx.new_page()
                pages["link"] = link
                watch_errors(link, page_errors)
                await link.goto(up_cluster.web_url + query)
                await expect(tid(link, "status")).to_have_attribute("data-state", "ready")
                await expect(tid(link, "uid")).to_have_text(uid)  # the real gateway, same key
                await expect(tid(link, "gateway-url")).to_have_text(up_cluster.ws_url)
                await link.close()
            assert key == await page_key(ctx, up_cluster.web_url)

            # Even script running in the page cannot open a socket to another host.
            probe = await ctx.new_page()
            pages["probe"] = probe
            violations: list[str] = []
            probe.on("console", lambda msg: violations.append(msg.text))
            await probe.goto(up_cluster.web_url)
            await expect(tid(probe, "status")).to_have_attribute("data-state", "ready")
            outcome = await probe.evaluate(
                """url => new Promise(resolve => {
                    try {
                        const ws = new WebSocket(url);
                        ws.onopen = () => resolve("open");
                        ws.onerror = () => resolve("blocked");
                    } catch (err) { resolve("blocked: " + err.name); }
                })""",
                attacker.url,
            )
            assert outcome.startswith("blocked"), outcome
            assert any("Content Security Policy" in text for text in violations), violations
        assert attacker.connections == 0, attacker.messages
        assert not [m for m in attacker.messages if key in str(m)]
    except BaseException:
        await screenshot_failure(pages, artifacts)
        raise
    finally:
        await ctx.close()


async def page_key(context: Any, url: str) -> str:
    """The guest key the page keeps in ``context``'s localStorage."""
    page = await context.new_page()
    try:
        await page.goto(url)
        return str(await page.evaluate("localStorage.getItem('netbus.guestKey')"))
    finally:
        await page.close()


def banner_about(page: Any, kind: str, stype: int) -> Any:
    return page.locator(
        f'[data-testid="banner"][data-kind="{kind}"][data-stype="{stype}"]:not([hidden])'
    )


@contextlib.contextmanager
def supervisor_paused(cluster: UpCluster) -> Iterator[None]:
    """`netbus up` frozen, so that a role killed meanwhile stays down until we go on."""
    os.kill(cluster.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(cluster.pid, signal.SIGCONT)


AUTH = 2  #: the login service's stype (docs/protocol.md §6.2)


async def test_signed_in_page_clears_its_banner_when_the_login_service_returns(
    browser: Any, up_cluster: UpCluster, artifacts: Path, page_errors: list[str]
) -> None:
    """Issue 10 item 12, page side: the center goes down (the page says so) and comes back;
    SERVICE_AVAILABLE clears the banner instead of leaving a stale warning up."""
    expect = _expect()
    ctx = await browser.new_context(viewport=VIEWPORT, locale="en-US")
    pages: dict[str, Any] = {}
    try:
        page, uid = await open_page(ctx, up_cluster.web_url, page_errors)
        pages["page"] = page
        with supervisor_paused(up_cluster):
            os.kill(up_cluster.role_pids()["center"], signal.SIGKILL)
            await expect(banner_about(page, "unavailable", AUTH)).to_be_visible()
        await expect(tid(page, "banner")).to_be_hidden(timeout=RECOVERY_TIMEOUT)
        await expect(tid(page, "status")).to_have_attribute("data-state", "ready")
        await expect(tid(page, "uid")).to_have_text(uid)
        await enter_room(page, "Dora", "1")  # and the page still works
    except BaseException:
        await screenshot_failure(pages, artifacts)
        raise
    finally:
        await ctx.close()


async def test_page_whose_login_failed_in_an_outage_signs_in_when_it_returns(
    browser: Any, up_cluster: UpCluster, artifacts: Path, page_errors: list[str]
) -> None:
    """Issue 10 item 12: a page opened while the center is down fails to sign in; when the
    gateway says the login service is back (it tells pre-login connections that used it),
    the page signs in by itself."""
    pytest.importorskip(
        "netbus.gateway.notices",
        reason="needs the gateway that sends SERVICE_AVAILABLE to pre-login connections",
    )
    expect = _expect()
    ctx = await browser.new_context(viewport=VIEWPORT, locale="en-US")
    pages: dict[str, Any] = {}
    try:
        with supervisor_paused(up_cluster):
            os.kill(up_cluster.role_pids()["center"], signal.SIGKILL)
            await up_cluster.wait_link_down("auth")
            page = await ctx.new_page()
            pages["page"] = page
            watch_errors(page, page_errors)
            await page.goto(up_cluster.web_url)
            await expect(tid(page, "status")).to_have_attribute("data-state", "failed")
            await expect(banner_about(page, "unavailable", AUTH)).to_be_visible()
        await expect(tid(page, "status")).to_have_attribute(
            "data-state", "ready", timeout=RECOVERY_TIMEOUT
        )
        await expect(tid(page, "uid")).to_have_text(UID)
        await expect(tid(page, "banner")).to_be_hidden()
    except BaseException:
        await screenshot_failure(pages, artifacts)
        raise
    finally:
        await ctx.close()
