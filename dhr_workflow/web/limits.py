"""Per-client limits on requests worth guessing at (feed tokens, sign-in links)."""

from __future__ import annotations

from collections import OrderedDict, deque


class MissLimiter:
    """Slows down token guessing: a client with too many unknown-token requests in a window
    gets 429 for its unknown tokens until the window passes. Check the token first and ask
    :meth:`blocked` only on a miss: a valid token is always served, whoever shares the
    address. Bounded memory: the oldest clients are forgotten."""

    def __init__(self, limit: int = 30, window: float = 60.0, clients: int = 10_000) -> None:
        self.limit, self.window, self.clients = limit, window, clients
        self.seen: OrderedDict[str, deque[float]] = OrderedDict()

    def record(self, client: str, now: float) -> None:
        times = self.seen.setdefault(client, deque())
        self.seen.move_to_end(client)
        times.append(now)
        while len(times) > self.limit + 1:
            times.popleft()
        while len(self.seen) > self.clients:
            self.seen.popitem(last=False)

    def blocked(self, client: str, now: float) -> bool:
        times = self.seen.get(client)
        if not times:
            return False
        while times and now - times[0] > self.window:
            times.popleft()
        return len(times) > self.limit

    def allow(self, client: str, now: float) -> bool:
        """Count one request unless this client already has ``limit`` in the window (refused
        requests are not counted: a client sharing an address is locked out no longer than
        the window)."""
        if self.blocked(client, now) or len(self.seen.get(client, ())) >= self.limit:
            return False
        self.record(client, now)
        return True
