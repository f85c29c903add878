"""How a mail job walks its folders: several at once, each reading ahead by one page.

A mail job holds up to :data:`shared.sync.leases.MAIL_SLOTS` of the mailbox's Graph request
slots and syncs that many folders at once (:func:`walk`), each on its own thread. A folder has
at most one request in flight: its next delta page is fetched on a helper thread while the page
before is stored (:func:`prefetched`), and the fetch after that starts only once it answered.
So the mailbox never has more requests in flight than the slots the job holds.

The folders of a job share one :class:`PageBudget`: every page fetch takes a ticket under its
lock, so the job reads at most its budget of pages whatever the folders' order. When a folder
fails, :func:`walk` stops the budget: the other folders fetch nothing more, finish storing the
page in hand (whose cursor is then saved, as always after a page's items are stored) and end;
the first failure is then raised, as the sequential walk raised it.

Known limitations: a page fetched ahead is thrown away when another folder's failure stops its
folder; the next job reads it again from the stored cursor.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from shared.adapters.graph import DeltaPage

FolderT = TypeVar("FolderT")
ResultT = TypeVar("ResultT")


class PageBudget:
    """The pages a job may still fetch, shared by its folder threads, and its stop flag."""

    def __init__(self, pages: int) -> None:
        self._left = pages
        self._lock = threading.Lock()
        self._stopped = False

    def take(self) -> bool:
        """Reserve one page fetch; False once the budget is spent or the walk stopped."""
        with self._lock:
            if self._stopped or self._left <= 0:
                return False
            self._left -= 1
            return True

    def stop(self) -> None:
        """Refuse every further fetch: a folder failed and the job ends."""
        with self._lock:
            self._stopped = True

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called."""
        with self._lock:
            return self._stopped


def prefetched(pages: Iterator[DeltaPage], budget: PageBudget) -> Iterator[DeltaPage]:
    """Yield a folder's delta pages, fetching each next one while the caller stores this one.

    Each fetch takes a ticket from ``budget`` first; without one the pages stop there, after
    the last page fetched. Errors of a fetch are raised where the caller takes that page.
    """
    if not budget.take():
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="delta-page") as fetcher:
        ahead = fetcher.submit(next, pages, None)
        while (page := ahead.result()) is not None:
            more = bool(page.next_link) and budget.take()
            if more:
                ahead = fetcher.submit(next, pages, None)
            yield page
            if not more:
                return


def walk(
    folders: Sequence[FolderT],
    slots: int,
    budget: PageBudget,
    sync_folder: Callable[[FolderT], ResultT],
) -> list[ResultT]:
    """Run ``sync_folder`` for every folder, ``slots`` at a time; return results in order.

    Raises:
        Exception: the first failure of a folder, once every folder has stopped.
    """
    if not folders:
        return []
    results: dict[int, ResultT] = {}
    failure: BaseException | None = None
    workers = max(1, min(slots, len(folders)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mail-folder") as pool:
        futures = {pool.submit(sync_folder, folder): n for n, folder in enumerate(folders)}
        for future in as_completed(futures):
            error = future.exception()
            if error is None:
                results[futures[future]] = future.result()
                continue
            budget.stop()
            failure = failure or error
    if failure is not None:
        raise failure
    return [results[n] for n in range(len(folders))]
