"""Errors the command line turns into one clear line and an exit status, and how they name options."""

import contextlib
import contextvars

# Who reads the errors: the command line sets "cli" so that messages name its flags; Python readers
# see the arguments of the kerasrnn functions instead.
_reader = contextvars.ContextVar("kerasrnn_error_reader", default="python")


@contextlib.contextmanager
def reading_from_cli():
    token = _reader.set("cli")
    try:
        yield
    finally:
        _reader.reset(token)


def option(name: str, python_value: str = "...", cli_value=None) -> str:
    """An option as the reader types it: `--out` (`--devices 4`) on the command line, `out=...` in Python."""
    if _reader.get() == "cli":
        flag = "--" + name.replace("_", "-")
        return flag if cli_value is None else f"{flag} {cli_value}"
    return f"{name}={python_value}"


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


def disk_full(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, says the disk (or the user's quota) is full. Libraries
    that write files (h5py, TensorFlow) wrap the OSError or keep only its text."""
    import errno

    while error is not None:
        if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left on device" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False
