"""Copy bytes both ways between two connected sockets, as fast as the kernel allows.

Every byte a sandboxed download fetches crosses the proxy twice (in from the origin,
out to the sandbox), so copying through Python buffers would cost two extra copies
and a trip through the interpreter per chunk.  ``splice(2)`` moves the data socket
-> pipe -> socket inside the kernel instead: Python only sees byte counts.  Each
direction gets its own thread and its own pipe.  Where splice is unavailable (old
kernels, socket types that refuse it with EINVAL, no spare descriptors for a pipe)
the same loop runs with ``recv_into``/``sendall`` and a reusable buffer.

Idle tunnels should cost little and bulk ones should move megabytes per system call,
so both start small (a default 64 KiB pipe, a 64 KiB buffer) and grow to 1 MiB once
a read fills them.  Enlarged pipes are also rationed (:data:`MAX_BIG_PIPES`): the
kernel counts pipe memory per user (``pipe-user-pages-soft``, 64 MiB by default), and
past that limit *every* new pipe of that user — in any of their programs — shrinks
to 8 KiB.  A few dozen parallel downloads must not do that to the user's session.

TCP half-close is preserved: EOF from one side becomes ``shutdown(SHUT_WR)`` towards
the other, so request/response protocols that signal "done" by closing their sending
half keep working.  An error in either direction shuts both sockets down, so the
thread copying the other way wakes up instead of waiting forever.
"""

from __future__ import annotations

import _thread
import errno
import os
import socket
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["no_delay", "relay", "send_all", "spawn", "start_thread"]

#: Bytes asked of the kernel per splice/recv once a direction carries bulk data.
CHUNK = 1 << 20
#: Start size of the copy buffer (and the kernel's default pipe size).
SMALL = 64 * 1024
#: Pipes enlarged to CHUNK at any one time, process-wide (16 MiB of pipe memory).
MAX_BIG_PIPES = 16
#: Stack for proxy threads.  They run shallow loops, and a tunnel costs two threads:
#: the default 8 MiB each would reserve gigabytes of address space at a thousand
#: tunnels, which strict overcommit settings refuse.
THREAD_STACK = 512 * 1024

_F_SETPIPE_SZ = 1031  # <linux/fcntl.h>; the fcntl module names it only on some builds
_SPLICE_F_MOVE = 1
# Errors from splice(2) itself meaning "not for these descriptors": copy instead.
_NO_SPLICE = frozenset({errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP})

_stack_lock = threading.Lock()
_pipe_lock = threading.Lock()
_big_pipes = [0]  # enlarged pipes currently open


def start_thread(
    target: Callable[..., object], *args: object, name: str = "safe-run-proxy"
) -> threading.Thread:
    """Start a long-lived daemon thread (an accept loop) with a small stack.

    Daemon threads never hold up interpreter exit.
    """
    thread = threading.Thread(target=target, args=args, name=name, daemon=True)
    _with_small_stack(thread.start)
    return thread


def spawn(target: Callable[..., object], *args: object) -> None:
    """Run ``target(*args)`` in a new thread with a small stack, without waiting.

    For per-connection work.  ``threading.Thread.start`` blocks until the new
    thread has run, a context switch per connection that made the accept loop ten
    times slower under CPU load; ``_thread`` threads start without it, and like
    daemon threads they never hold up interpreter exit.  ``target`` must handle its
    own exceptions.
    """
    _with_small_stack(lambda: _thread.start_new_thread(target, args))


def _with_small_stack(start: Callable[[], object]) -> None:
    """Call ``start`` with the thread stack size set to THREAD_STACK.

    The stack size is process-wide, so it is set only for the duration of the call
    and restored at once; the lock keeps our own thread starts from racing.
    """
    with _stack_lock:
        try:
            previous = _thread.stack_size(THREAD_STACK)
        except (ValueError, RuntimeError):  # a platform that cannot: keep its default
            start()
            return
        try:
            start()
        finally:
            _thread.stack_size(previous)


def relay(
    a: socket.socket,
    b: socket.socket,
    *,
    until_b_eof: bool = False,
    first_from_b: Callable[[socket.socket], bytes] | None = None,
) -> tuple[int, int]:
    """Copy ``a -> b`` and ``b -> a`` until both reach EOF or either fails.

    Returns the byte counts ``(a_to_b, b_to_a)``.  Both sockets are switched to
    blocking mode (splice needs blocking descriptors; an established tunnel has no
    idle timeout: long polls and event streams are legitimate).  Nothing is closed:
    the caller owns the sockets.

    ``first_from_b``: reads the beginning of ``b``'s stream and returns what ``a``
    gets instead (the proxy marks forwarded response heads ``Connection: close``).

    ``until_b_eof``: the exchange is over once ``b`` has sent everything (plain HTTP
    forwarded with ``Connection: close``): ``a`` is then shut down both ways instead of
    waiting for a pooling client that would keep its half open indefinitely.
    """
    a.settimeout(None)
    b.settimeout(None)
    counts = [0, 0]
    forward_done = threading.Lock()
    forward_done.acquire()

    def forward() -> None:
        try:
            _pump(a, b, counts, 0, False)
        finally:
            forward_done.release()

    spawn(forward)
    if first_from_b is not None:
        # Read (and rewrite) the start of b's stream while a -> b already flows: a
        # request body may still be on its way, and b may wait for it to answer.
        head = first_from_b(b)
        send_all(a, head)
        counts[1] += len(head)
    _pump(b, a, counts, 1, until_b_eof)
    forward_done.acquire()  # wait for the other direction
    return counts[0], counts[1]


def send_all(sock: socket.socket, data: bytes) -> None:
    """Send what must go before the relay starts (a reply, bytes read with the head)."""
    if data:
        sock.settimeout(None)
        sock.sendall(data)


def no_delay(sock: socket.socket) -> None:
    """Forward small writes at once instead of holding them until the last is ACKed.

    A relay re-sends writes as they come; with Nagle on, a response written as head
    then body waits out the peer's delayed ACK (40 ms) between the two.
    """
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def _pump(src: socket.socket, dst: socket.socket, counts: list[int], slot: int, last: bool) -> None:
    """One direction: copy until EOF, then half-close ``dst`` (or all of it if this
    direction is the ``last`` word), or until an error, then shut both down."""
    try:
        if not _splice_loop(src, dst, counts, slot):
            _copy_loop(src, dst, counts, slot)
    except Exception:  # OSError in practice; anything else must not strand the peer
        _shutdown(src, socket.SHUT_RDWR)
        _shutdown(dst, socket.SHUT_RDWR)
        return
    _shutdown(dst, socket.SHUT_RDWR if last else socket.SHUT_WR)


def _splice_loop(src: socket.socket, dst: socket.socket, counts: list[int], slot: int) -> bool:
    """Copy through a pipe with splice; False if splice cannot be used here at all.

    The fallback is decided on the first call only: once bytes have moved through the
    pipe, an error is a real connection error and propagates.
    """
    splice = getattr(os, "splice", None)
    if splice is None:
        return False
    try:
        read_end, write_end = os.pipe()
    except OSError:  # out of descriptors: copying needs none
        return False
    big = tried = False
    try:
        src_fd, dst_fd = src.fileno(), dst.fileno()
        try:
            moved = splice(src_fd, write_end, CHUNK, flags=_SPLICE_F_MOVE)
        except OSError as exc:
            if exc.errno in _NO_SPLICE:
                return False
            raise
        while moved:
            counts[slot] += moved
            if moved >= SMALL // 2 and not tried:  # a bulk transfer, not a chat
                big = _enlarge_pipe(write_end)
                tried = True
            while moved:
                moved -= splice(read_end, dst_fd, moved, flags=_SPLICE_F_MOVE)
            moved = splice(src_fd, write_end, CHUNK, flags=_SPLICE_F_MOVE)
        return True
    finally:
        os.close(read_end)
        os.close(write_end)
        if big:
            with _pipe_lock:
                _big_pipes[0] -= 1


def _enlarge_pipe(fd: int) -> bool:
    """Grow a bulk transfer's pipe to CHUNK, if the ration and the kernel allow.

    The kernel may refuse (pipe-max-size, the user's pipe allowance): then the pipe
    keeps its size, which only costs more system calls.  Returns whether it grew.
    """
    with _pipe_lock:
        if _big_pipes[0] >= MAX_BIG_PIPES:
            return False
        _big_pipes[0] += 1
    import fcntl

    try:
        fcntl.fcntl(fd, _F_SETPIPE_SZ, CHUNK)
    except OSError:
        with _pipe_lock:
            _big_pipes[0] -= 1
        return False
    return True


def _copy_loop(src: socket.socket, dst: socket.socket, counts: list[int], slot: int) -> None:
    """The portable path: one reusable buffer, grown when a read fills it."""
    buffer = bytearray(SMALL)
    view = memoryview(buffer)
    while True:
        received = src.recv_into(buffer)
        if not received:
            return
        dst.sendall(view[:received])
        counts[slot] += received
        if received == len(buffer) < CHUNK:
            buffer = bytearray(CHUNK)
            view = memoryview(buffer)


def _shutdown(sock: socket.socket, how: int) -> None:
    """``shutdown`` that ignores sockets already disconnected or reset."""
    try:
        sock.shutdown(how)
    except OSError:
        pass
