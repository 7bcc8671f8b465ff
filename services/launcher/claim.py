"""The run's claim on its session id (services/launcher/session_claim.py), taken after the start-up checks:
on a shared Redis two runs started together with one --session-id both pass the checks, and
only this atomic claim tells them apart. A private Redis is the run's alone: nothing to claim."""

from __future__ import annotations

import redis

from services.launcher.session_claim import SessionClaim, describe
from shared.data.totals import safe_url


class ClaimRefused(Exception):
    """The one line the launcher prints before exit code 2."""


def claim_session(url: str, prefix: str, session: str, session_given: bool) -> SessionClaim | None:
    """The run's claim on `session` in the Redis at `url` (keys under `prefix`), kept fresh until
    released; None on a private Redis (no url). Raises ClaimRefused."""
    if not url:
        return None
    prefix = prefix or "engagement"
    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    claim = SessionClaim(client, prefix, session)
    try:
        holder = claim.acquire()
        if holder:
            raise ClaimRefused(f"session id {session} is in use by another run ({describe(holder)}): give another "
                               f"--session-id, or leave it out for a new unique one")
        # Claimed: only now is "not used yet" certain (a run that finished before our claim left its totals).
        if session_given and client.exists(f"{prefix}:session:{session}:meta"):
            claim.release()
            raise ClaimRefused(f"session id {session} is already used in this Redis: give another --session-id, "
                               f"or leave it out for a new unique one")
    except redis.RedisError as exc:
        raise ClaimRefused(f"Redis at {safe_url(url)} did not take the claim on session {session} ({exc})") from None
    claim.keep()
    return claim
