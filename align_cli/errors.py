"""User errors: the CLI prints their message on one line and exits non-zero, without a traceback."""


class UserError(Exception):
    """A mistake in the command line, the config or the data that the user can fix."""
