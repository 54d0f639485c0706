"""Every process a run or an engine starts, seen while it lives, so none outlives the command.

vLLM's EngineCore and workers rename themselves (setproctitle), which also blanks what
/proc shows of their environment, and they are re-parented to init when their parent dies
first: neither an environment tag nor a walk of the tree at the end finds them all. So a
watcher walks the tree below a root every half second and remembers each (pid, start time)
it sees; `kill` then stops every remembered process still alive, wherever it now hangs.
"""

from __future__ import annotations

import threading
from typing import Any

import psutil


class ProcessTree:
    """Remembers every descendant of `root_pid` seen since it was created."""

    def __init__(self, root_pid: int, poll_s: float = 0.5) -> None:
        self.root_pid = root_pid
        self._seen: dict[int, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(poll_s,), name=f"process-tree-{root_pid}",
                                        daemon=True)
        self.snapshot()
        self._thread.start()

    def snapshot(self) -> None:
        """Remember the root's descendants, and those of every remembered process (an orphan's children too)."""
        with self._lock:
            parents = [(self.root_pid, None), *((pid, seen[0]) for pid, seen in self._seen.items())]
        children = []
        for pid, created in parents:
            try:
                process = psutil.Process(pid)
                if created is None or process.create_time() == created:  # not a reused pid
                    children += process.children(recursive=True)
            except psutil.Error:
                continue
        with self._lock:
            for child in children:
                try:  # the command line is read again each time: vLLM renames its processes after they start
                    created = self._seen[child.pid][0] if child.pid in self._seen else child.create_time()
                    self._seen[child.pid] = (created, " ".join(child.cmdline()) or self._seen.get(child.pid, ("", ""))[1])
                except psutil.Error:
                    continue

    def _poll(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            self.snapshot()

    def alive(self) -> list[Any]:
        """Remembered processes still running (a pid reused by a newer process is not ours)."""
        self.snapshot()
        with self._lock:
            seen = dict(self._seen)
        found = []
        for pid, (created, _) in seen.items():
            try:
                process = psutil.Process(pid)
                if process.create_time() == created and process.status() != psutil.STATUS_ZOMBIE:
                    found.append(process)
            except psutil.Error:
                continue
        return found

    def ever_seen(self, mark: str) -> list[int]:
        """Pids of every process seen below the root whose command line contained `mark`, alive or not."""
        self.snapshot()
        with self._lock:
            return [pid for pid, (_, line) in self._seen.items() if mark in line]

    def kill(self, grace_s: float = 3.0, rounds: int = 3) -> list[int]:
        """SIGTERM every remembered live process, SIGKILL what remains after `grace_s`; return their pids.

        Repeated while new ones appear: a process being stopped may still start children.
        """
        stopped: list[int] = []
        for _ in range(rounds):
            processes = self.alive()
            if not processes:
                break
            for process in processes:
                try:
                    process.terminate()
                except psutil.Error:
                    pass
            _, remaining = psutil.wait_procs(processes, timeout=grace_s)
            for process in remaining:
                try:
                    process.kill()
                except psutil.Error:
                    pass
            psutil.wait_procs(remaining, timeout=grace_s)
            stopped += [p.pid for p in processes if p.pid not in stopped]
        return stopped

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def command_line(process: Any) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:
        return ""
