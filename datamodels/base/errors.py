"""The one exception type for mistakes a user can fix (bad input, bad settings)."""


class UserError(ValueError):
    """A problem the user can fix; the CLI prints it on one line and exits with status 2.

    Every public function raises it for bad input. It subclasses :class:`ValueError`, so code
    that expects the standard exception for a bad argument catches it too. The message must
    say what is wrong *and* what to do about it.
    """
