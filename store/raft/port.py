"""The Raft port against whoever can reach it: pysyncobj's listener and connections, guarded.

pysyncobj trusts the network. Its listener binds every interface, keeps a connection that never
says a word for as long as it likes, buffers whatever a sender streams before it looks at the
frame's length, and closes itself for good on the first accept() error other than EAGAIN (running
out of descriptors is one). The pieces here, installed by HardenedTransport (docs/raft.md):

- `GuardedServer`: the listener survives every accept() error. When descriptors run out it
  stops polling the listener for a moment and tries again; any other error is logged and
  accepting goes on.
- `CappedConnection`: a frame's length prefix is checked as soon as its four bytes arrive, and
  reading stops once the frame is complete, so neither the read buffer nor the tick thread's work
  grows past one frame (plus one recv) before the cap is checked. Its frames are sealed by
  `frames.FrameCipher` in place of the library's zlib and Fernet; one that fails to open closes
  the connection.
- `Handshakes`: an incoming connection that has not authenticated (the key exchange and the
  sender's node address, both encrypted with the cluster secret) is closed after a deadline;
  beyond a cap of such connections the oldest is closed at once.
- `raise_open_files_limit`: the soft limit on descriptors goes up to the hard limit at start.
"""

from __future__ import annotations

import errno
import logging
import resource
import socket
import struct
from dataclasses import dataclass
from typing import Any

import pysyncobj.pickle as pickle
from pysyncobj.monotonic import monotonic as library_monotonic
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.tcp_server import TcpServer

from store.raft.frames import Direction, FrameCipher

logger = logging.getLogger(__name__)

FRAME_PREFIX = struct.Struct("i")  # tcp_connection frames: a native signed int32 length
_TRY_AGAIN = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})
# accept() errors that mean "no descriptor or buffer to spare right now": retrying at once would
# spin, since the pending connection keeps the listener readable.
_OUT_OF_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# pysyncobj listens with a backlog of 5: a handful of strangers connecting at once fill it, and a
# peer's connection attempt is then dropped and retried only after a second or more.
LISTEN_BACKLOG = 128
# Connections taken from the backlog per readable event: enough to drain a burst in a few polls,
# few enough that one burst does not hold the tick thread.
_ACCEPTS_PER_EVENT_MAX = 32


class ThrottledWarning:
    """A warning a stranger can trigger at will: logged at most once per `interval_s`, with the
    number of those left out since, so that a flood of bad connections cannot flood the log."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next_at = float("-inf")
        self._left_out = 0

    def __call__(self, message: str, *args: object) -> None:
        now = library_monotonic()
        if now < self._next_at:
            self._left_out += 1
            return
        if self._left_out:
            message += f" ({self._left_out} more like it in the last {self._interval_s:.0f} s)"
        logger.warning(message, *args)
        self._left_out = 0
        self._next_at = now + self._interval_s


_warn_of_a_bad_frame = ThrottledWarning(interval_s=10.0)
_warn_of_a_failed_accept = ThrottledWarning(interval_s=10.0)


@dataclass
class PortStats:
    """What the port's guards did; part of the transport's counters."""

    frames_rejected: int = 0
    frames_unopened: int = 0
    handshakes_timed_out: int = 0
    handshakes_evicted: int = 0
    accept_errors: int = 0


class GuardedServer(TcpServer):  # type: ignore[misc]
    """pysyncobj's TcpServer whose listener survives every accept() error."""

    def __init__(self, *args: Any, stats: PortStats, accept_pause_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stats = stats
        self._accept_pause_s = accept_pause_s
        self._resume_at: float | None = None

    def bind(self) -> None:
        super().bind()
        self._TcpServer__socket.listen(LISTEN_BACKLOG)

    # The library subscribes this name-mangled method to the poller when it binds.
    def _TcpServer__onNewConnection(self, descriptor: int, event: int) -> None:
        if event & POLL_EVENT_TYPE.ERROR:
            _warn_of_a_failed_accept("Raft port: an error event on the listening socket; pausing")
            self._pause()
            return
        if event & POLL_EVENT_TYPE.READ:
            for _ in range(_ACCEPTS_PER_EVENT_MAX):
                if not self._accept():
                    return

    def _accept(self) -> bool:
        """Accept one connection; False when there is none to take now (or accept() failed)."""
        try:
            sock, _ = self._TcpServer__socket.accept()
        except OSError as error:
            if error.errno not in _TRY_AGAIN:
                self._accept_failed(error)
            return False
        try:
            connection = self._connection_for(sock)
        except OSError as error:
            sock.close()
            logger.warning("Raft port: dropped a connection that failed its setup (%s)", error)
            return True
        self._TcpServer__onNewConnectionCallback(connection)
        return True

    def _accept_failed(self, error: OSError) -> None:
        self._stats.accept_errors += 1
        if error.errno in _OUT_OF_RESOURCES:
            _warn_of_a_failed_accept(
                "Raft port: accept() failed (%s); pausing accept() for %.2f s, then retrying",
                error,
                self._accept_pause_s,
            )
            self._pause()
        else:
            _warn_of_a_failed_accept("Raft port: accept() failed (%s); still listening", error)

    def _connection_for(self, sock: socket.socket) -> TcpConnection:
        """The connection pysyncobj's own accept path would build for this socket."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._TcpServer__sendBufferSize)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._TcpServer__recvBufferSize)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return TcpConnection(
            poller=self._TcpServer__poller,
            socket=sock,
            timeout=self._TcpServer__connectionTimeout,
            sendBufferSize=self._TcpServer__sendBufferSize,
            recvBufferSize=self._TcpServer__recvBufferSize,
            keepalive=self._TcpServer__keepalive,
        )

    def _pause(self) -> None:
        """Stop polling the listener for accept_pause_s; `resume_if_due` polls it again."""
        descriptor = self._TcpServer__fileno
        if descriptor is None:
            return
        self._TcpServer__poller.unsubscribe(descriptor)
        self._resume_at = library_monotonic() + self._accept_pause_s

    def resume_if_due(self) -> None:
        """Poll the listener again once a pause is over; the transport calls it every tick."""
        if self._resume_at is None or library_monotonic() < self._resume_at:
            return
        self._resume_at = None
        descriptor = self._TcpServer__fileno
        if descriptor is not None:
            self._TcpServer__poller.subscribe(
                descriptor,
                self._TcpServer__onNewConnection,
                POLL_EVENT_TYPE.READ | POLL_EVENT_TYPE.ERROR,
            )


class CappedConnection(TcpConnection):  # type: ignore[misc]
    """A TcpConnection that checks each frame's length before it buffers the frame.

    pysyncobj reads until the socket is drained and only then parses, so a sender that keeps
    streaming grows the buffer (and the copying of it) without bound before any length is looked
    at. Here a length prefix is checked as soon as it is in, and reading stops once the first
    frame in the buffer is complete: the parse that follows consumes it, and a level-triggered
    poll brings the rest. The transport switches connections to this class after creation
    (same object layout) and sets `frame_bytes_max` and `stats`.
    """

    frame_bytes_max: int
    stats: PortStats
    # Per direction, the sealing state of the current session (a new random key starts one).
    _sending: Direction | None = None
    _receiving: Direction | None = None
    # The library's private state this class reads and writes.
    _TcpConnection__readBuffer: bytes
    _TcpConnection__writeBuffer: bytes
    _TcpConnection__lastReadTime: float

    def _TcpConnection__tryReadBuffer(self) -> None:
        buffered = self._TcpConnection__readBuffer
        chunks = [buffered]
        size = len(buffered)
        prefix = buffered[: FRAME_PREFIX.size]
        sock = self._TcpConnection__socket
        while True:
            if len(prefix) == FRAME_PREFIX.size:
                (length,) = FRAME_PREFIX.unpack(prefix)
                if self._refused(length):
                    return
                if size >= FRAME_PREFIX.size + length:
                    break
            try:
                incoming = sock.recv(self._TcpConnection__recvBufferSize)
            except OSError as error:
                if error.errno in _TRY_AGAIN:
                    break
                self.disconnect()
                return
            if not incoming:
                self.disconnect()
                return
            chunks.append(incoming)
            size += len(incoming)
            prefix = (prefix + incoming)[: FRAME_PREFIX.size]
        # One join per poll event: appending recv by recv would copy the buffer each time.
        self._TcpConnection__readBuffer = b"".join(chunks)
        self._TcpConnection__lastReadTime = library_monotonic()

    def send(self, message: Any) -> None:
        frame = self._seal(pickle.dumps(message))
        self._TcpConnection__writeBuffer += FRAME_PREFIX.pack(len(frame)) + frame
        self._TcpConnection__trySendBuffer()

    def _TcpConnection__processParseMessage(self) -> Any:
        # Frames after the first one of a read arrive here unchecked: check each before parsing.
        buffered = self._TcpConnection__readBuffer
        if len(buffered) < FRAME_PREFIX.size:
            return None
        (length,) = FRAME_PREFIX.unpack_from(buffered)
        if self._refused(length):
            return None
        end = FRAME_PREFIX.size + length
        if len(buffered) < end:
            return None
        self._TcpConnection__readBuffer = buffered[end:]
        try:
            return pickle.loads(self._open(buffered[FRAME_PREFIX.size : end]))
        except Exception as error:  # a frame that fails to open or to unpickle
            _warn_of_a_bad_frame("closing a connection whose frame did not open (%s)", error)
            self.stats.frames_unopened += 1
            self.disconnect()
            return None

    def _seal(self, payload: bytes) -> bytes:
        cipher: FrameCipher | None = self.encryptor
        if cipher is None:
            return payload
        if self.sendRandKey is None:  # the dialing side's key: the other side's is not known yet
            return cipher.seal_hello(payload)
        if self._sending is None or self._sending.peer_key != self.sendRandKey:
            self._sending = cipher.direction(self.sendRandKey)
        return cipher.seal(self._sending, payload)

    def _open(self, frame: bytes) -> bytes:
        cipher: FrameCipher | None = self.encryptor
        if cipher is None:
            return frame
        if self.recvRandKey is None:  # the dialing side's key, sent before it knows ours
            return cipher.open_hello(frame)
        if self._receiving is None or self._receiving.peer_key != self.recvRandKey:
            self._receiving = cipher.direction(self.recvRandKey)
        return cipher.open(self._receiving, frame)

    def _refused(self, length: int) -> bool:
        """Close the connection if a frame's announced length is out of bounds."""
        if 0 <= length <= self.frame_bytes_max:
            return False
        _warn_of_a_bad_frame(
            "closing a connection that announced a %d-byte frame (at most %d here)",
            length,
            self.frame_bytes_max,
        )
        self.stats.frames_rejected += 1
        self.disconnect()
        return True


class Handshakes:
    """Incoming connections that have not authenticated yet: a deadline each, and a cap.

    pysyncobj keeps such a connection as long as it stays silent (the connection timeout only
    runs when a socket has an event, and it is set very long for the peer links anyway). Each
    one is closed once `deadline_s` has passed, and beyond `connections_max` of them the oldest
    is closed at once, so that a flood of new sockets does not lock out a peer that is half way
    through its own handshake.
    """

    def __init__(self, deadline_s: float, connections_max: int, stats: PortStats) -> None:
        self._deadline_s = deadline_s
        self._connections_max = connections_max
        self._stats = stats
        # Arrival order is deadline order (one deadline for all), so the oldest comes first.
        self._deadlines: dict[Any, float] = {}

    def arrived(self, connection: Any) -> None:
        self._deadlines[connection] = library_monotonic() + self._deadline_s
        while len(self._deadlines) > self._connections_max:
            oldest = next(iter(self._deadlines))
            del self._deadlines[oldest]
            self._stats.handshakes_evicted += 1
            oldest.disconnect()

    def forget(self, connection: Any) -> None:
        """The connection authenticated, or it is closed."""
        self._deadlines.pop(connection, None)

    def close_all(self) -> None:
        """Close every connection still waiting for its handshake (their descriptors too)."""
        while self._deadlines:
            connection = next(iter(self._deadlines))
            del self._deadlines[connection]
            self._stats.handshakes_timed_out += 1
            connection.disconnect()

    def close_expired(self) -> None:
        now = library_monotonic()
        while self._deadlines:
            connection, deadline = next(iter(self._deadlines.items()))
            if deadline > now:
                return
            del self._deadlines[connection]
            self._stats.handshakes_timed_out += 1
            connection.disconnect()


def raise_open_files_limit() -> None:
    """Raise this process's soft limit on open descriptors to its hard limit.

    Every peer link, client connection and journal holds one; the soft limit (often 1024) is
    what a flood of connections would exhaust first.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError) as error:
        logger.warning("open files limit stays %d (raising it to %d failed: %s)", soft, hard, error)
        return
    logger.info("open files limit raised from %d to %d", soft, hard)
