"""Sealed Raft frames: what opens, and everything an attacker on the wire might try that must not.

Method: two FrameCipher instances from the same secret stand for the two nodes of a connection;
each direction is keyed by the random key its receiving side chose, as in pysyncobj's handshake.
Checked: frames open in order on the other side; a replayed, reordered, dropped, flipped,
truncated or foreign frame (another connection, another secret, the first-frame kind after it)
fails; the nonce never repeats within a direction. And on a real node's port: a first frame
sealed with another secret, or a stock pysyncobj (zlib + Fernet) frame, closes the connection.
"""

from __future__ import annotations

import os
import socket
import zlib
from collections.abc import Iterator

import pysyncobj.pickle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.encryptor import getEncryptor

from store.raft.frames import FrameCipher, FrameError
from store.raft.port import FRAME_PREFIX
from store.raft.transport import HardenedTransport
from tests.chaos.cluster import free_ports

SECRET = "a cluster secret of some length"


@pytest.fixture(scope="module")
def ciphers() -> tuple[FrameCipher, FrameCipher]:
    return FrameCipher.from_secret(SECRET), FrameCipher.from_secret(SECRET)


def test_the_first_frame_opens_under_the_secret_alone(
    ciphers: tuple[FrameCipher, FrameCipher],
) -> None:
    dialer, listener = ciphers
    key = os.urandom(32)
    assert listener.open_hello(dialer.seal_hello(key)) == key


def test_a_frame_sealed_with_another_secret_does_not_open(
    ciphers: tuple[FrameCipher, FrameCipher],
) -> None:
    stranger = FrameCipher.from_secret("another secret")
    _, listener = ciphers
    with pytest.raises(FrameError):
        listener.open_hello(stranger.seal_hello(b"hello"))
    key = os.urandom(32)
    with pytest.raises(FrameError):
        listener.open(listener.direction(key), stranger.seal(stranger.direction(key), b"x"))


@settings(deadline=None, max_examples=50)
@given(payloads=st.lists(st.binary(max_size=200), min_size=1, max_size=20))
def test_frames_open_in_order(
    ciphers: tuple[FrameCipher, FrameCipher], payloads: list[bytes]
) -> None:
    sender, receiver = ciphers
    key = os.urandom(32)  # chosen by the receiving side
    sending, receiving = sender.direction(key), receiver.direction(key)
    frames = [sender.seal(sending, payload) for payload in payloads]
    assert [receiver.open(receiving, frame) for frame in frames] == payloads


def test_a_replayed_frame_does_not_open(ciphers: tuple[FrameCipher, FrameCipher]) -> None:
    sender, receiver = ciphers
    key = os.urandom(32)
    sending, receiving = sender.direction(key), receiver.direction(key)
    frame = sender.seal(sending, b"append entries")
    receiver.open(receiving, frame)
    with pytest.raises(FrameError):
        receiver.open(receiving, frame)


def test_reordered_or_dropped_frames_do_not_open(
    ciphers: tuple[FrameCipher, FrameCipher],
) -> None:
    sender, receiver = ciphers
    key = os.urandom(32)
    sending = sender.direction(key)
    first, second = sender.seal(sending, b"1"), sender.seal(sending, b"2")
    with pytest.raises(FrameError):
        receiver.open(receiver.direction(key), second)
    receiving = receiver.direction(key)
    receiver.open(receiving, first)
    with pytest.raises(FrameError):
        receiver.open(receiving, first)


def test_a_frame_of_another_connection_does_not_open(
    ciphers: tuple[FrameCipher, FrameCipher],
) -> None:
    sender, receiver = ciphers
    frame = sender.seal(sender.direction(os.urandom(32)), b"for another connection")
    with pytest.raises(FrameError):
        receiver.open(receiver.direction(os.urandom(32)), frame)


@settings(deadline=None, max_examples=100)
@given(data=st.data())
def test_a_changed_frame_does_not_open(
    ciphers: tuple[FrameCipher, FrameCipher], data: st.DataObject
) -> None:
    sender, receiver = ciphers
    key = os.urandom(32)
    frame = bytearray(sender.seal(sender.direction(key), data.draw(st.binary(max_size=100))))
    if data.draw(st.booleans()):
        position = data.draw(st.integers(0, len(frame) - 1))
        frame[position] ^= data.draw(st.integers(1, 255))
    else:
        frame = frame[: data.draw(st.integers(0, len(frame) - 1))]
    with pytest.raises(FrameError):
        receiver.open(receiver.direction(key), bytes(frame))


def test_a_first_frame_is_refused_once_the_session_has_keys(
    ciphers: tuple[FrameCipher, FrameCipher],
) -> None:
    sender, receiver = ciphers
    with pytest.raises(FrameError):
        receiver.open(receiver.direction(os.urandom(32)), sender.seal_hello(b"hello again"))
    with pytest.raises(FrameError):
        receiver.open_hello(sender.seal(sender.direction(os.urandom(32)), b"x"))


def test_nonces_never_repeat_within_a_direction(ciphers: tuple[FrameCipher, FrameCipher]) -> None:
    sending = ciphers[0].direction(os.urandom(32))
    nonces = [sending.nonce() for _ in range(1000)]
    assert len(set(nonces)) == len(nonces)


@pytest.fixture
def node() -> Iterator[SyncObj]:
    self_port, peer_port = free_ports(2)
    conf = SyncObjConf(autoTick=False, password=SECRET)
    made = SyncObj(
        f"127.0.0.1:{self_port}", [f"127.0.0.1:{peer_port}"], conf, transportClass=HardenedTransport
    )
    yield made
    made.destroy()


def stock_frame() -> bytes:
    """The first frame a stock pysyncobj node (or tock before sealed frames) would send."""
    token: bytes = getEncryptor(SECRET).encrypt(
        zlib.compress(pysyncobj.pickle.dumps(os.urandom(32)), 3)
    )
    return token


@pytest.mark.parametrize(
    "frame",
    [FrameCipher.from_secret("another secret").seal_hello(os.urandom(32)), stock_frame()],
    ids=["another-secret", "stock-pysyncobj"],
)
def test_a_frame_that_does_not_open_closes_the_connection(node: SyncObj, frame: bytes) -> None:
    port = int(node.selfNode.address.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(FRAME_PREFIX.pack(len(frame)) + frame)
        sock.settimeout(0.05)
        for _ in range(20):
            node.doTick(0.01)
        assert sock.recv(1) == b"", "the connection was kept"
    assert node._SyncObj__transport.stats().frames_unopened == 1
