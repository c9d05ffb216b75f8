"""The one exception type for mistakes a user can fix (bad input, bad settings)."""


class UserError(Exception):
    """A problem the user can fix; the CLI prints it on one line and exits with status 2.

    The message must say what is wrong *and* what to do about it.
    """
