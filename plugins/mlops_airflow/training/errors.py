"""Failures of a training job: invalid input (exit 2), SIGTERM (143), anything else (1), one line each.

Standard library only (runs in the training environment).
"""

from __future__ import annotations

import contextlib
import sys
import traceback

EXIT_UNEXPECTED = 1
EXIT_INVALID_INPUT = 2
EXIT_TERMINATED = 143


class TrainingInputError(ValueError):
    """Invalid input or configuration (retrying will not help): the cause and the next step.

    :param cause: what is wrong, naming the field or column.
    :param next_step: what to change.
    """

    def __init__(self, cause: str, next_step: str) -> None:
        super().__init__(f"{cause}; {next_step}")
        self.cause = cause
        self.next_step = next_step


class Terminated(BaseException):
    """SIGTERM during a run (pod deleted, task killed): the run ends KILLED."""


def failure_line(exc: BaseException) -> str:
    """The one line ``TRAINING FAILED: <cause>; <next step>`` the operators quote in their error."""
    if isinstance(exc, TrainingInputError):
        text = f"{exc.cause}; {exc.next_step}"
    elif isinstance(exc, Terminated):
        text = "terminated by SIGTERM; retry the task"
    else:
        text = (f"{type(exc).__name__}: {str(exc)[:300]}; see the traceback above, retry if it was an "
                "infrastructure error")
    return f"TRAINING FAILED: {text}".replace("\n", " ")


def report_failure(exc: BaseException) -> None:
    """Print the traceback (unexpected errors only) and the ``TRAINING FAILED`` line, once per exception."""
    if getattr(exc, "_mlops_reported", False):
        return
    if not isinstance(exc, TrainingInputError | Terminated | KeyboardInterrupt):
        traceback.print_exception(exc)
    print(failure_line(exc), file=sys.stderr, flush=True)
    with contextlib.suppress(AttributeError):
        exc._mlops_reported = True  # type: ignore[attr-defined]


def exit_code(exc: BaseException) -> int:
    if isinstance(exc, TrainingInputError):
        return EXIT_INVALID_INPUT
    return EXIT_TERMINATED if isinstance(exc, Terminated) else EXIT_UNEXPECTED


