"""PyTorch's CPU thread count during a fit, chosen from how long the steps take (a busy machine)."""

from __future__ import annotations

import math
import os
import time

import torch


class ThreadGovernor:
    """PyTorch's CPU thread count during a fit, chosen from how long the steps take.

    PyTorch's threads spin while they wait for each other: beside another busy process, a thread that
    shares its core with it holds the others up and a step becomes many times slower (beside a second
    PyTorch process, a hundred times and more), while one thread alone keeps most of its speed
    (docs/performance.md, "A busy machine"). Waiting passively instead costs threefold on a quiet
    machine. So the steps are timed in windows:

    - the fit starts with one window on one thread, then tries all threads and keeps the faster;
    - on all threads, two windows in a row much slower than the best seen try one thread (one slow window
      is this kind of VM's hiccup more often than a busy process, and a probe of one thread costs a quiet
      epoch several percent);
    - on one thread, only a re-check of all threads, ever more rarely while nothing changes and never
      before the last one's cost is repaid tenfold, tries them again (one thread's windows stay slower
      than their quiet best for as long as the load lasts);
    - a window on all threads ends as soon as it is clearly slower than its reference (the best window
      seen, or during a probe the other count's last one): a collapsed step can take a second, and a
      whole window of them most of a minute.

    Inactive where only one thread exists or the user set OMP_NUM_THREADS.
    """

    def __init__(self, window: int = 24, slower: float = 1.3, longest_interval: int = 128):
        self.window, self.slower, self.longest_interval = window, slower, longest_interval
        self.counts = (torch.get_num_threads(), 1)
        self.active = self.counts[0] > 1 and "OMP_NUM_THREADS" not in os.environ
        self.best = dict.fromkeys(self.counts, float("inf"))
        self.last = dict.fromkeys(self.counts, float("inf"))
        self.current, self.probing, self.interval, self.since_check = self.counts[0], False, 4, 0
        self.slow_windows = 0
        if self.active:
            self.use(self.counts[1])  # one thread first: its window bounds how long one on all threads may run
        self.restart()

    def restart(self) -> None:
        """Begin a new window (at each epoch's start: validation and checkpoints are not steps)."""
        self.steps, self.started = 0, time.perf_counter()

    def tick(self) -> None:
        """One step done."""
        if not self.active:
            return
        self.steps += 1
        elapsed = time.perf_counter() - self.started
        other = self.counts[1] if self.current == self.counts[0] else self.counts[0]
        on_all_threads = self.current == self.counts[0]
        reference = self.last[other] if self.probing else self.best[self.current]
        clearly_slower = on_all_threads and elapsed > self.slower * self.window * reference
        if self.steps < self.window and not clearly_slower:
            return
        seconds = elapsed / self.steps
        self.last[self.current] = seconds
        self.best[self.current] = min(self.best[self.current], seconds)
        if self.probing:
            self.probing, self.since_check = False, 0
            if self.last[self.current] < self.last[other]:
                self.interval = 4
            else:
                self.use(other)
                # Ever rarer re-checks, and none before this one's cost is repaid tenfold: beside a second
                # PyTorch process a single step on all threads costs as much as a hundred on one.
                repaid = math.ceil(10 * elapsed / (self.window * self.last[other]))
                self.interval = min(max(2 * self.interval, repaid), self.longest_interval)
        else:
            self.since_check += 1
            self.slow_windows = self.slow_windows + 1 if seconds > self.slower * self.best[self.current] else 0
            load_arrived = on_all_threads and self.slow_windows >= 2
            due = not on_all_threads and self.since_check >= self.interval
            if self.best[other] == float("inf") or load_arrived or due:
                self.use(other)
                self.probing, self.slow_windows = True, 0
        self.restart()

    def use(self, count: int) -> None:
        self.current = count
        torch.set_num_threads(count)
