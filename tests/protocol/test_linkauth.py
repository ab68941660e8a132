"""The service-link handshake, sans-I/O: golden bytes, both sides back to back, every failure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netbus.protocol.linkauth import (
    HELLO_SIZE,
    MAGIC,
    PROOF_SIZE,
    VERSION,
    AuthState,
    GatewayHandshake,
    ServiceHandshake,
    gateway_mac,
    service_mac,
)

SECRET = b"netbus-test-cluster-secret-0001"
NONCE_S = bytes([0x11]) * 32
NONCE_G = bytes([0x22]) * 32
# Computed outside Python: printf 'netbus-link gateway\x01' + nonces | openssl dgst -sha256 -hmac
GOLDEN_GATEWAY_MAC = "cc0a30b9808b702d4d221f30a5a57df1bc5ef042620c1c61bf629c5ea53e2fcd"
GOLDEN_SERVICE_MAC = "c8c1702cd473ec26fa5ba18a9dc0bd87d3ddaf442d54b3d82ac7e3e5e36fefa5"


def pair(
    gateway_secret: bytes = SECRET, service_secret: bytes = SECRET
) -> tuple[GatewayHandshake, ServiceHandshake]:
    return (
        GatewayHandshake(gateway_secret, nonce=NONCE_G),
        ServiceHandshake(service_secret, nonce=NONCE_S),
    )


def run(gateway: GatewayHandshake, service: ServiceHandshake) -> None:
    """Shuttle bytes until neither side has anything to say."""
    for _ in range(4):
        out = service.data_to_send()
        if out:
            gateway.receive_data(out)
        back = gateway.data_to_send()
        if back:
            service.receive_data(back)
        if not out and not back:
            return


def test_golden_macs() -> None:
    assert gateway_mac(SECRET, NONCE_S, NONCE_G).hex() == GOLDEN_GATEWAY_MAC
    assert service_mac(SECRET, NONCE_S, NONCE_G).hex() == GOLDEN_SERVICE_MAC


def test_golden_messages() -> None:
    gateway, service = pair()
    hello = service.data_to_send()
    assert hello == b"NBLA\x01" + NONCE_S and len(hello) == HELLO_SIZE
    assert gateway.receive_data(hello) is AuthState.WAITING
    proof = gateway.data_to_send()
    assert proof == b"NBLA\x01" + NONCE_G + bytes.fromhex(GOLDEN_GATEWAY_MAC)
    assert len(proof) == PROOF_SIZE
    assert service.receive_data(proof) is AuthState.DONE
    answer = service.data_to_send()
    assert answer == b"NBLA\x01" + bytes.fromhex(GOLDEN_SERVICE_MAC)
    assert gateway.receive_data(answer) is AuthState.DONE
    assert gateway.leftover == service.leftover == b""


def test_same_secret_both_done_and_leftover_is_the_first_frames() -> None:
    gateway, service = pair()
    gateway.receive_data(service.data_to_send())
    service.receive_data(gateway.data_to_send() + b"frame-bytes")
    assert service.state is AuthState.DONE and service.leftover == b"frame-bytes"
    gateway.receive_data(service.data_to_send() + b"\x0c\x00hello")
    assert gateway.state is AuthState.DONE and gateway.leftover == b"\x0c\x00hello"
    service.receive_data(b"more")  # bytes after DONE are leftover too
    assert service.leftover == b"frame-bytesmore"


@given(st.data())
def test_any_split_points(data: st.DataObject) -> None:
    gateway, service = GatewayHandshake(SECRET), ServiceHandshake(SECRET)

    def dribble(src: bytes, dst: GatewayHandshake | ServiceHandshake) -> None:
        at = 0
        while at < len(src):
            step = data.draw(st.integers(1, len(src) - at))
            dst.receive_data(src[at : at + step])
            at += step

    dribble(service.data_to_send(), gateway)
    dribble(gateway.data_to_send(), service)
    dribble(service.data_to_send(), gateway)
    assert gateway.state is service.state is AuthState.DONE


def test_wrong_secret_fails_at_the_service_which_proves_nothing() -> None:
    gateway, service = pair(gateway_secret=b"another-secret-of-16+bytes")
    run(gateway, service)
    assert service.state is AuthState.FAILED
    assert service.error is not None and service.error.kind == "link_auth"
    assert service.data_to_send() == b""  # no proof of its own for a peer that failed
    assert gateway.state is AuthState.WAITING  # the link is closed under it


def test_a_fake_service_cannot_prove_itself() -> None:
    """A process that grabbed the service port without the secret: the gateway refuses it."""
    gateway = GatewayHandshake(SECRET, nonce=NONCE_G)
    fake = ServiceHandshake(b"guessed-secret-0123456789", nonce=NONCE_S)
    gateway.receive_data(fake.data_to_send())
    proof = gateway.data_to_send()
    # The fake cannot verify the proof; it answers with anything it can make.
    forged = MAGIC + bytes((VERSION,)) + service_mac(b"guessed-secret-0123456789", NONCE_S, NONCE_G)
    assert fake.receive_data(proof) is AuthState.FAILED
    assert gateway.receive_data(forged) is AuthState.FAILED
    assert gateway.error is not None and "service proof" in str(gateway.error)


def test_reflection_and_replay_are_refused() -> None:
    # Reflection: echo the gateway's own nonce back as the service nonce.
    gateway = GatewayHandshake(SECRET, nonce=NONCE_G)
    assert gateway.receive_data(b"NBLA\x01" + NONCE_G) is AuthState.FAILED
    # Replay: a proof recorded on one link does not open another (fresh service nonce).
    gateway, service = pair()
    gateway.receive_data(service.data_to_send())
    recorded = gateway.data_to_send()
    later = ServiceHandshake(SECRET)  # a new link: a new random nonce
    later.data_to_send()
    assert later.receive_data(recorded) is AuthState.FAILED
    # A service proof cannot be passed off as a gateway proof (labels differ).
    service = ServiceHandshake(SECRET, nonce=NONCE_S)
    mac = service_mac(SECRET, NONCE_S, NONCE_G)
    assert service.receive_data(b"NBLA\x01" + NONCE_G + mac) is AuthState.FAILED


@pytest.mark.parametrize(
    "first",
    [
        b"\x0c\x00\x01\x00\x05\x00\x00\x00\x00\x00\x01\x00",  # a netbus frame: no handshake
        b"GET / HTTP/1.1\r\n",
        b"N",  # a prefix is fine ...
    ],
)
def test_a_stray_client_fails_at_its_first_byte(first: bytes) -> None:
    service = ServiceHandshake(SECRET)
    state = service.receive_data(first)
    assert state is (AuthState.WAITING if first == b"N" else AuthState.FAILED)


def test_version_byte_is_checked() -> None:
    gateway = GatewayHandshake(SECRET)
    assert gateway.receive_data(b"NBLA\x02" + NONCE_S) is AuthState.FAILED
    assert gateway.error is not None and "version 2" in str(gateway.error)


def test_short_secret_refused_and_repr_hides_it() -> None:
    with pytest.raises(ValueError):
        ServiceHandshake(b"short")
    assert SECRET.decode() not in repr(ServiceHandshake(SECRET))
    with pytest.raises(ValueError):
        GatewayHandshake(SECRET, nonce=b"too short")
