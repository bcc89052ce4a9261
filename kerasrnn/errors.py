"""Errors the command line turns into one clear line and an exit status."""


class UserError(Exception):
    """The user asked for something invalid: exit status 2, message says what is allowed."""

    exit_code = 2


class RunError(Exception):
    """Something went wrong that is not the user's input (a failed fit, a broken environment): exit 1."""

    exit_code = 1


def require(condition: bool, message: str) -> None:
    """Raise a UserError with `message` unless `condition` holds."""
    if not condition:
        raise UserError(message)
