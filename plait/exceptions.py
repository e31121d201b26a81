"""``plait.exceptions``: plait's errors, also under the names Ray programs catch.

``except ray.exceptions.RayTaskError`` and ``except ray.exceptions.GetTimeoutError`` keep
working under ``import plait as ray``; the classes are plait's own (see plait.errors).
"""

from plait.errors import *  # noqa: F403
from plait.errors import (ActorDiedError, GetTimeoutError, ObjectLostError, ObjectStoreFullError,
                          PlaitError, TaskError, WorkerCrashedError)
from plait.errors import __all__ as _plait_names

RayError = PlaitError
RayTaskError = TaskError
WorkerCrashedError = WorkerCrashedError
ObjectLostError = ObjectLostError
ObjectStoreFullError = ObjectStoreFullError
GetTimeoutError = GetTimeoutError
RayActorError = ActorDiedError
ActorDiedError = ActorDiedError

__all__ = sorted([*_plait_names, "RayActorError", "RayError", "RayTaskError"])
