"""Auto-paging iterators over the API's ``page_size``/``page_token`` lists."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from raypipe._errors import RaypipeError

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list call.

    Attributes:
        items: The resources of this page, in the server's order.
        next_page_token: Pass as ``page_token`` to continue after this page; empty on the
            last page.
    """

    items: tuple[T, ...]
    next_page_token: str


def _check_progress(token: str, seen: set[str]) -> None:
    # A server that hands back a token it gave before would make iteration endless.
    if token in seen:
        raise RaypipeError(f"the server repeated page token {token!r}; stopping the iteration")
    seen.add(token)


class PageIterator(Generic[T]):
    """Iterates over every item of a list, fetching pages as they are needed.

    ``for item in client.list_pipelines(): ...`` walks all pages; :meth:`pages` gives the
    pages themselves, to show one at a time or to keep the token for later. Each new
    iteration starts again from the first page (and calls the server again).
    """

    def __init__(self, fetch: Callable[[str], Page[T]], page_token: str = "") -> None:
        self._fetch = fetch
        self._start = page_token

    def pages(self) -> Iterator[Page[T]]:
        """Yield page after page until the last one."""
        token, seen = self._start, set[str]()
        while True:
            page = self._fetch(token)
            yield page
            if not page.next_page_token:
                return
            token = page.next_page_token
            _check_progress(token, seen)

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page.items


class AsyncPageIterator(Generic[T]):
    """The ``async for`` counterpart of :class:`PageIterator`."""

    def __init__(self, fetch: Callable[[str], Awaitable[Page[T]]], page_token: str = "") -> None:
        self._fetch = fetch
        self._start = page_token

    async def pages(self) -> AsyncIterator[Page[T]]:
        """Yield page after page until the last one."""
        token, seen = self._start, set[str]()
        while True:
            page = await self._fetch(token)
            yield page
            if not page.next_page_token:
                return
            token = page.next_page_token
            _check_progress(token, seen)

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page.items:
                yield item

    async def to_list(self) -> list[T]:
        """Every item of every page, in one list."""
        return [item async for item in self]
