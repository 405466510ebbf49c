"""Process runtime shared by the asyncio services: signals and the run-until-SIGTERM loop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from earful.core.errors import EarfulError

log = logging.getLogger(__name__)


async def wait_for_shutdown() -> signal.Signals:
    """Block until SIGTERM or SIGINT arrives; return which."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()

    def deliver(sig: signal.Signals) -> None:
        if not received.done():
            received.set_result(sig)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, deliver, sig)
    try:
        return await received
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def stopped_by(stop: asyncio.Event) -> bool:
    """While a CancelledError is handled: whether it came from `stop` being set (earful.core.retry
    gives up then, and the caller returns as from a clean stop) rather than from this task being
    cancelled, which must go on up."""
    task = asyncio.current_task()
    return stop.is_set() and (task is None or task.cancelling() == 0)


def run_service(name: str, main: Callable[[], Coroutine[Any, Any, None]]) -> int:
    """Run `main` to completion and turn known failures into an exit code and one log line."""
    try:
        asyncio.run(main())
    except EarfulError as exc:
        log.error("%s cannot run: %s", name, exc, extra={"error_kind": exc.kind})
        return 1
    except KeyboardInterrupt:
        return 0
    log.info("%s stopped cleanly", name)
    return 0
