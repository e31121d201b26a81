"""``plait.exceptions``: plait's errors, also under the names Ray programs catch.

``except ray.exceptions.RayTaskError`` and ``except ray.exceptions.GetTimeoutError`` keep
working under ``import plait as ray``; the classes are plait's own (see plait.errors).
Every other name of Ray 2.60's ``ray.exceptions`` is here too, for failures plait reports
otherwise (a dead node's tasks are retried, a task no node can run is a PlanError) or
features it has not (placement groups, compiled graphs): plait never raises those, and an
``except`` clause naming one stays valid.
"""

from plait.errors import *  # noqa: F403
from plait.errors import (ActorDiedError, GetTimeoutError, ObjectLostError, ObjectStoreFullError,
                          PlaitError, ReconstructionFailedError, TaskError, WorkerCrashedError)
from plait.errors import __all__ as _plait_names

RayError = PlaitError
RayTaskError = TaskError
WorkerCrashedError = WorkerCrashedError
ObjectLostError = ObjectLostError
ObjectStoreFullError = ObjectStoreFullError
GetTimeoutError = GetTimeoutError
RayActorError = ActorDiedError
ActorDiedError = ActorDiedError
ObjectReconstructionFailedError = ReconstructionFailedError


def _never_raised(name: str, *bases: type) -> type:
    """Ray's exception ``name``, which plait never raises (see the module docstring)."""
    return type(name, bases or (PlaitError,), {
        "__module__": __name__, "__doc__": f"Ray's {name}: plait never raises it."})


RaySystemError = _never_raised("RaySystemError")
ActorHandleNotFoundError = _never_raised("ActorHandleNotFoundError", PlaitError, ValueError)
ObjectFetchTimedOutError = _never_raised("ObjectFetchTimedOutError", ObjectLostError)
OwnerDiedError = _never_raised("OwnerDiedError", ObjectLostError)
ReferenceCountingAssertionError = _never_raised("ReferenceCountingAssertionError",
                                                ObjectLostError, AssertionError)
RayChannelError = _never_raised("RayChannelError", RaySystemError)
RayChannelTimeoutError = _never_raised("RayChannelTimeoutError", RayChannelError, TimeoutError)
_RAY_ONLY = {name: _never_raised(name) for name in (
    "ActorPlacementGroupRemoved", "ActorUnschedulableError", "AsyncioActorExit",
    "AuthenticationError", "CrossLanguageError", "LocalRayletDiedError", "NodeDiedError",
    "ObjectRefStreamEndOfStreamError", "OufOfBandObjectRefSerializationException",
    "OutOfDiskError", "PendingCallsLimitExceeded", "PlasmaObjectNotAvailable", "RpcError",
    "RuntimeEnvSetupError", "TaskPlacementGroupRemoved", "TaskUnschedulableError",
    "UnserializableException", "UserCodeException")}
_RAY_ONLY.update({name: _never_raised(name, RaySystemError) for name in (
    "RayCgraphCapacityExceeded", "RayDirectTransportError",
    "StreamingGeneratorReplayInconsistentError")})
globals().update(_RAY_ONLY)

__all__ = sorted([*_plait_names, "RayActorError", "RayError", "RayTaskError",
                  "ObjectReconstructionFailedError", "RaySystemError", "ActorHandleNotFoundError",
                  "ObjectFetchTimedOutError", "OwnerDiedError", "ReferenceCountingAssertionError",
                  "RayChannelError", "RayChannelTimeoutError", *_RAY_ONLY])
