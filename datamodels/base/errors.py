"""The one exception type for mistakes a user can fix (bad input, bad settings), and the one way
library code calls user code (:func:`call_user`)."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


class UserError(ValueError):
    """A problem the user can fix; the CLI prints it on one line and exits with status 2.

    Every public function raises it for bad input. It subclasses :class:`ValueError`, so code
    that expects the standard exception for a bad argument catches it too. The message must
    say what is wrong *and* what to do about it.
    """


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of ``str(err)``, at most ``limit`` characters ("" for an empty message)."""
    return (str(err).splitlines() or [""])[0][:limit]


def call_user(fn: Callable, *args: Any, what: str, hint: str = "", **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` where ``fn`` is the user's code (a model factory, loss, data loader ...).

    An exception raised inside becomes one :class:`UserError` line, ``"{what} raised {Type}:
    {first line} — {hint}"``, chained to the original (``__cause__``) with a note naming ``what``
    (:meth:`BaseException.add_note`), so ``--debug`` / ``MODELDIFF_DEBUG=1`` shows the user's own
    traceback. A :class:`UserError` raised inside passes through unchanged; ``KeyboardInterrupt``
    and ``SystemExit`` are not caught.
    """
    try:
        return fn(*args, **kwargs)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - any failure of user code is reported the same way
        err.add_note(f"modeldiff: raised inside {what} (user code)")
        message = f"{what} raised {type(err).__name__}: {first_line(err)}"
        raise UserError(message + (f" — {hint}" if hint else "")) from err
