"""INVITEs we gave up on but the trunk may still answer: kept until they can be ended.

When a trunk stays silent past the progress timeout the call moves on (the next trunk, or
a network_error), but our INVITE may still be on its way through the carrier. A UAC that
gives up keeps its transaction until it can end the call (RFC 3261 §9.1, §13.2.2.4): a late
provisional gets CANCEL, a late 2xx gets ACK + BYE, a late failure is ACKed by the
transaction. Each such leg runs as a background task, bounded by Timer B (64 × T1 after the
INVITE, when the transaction itself gives up) and by ``max_s`` overall.
"""

from __future__ import annotations

import asyncio
import logging

from opencaller.telephony.sip.call import OutboundCall, end_on_wire

log = logging.getLogger("opencaller.sip")


class AbandonedLegs:
    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def adopt(self, call: OutboundCall) -> None:
        """Keep ``call``'s pending INVITE alive in the background until it can be ended."""
        call.kept = True
        task = asyncio.get_running_loop().create_task(
            self._end(call), name=f"sip-leg-{call.call_id}"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end(self, call: OutboundCall) -> None:
        try:
            await end_on_wire(call, self.max_s)
        except Exception:
            log.exception("call %s: ending an abandoned leg failed", call.call_id)
        finally:
            call.kept = False
            call.close()

    async def close(self) -> None:
        """Stop every leg still waiting (shutdown): their INVITEs are abandoned."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
