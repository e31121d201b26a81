"""Errors nobody asked for: a task failed, and its refs went without a ``get``.

Ray logs such an error once the last ref to it goes ("Unhandled error"), so that a program
firing off calls for their side effects hears of their failures. The head tells the client
whose task failed, once the object goes unasked and unread by any task (a reader carries the
error on in its own result, which is logged in turn if nobody asks for that one); the client
logs it here. A cancelled task's error is what its canceller asked for, and is not logged.
``RAY_IGNORE_UNHANDLED_ERRORS`` set silences the log, as in Ray.
"""

from __future__ import annotations

import logging
import os
import pickle

from plait.errors import TaskCancelledError

log = logging.getLogger("plait.session")

IGNORE_VARIABLE = "RAY_IGNORE_UNHANDLED_ERRORS"


def log_unhandled(errors: tuple[tuple[str, bytes], ...]) -> None:
    """Log each (object, pickled error) the head reported unhandled."""
    if IGNORE_VARIABLE in os.environ:
        return
    for object_id, data in errors:
        try:
            error = pickle.loads(data)
        except Exception as unreadable:      # (a class this process cannot import)
            error = f"{object_id} failed with an error this process cannot read: {unreadable!r}"
        if isinstance(error, TaskCancelledError):
            continue
        log.error("Unhandled error (suppress with '%s=1'): %s", IGNORE_VARIABLE, error)
