"""Unit tests for shared.sync.folderwalk: the shared page budget, reading ahead, and the walk."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from shared.adapters.graph import DeltaPage
from shared.errors import ThrottledError
from shared.sync.folderwalk import PageBudget, prefetched, walk


class PageSource:
    """A folder's delta pages, counting fetches and how many are in flight at once."""

    def __init__(self, count: int, gate: threading.Event | None = None) -> None:
        self.count = count
        self.fetched = 0
        self.in_flight = 0
        self.peak = 0
        self.gate = gate
        self.lock = threading.Lock()

    def pages(self) -> Iterator[DeltaPage]:
        for number in range(1, self.count + 1):
            with self.lock:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                self.fetched += 1
            if self.gate is not None:
                self.gate.wait(5)
            with self.lock:
                self.in_flight -= 1
            last = number == self.count
            yield DeltaPage([{"id": f"m{number}"}], None if last else f"next-{number}", None)


def test_budget_hands_out_its_pages_once_across_threads():
    """A budget of 50 gives exactly 50 tickets to four threads taking at once."""
    # GIVEN a budget of 50
    budget = PageBudget(50)
    granted: list[bool] = []

    def take_many() -> None:
        granted.extend(budget.take() for _ in range(40))

    # WHEN four threads take 40 each
    threads = [threading.Thread(target=take_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # THEN exactly 50 were granted
    assert granted.count(True) == 50


def test_budget_stop_refuses_further_pages():
    """Once stopped, a budget with pages left grants none."""
    # GIVEN a budget with pages left, WHEN it is stopped
    budget = PageBudget(10)
    budget.stop()

    # THEN no page may be fetched
    assert budget.stopped
    assert budget.take() is False


def test_prefetched_fetches_the_next_page_while_the_caller_holds_this_one():
    """While the caller handles page 1, page 2 is fetched; never two fetches in flight."""
    # GIVEN a folder of three pages
    source = PageSource(3)
    budget = PageBudget(10)
    pages = prefetched(source.pages(), budget)

    # WHEN the caller takes page 1 and waits a little before storing it
    first = next(pages)
    for _ in range(1000):
        if source.fetched == 2:
            break
        threading.Event().wait(0.01)

    # THEN page 2 was fetched meanwhile, and the rest follow in order, one fetch at a time
    assert first.items == [{"id": "m1"}]
    assert source.fetched == 2
    rest = list(pages)
    assert [page.items[0]["id"] for page in rest] == ["m2", "m3"]
    assert source.peak == 1


def test_prefetched_stops_at_the_budget_without_fetching_past_it():
    """With two tickets, a folder of five pages yields two and makes only two fetches."""
    # GIVEN a budget of two pages and a folder of five
    source = PageSource(5)
    budget = PageBudget(2)

    # WHEN its pages are read
    pages = list(prefetched(source.pages(), budget))

    # THEN two pages came, the last still pointing further, and nothing else was fetched
    assert len(pages) == 2
    assert pages[-1].next_link == "next-2"
    assert source.fetched == 2


def test_prefetched_raises_a_fetch_error_where_its_page_is_taken():
    """A page that fails to fetch raises when the caller asks for it, after the pages before."""

    # GIVEN a folder whose second page is throttled
    def failing() -> Iterator[DeltaPage]:
        yield DeltaPage([], "next-1", None)
        raise ThrottledError("429", retry_after_s=60)

    pages = prefetched(failing(), PageBudget(10))

    # WHEN the pages are read, THEN the first comes and the second raises
    assert next(pages).next_link == "next-1"
    with pytest.raises(ThrottledError):
        next(pages)


def test_walk_runs_no_more_folders_at_once_than_its_slots():
    """Five folders with two slots: the first two run together, never more than two at once."""
    # GIVEN five folders whose work records how many run at once; the first two only finish
    # once both have started (a walk of one at a time would break the barrier)
    running, peak, lock = [0], [0], threading.Lock()
    both = threading.Barrier(2, timeout=10)

    def sync(folder: str) -> str:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        if folder in ("a", "b"):
            both.wait()
        with lock:
            running[0] -= 1
        return folder.upper()

    # WHEN they are walked with two slots
    results = walk(["a", "b", "c", "d", "e"], 2, PageBudget(10), sync)

    # THEN two ran at once, never more, and the results keep the folders' order
    assert results == ["A", "B", "C", "D", "E"]
    assert peak[0] == 2


def test_walk_stops_the_other_folders_when_one_fails_and_raises_its_error():
    """A throttled folder stops the budget, the others end at their next page, its error rises."""
    # GIVEN one folder that fails at once and one that reads pages until the budget stops
    budget = PageBudget(1000)
    pages_read: list[int] = []

    def sync(folder: str) -> int:
        if folder == "bad":
            raise ThrottledError("429", retry_after_s=120)
        count = 0
        while budget.take():
            count += 1
            threading.Event().wait(0.005)
        pages_read.append(count)
        return count

    # WHEN both are walked at once
    with pytest.raises(ThrottledError) as raised:
        walk(["good", "bad"], 2, budget, sync)

    # THEN the throttling surfaced as raised by the folder, and the other folder stopped early
    assert raised.value.retry_after_s == 120
    assert budget.stopped
    assert len(pages_read) == 1
    assert pages_read[0] < 1000


def test_walk_with_one_slot_runs_folders_one_after_another_and_stops_at_a_failure():
    """With one slot the walk is sequential: folders after a failed one read nothing."""
    # GIVEN three folders, the first of which fails
    budget = PageBudget(10)
    started: list[str] = []

    def sync(folder: str) -> bool:
        started.append(folder)
        if folder == "first":
            raise ThrottledError("429", retry_after_s=30)
        return budget.take()

    # WHEN they are walked with one slot
    with pytest.raises(ThrottledError):
        walk(["first", "second", "third"], 1, budget, sync)

    # THEN the others found the budget stopped and fetched nothing
    assert started == ["first", "second", "third"]
    assert budget.take() is False
