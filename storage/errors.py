"""asyncpg's exceptions, translated once into the core's error hierarchy."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from fleetgate.core.errors import Conflict, InvalidInput, Unavailable

_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    # "cannot switch to state ...; another operation is in progress": a connection left
    # mid-operation by a terminated backend (found by the fault suite, issue 8).
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.OperatorInterventionError,
    asyncpg.InsufficientResourcesError,
)


@contextmanager
def translated(conflict: type[Conflict] = Conflict) -> Iterator[None]:
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise conflict(conflict.__doc__ or "") from exc
    except asyncpg.CharacterNotInRepertoireError as exc:
        # The one character a Python str can hold and PostgreSQL text cannot.
        raise InvalidInput("Text cannot contain the character U+0000") from exc
    except _UNAVAILABLE as exc:
        raise Unavailable(f"database unavailable: {type(exc).__name__}") from exc
