"""Answer extraction and equivalence grading, compatible with the original study.

The answer is the last balanced `\\boxed{...}` in the text after `</think>` (strict: no
"rightmost expression" guess), else the last line starting with `Answer:`; equivalence is
decided by math-verify. math-verify's own timeouts use SIGALRM, which only works in the main
thread and cannot interrupt sympy stuck in C-level big-integer arithmetic (`9^{9^{9^9}}`), so
it runs in worker processes with a hard deadline: a worker past it is killed and replaced and
the answer counts as wrong. That keeps the worst case bounded from any thread.

    from sdlab.core.grading import grade, grade_many
    grade("... so the answer is \\boxed{\\frac12}.", "0.5")  # True
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait

logger = logging.getLogger(__name__)

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_PREFIX = "Answer:"
WORKER_START_TIMEOUT_S = 120.0
# A worker that tries to build a astronomically large integer dies of MemoryError instead of
# taking the machine's memory with it.
WORKER_MEMORY_LIMIT_BYTES = 4 << 30

_BOXED_OPEN = re.compile(r"\\boxed\s*\{")
_PLAIN_INTEGER = re.compile(r"[+-]?\d+")
# "3\,000" is a thousands separator that math-verify reads as 3*0.
_THIN_SPACE_IN_NUMBER = re.compile(r"(?<=\d)\\[,!;: ](?=\d{3})")


def split_think(response: str) -> tuple[str | None, str]:
    """(thinking, text after `</think>`). No think block: (None, response). An opened but
    unclosed block means generation stopped mid-thought: (thinking so far, "")."""
    close = response.rfind(THINK_CLOSE)
    if close >= 0:
        think = response[:close]
        opened = think.find(THINK_OPEN)
        if opened >= 0:
            think = think[opened + len(THINK_OPEN) :]
        return think, response[close + len(THINK_CLOSE) :]
    opened = response.find(THINK_OPEN)
    if opened >= 0:
        return response[opened + len(THINK_OPEN) :], ""
    return None, response


def remove_think(response: str) -> str:
    """The response without its thinking (the study's "solution without think" context)."""
    return split_think(response)[1].strip()


def _balanced_group(text: str, start: int) -> str | None:
    """Content from `start` (just after an opening brace) to its matching close brace, or None
    when unterminated. Escaped characters (`\\{`, `\\}`, `\\\\`) do not count as braces."""
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def _answer_line(text: str) -> str | None:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith(ANSWER_PREFIX):
            answer = line[len(ANSWER_PREFIX) :].strip().rstrip(".").strip().strip("$").strip()
            return answer or None
    return None


def extract_answer(response: str) -> str | None:
    """The final answer of a response, or None when it gives none (cut off mid-thought,
    no `\\boxed{}` and no `Answer:` line, unterminated or empty last box)."""
    _, after = split_think(response)
    opens = list(_BOXED_OPEN.finditer(after))
    if not opens:
        return _answer_line(after)
    content = _balanced_group(after, opens[-1].end())
    return content.strip() or None if content is not None else None


def _normalise(expression: str) -> str:
    expression = expression.strip()
    if len(expression) >= 2 and expression[0] == expression[-1] == "$":
        expression = expression.strip("$").strip()
    return _THIN_SPACE_IN_NUMBER.sub("", expression)


def _canonical_integer(text: str) -> str:
    sign = "-" if text.startswith("-") else ""
    digits = text.lstrip("+-").lstrip("0") or "0"
    return "" if digits == "0" else sign + digits


def _quick_verdict(answer: str, ground_truth: str) -> bool | None:
    """Decide without math-verify when the strings alone settle it (identical, or two plain
    integers, compared as digit strings so even 10^5-digit numbers cost microseconds)."""
    if "".join(answer.split()) == "".join(ground_truth.split()):
        return True
    if _PLAIN_INTEGER.fullmatch(answer) and _PLAIN_INTEGER.fullmatch(ground_truth):
        return _canonical_integer(answer) == _canonical_integer(ground_truth)
    return None


# ---------------------------------------------------------------- worker side


def _verify_in_worker(answer: str, ground_truth: str) -> bool:
    from math_verify import parse, verify

    try:
        gold = parse("\\boxed{" + ground_truth + "}", parsing_timeout=None)
        predicted = parse("\\boxed{" + answer + "}", parsing_timeout=None)
        return bool(gold and predicted and verify(gold, predicted, timeout_seconds=None))
    except Exception:  # noqa: BLE001 - any failure inside sympy means "not shown equal"
        return False


# The first parse builds the LaTeX grammar and the first symbolic checks import parts of sympy
# (about 1 s): the zygote does it once, so no worker spends an answer's deadline on it.
_WARM_UP = (("\\frac{1}{2}", "0.5"), ("x^2-1", "(x-1)(x+1)"), ("\\sin^2 x+\\cos^2 x", "1"), ("(1,\\sqrt{2})", "\\left(1,\\sqrt 2\\right)"), ("x\\in[1,2)", "[1,2)"), ("\\{1,2\\}", "\\{2,1\\}"))


def _limit_memory() -> None:
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = WORKER_MEMORY_LIMIT_BYTES if hard == resource.RLIM_INFINITY else min(WORKER_MEMORY_LIMIT_BYTES, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, ValueError, OSError):
        pass


def _serve(conn: Connection) -> None:
    """Worker loop: (answer, ground_truth) in, bool out, until the socket closes."""
    while True:
        try:
            answer, ground_truth = conn.recv()
        except (EOFError, OSError):
            return
        conn.send(_verify_in_worker(answer, ground_truth))


def _zygote(fd: int) -> None:
    """Warm math-verify once, then fork a ready worker per request byte and send back its pid
    and socket; a replacement for a killed worker then costs milliseconds, not an interpreter start."""
    _limit_memory()
    # Timeouts are ours (the parent's deadline), so math-verify's "timeout disabled" warning is noise.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for answer, truth in _WARM_UP:
        _verify_in_worker(answer, truth)
    control = socket.socket(fileno=fd)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps finished workers
    while control.recv(1):
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            control.close()
            ours.close()
            _serve(Connection(theirs.detach()))
            os._exit(0)
        theirs.close()
        socket.send_fds(control, [pid.to_bytes(8, "little")], [ours.fileno()])
        ours.close()


# ---------------------------------------------------------------- parent side


class _Worker:
    def __init__(self, pid: int, conn: Connection) -> None:
        self.pid, self.conn = pid, conn

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.conn.close()


class _Zygote:
    """A fresh interpreter (not multiprocessing, which re-runs the caller's `__main__` in its
    children) that forks workers on request."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        with theirs:
            code = "import sys; from sdlab.core.grading import _zygote; _zygote(int(sys.argv[1]))"
            # The caller's import path, so an uninstalled checkout (sys.path edited) still finds sdlab.
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
            self.process = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env)
        ours.settimeout(WORKER_START_TIMEOUT_S)
        self.control = ours

    def fork(self) -> _Worker:
        try:
            self.control.sendall(b"f")
            data, fds, _, _ = socket.recv_fds(self.control, 8, 1)
        except OSError as err:
            fds, data = [], repr(err).encode()
        if len(fds) != 1:
            self.close()
            raise RuntimeError(
                f"math-verify grading worker did not start ({data[:200]!r}); check that `{sys.executable} -c 'import math_verify'` works"
            )
        return _Worker(int.from_bytes(data, "little"), Connection(fds[0]))

    def close(self) -> None:
        self.control.close()
        self.process.kill()
        self.process.wait()


class _GraderPool:
    """Worker processes shared by every caller; each call checks out workers for its duration."""

    def __init__(self) -> None:
        self._zygote: _Zygote | None = None
        self._zygote_lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        self._total = 0
        self._available = threading.Condition()
        self._owner_pid = os.getpid()

    def _new_worker(self) -> _Worker:
        with self._zygote_lock:
            if self._zygote is None or self._zygote.process.poll() is not None:
                self._zygote = _Zygote()
            worker = self._zygote.fork()
            self._live.add(worker)
            return worker

    def _replace(self, worker: _Worker) -> _Worker:
        worker.kill()
        self._live.discard(worker)
        try:
            return self._new_worker()
        except BaseException:
            self._checkin([], lost=1)
            raise

    def _checkout(self, count: int) -> list[_Worker]:
        with self._available:
            while not self._idle and self._total >= count:
                self._available.wait()
            taken, self._idle = self._idle[:count], self._idle[count:]
            new = min(count - len(taken), max(0, count - self._total))
            self._total += new
        workers = list(taken)
        try:
            for _ in range(new):
                workers.append(self._new_worker())
        except BaseException:
            self._checkin(workers, lost=len(taken) + new - len(workers))
            raise
        return workers

    def _checkin(self, workers: list[_Worker], *, lost: int = 0) -> None:
        with self._available:
            self._idle.extend(workers)
            self._total -= lost
            self._available.notify_all()

    def verify_many(self, pairs: Sequence[tuple[str, str]], *, timeout: float, workers: int) -> list[bool]:
        """Verify (answer, ground_truth) pairs on up to `workers` processes; each pair gets
        `timeout` seconds from the moment a worker receives it."""
        results = [False] * len(pairs)
        idle = self._checkout(max(1, min(workers, len(pairs))))
        busy: dict[Connection, tuple[_Worker, int, float]] = {}
        todo = deque(range(len(pairs)))
        try:
            while todo or busy:
                while todo and idle:
                    worker, index = idle.pop(), todo.popleft()
                    try:
                        worker.conn.send(pairs[index])
                    except OSError:  # died while idle (killed from outside): replace, retry once
                        worker = self._replace(worker)
                        worker.conn.send(pairs[index])
                    busy[worker.conn] = (worker, index, time.monotonic() + timeout)
                next_deadline = min(deadline for _, _, deadline in busy.values())
                for conn in wait(list(busy), timeout=max(0.0, next_deadline - time.monotonic())):
                    worker, index, _ = busy.pop(conn)  # type: ignore[arg-type]
                    try:
                        results[index] = bool(conn.recv())  # type: ignore[union-attr]
                        idle.append(worker)
                    except (EOFError, OSError):  # died, e.g. MemoryError past the memory limit
                        idle.append(self._replace(worker))
                now = time.monotonic()
                for conn, (worker, index, deadline) in list(busy.items()):
                    if now >= deadline:
                        del busy[conn]
                        logger.debug("grading timed out after %.1fs: %.80r", timeout, pairs[index][0])
                        idle.append(self._replace(worker))
        finally:
            # Interrupted mid-call: workers still computing are killed so no stale answer is read later.
            for worker, _, _ in busy.values():
                worker.kill()
                self._live.discard(worker)
            self._checkin(idle, lost=len(busy))
        return results

    def close(self) -> None:
        """Idle workers exit when their socket closes; a stuck one would not, so kill them all.
        (Not from a forked copy of the caller: those workers belong to the parent.)"""
        if os.getpid() != self._owner_pid:
            return
        for worker in list(self._live):
            worker.kill()
        if self._zygote is not None:
            self._zygote.close()


_POOL = _GraderPool()
atexit.register(_POOL.close)


def grade_many(responses: Sequence[str], ground_truths: Sequence[str], *, timeout: float = 5.0, workers: int = 2) -> list[bool]:
    """Grade responses against ground truths on `workers` processes; an answer whose check
    takes longer than `timeout` seconds counts as wrong."""
    if len(responses) != len(ground_truths):
        raise ValueError(f"grade_many: {len(responses)} responses but {len(ground_truths)} ground truths")
    results = [False] * len(responses)
    # Rollouts of one prompt often repeat an answer: verify each distinct pair once.
    pending: dict[tuple[str, str], list[int]] = {}
    for index, (response, truth) in enumerate(zip(responses, ground_truths)):
        answer = extract_answer(response)
        if answer is None:
            continue
        pair = (_normalise(answer), _normalise(str(truth)))
        verdict = _quick_verdict(*pair)
        if verdict is None:
            pending.setdefault(pair, []).append(index)
        else:
            results[index] = verdict
    if pending:
        verdicts = _POOL.verify_many(list(pending), timeout=timeout, workers=workers)
        for indices, verdict in zip(pending.values(), verdicts):
            for index in indices:
                results[index] = verdict
    return results


def grade(response: str, ground_truth: str, *, timeout: float = 5.0) -> bool:
    """True when the response's final answer equals the ground truth (see module docstring)."""
    return grade_many([response], [ground_truth], timeout=timeout, workers=1)[0]
