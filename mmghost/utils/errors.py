"""Errors meant for users (bad data, unusable checkpoints), shown by our tools as one clear line.

mmghost raises a :class:`UserFacingError` when the message alone tells the user what is wrong and what to do
(an annotation file that is not COCO, a checkpoint that would run code, ...). Library code lets it propagate
like any exception; the command-line tools run their ``main()`` inside :func:`exit_on_user_error`, which prints
``error: <message>`` and exits with status 1 instead of a traceback. ``MMGHOST_TRACEBACK=1`` shows the full
traceback. Nothing here changes ``sys.excepthook`` or any other process-wide state.
"""
import os
import sys
from contextlib import contextmanager
from typing import Iterator


class UserFacingError(Exception):
    """Marker base: the message alone tells the user what is wrong and what to do."""


class DataError(UserFacingError, ValueError):
    """A dataset / annotation file that cannot be trained on; the message names the file and the problem."""


TRACEBACK_ENV = 'MMGHOST_TRACEBACK'


def short_message(exc: BaseException) -> str:
    """The message of ``exc``; for an error re-raised from a dataloader worker, its last line only."""
    text = str(exc)
    # torch re-raises a worker's exception with the worker's traceback in its text: keep the last line.
    if 'Original Traceback' in text or 'Traceback (most recent call last)' in text:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        text = lines[-1] if lines else text
        text = text.split(type(exc).__name__ + ': ', 1)[-1]
    return text


def want_traceback() -> bool:
    return os.environ.get(TRACEBACK_ENV, '0').lower() not in ('', '0', 'false', 'no')


@contextmanager
def exit_on_user_error() -> Iterator[None]:
    """For a tool's ``main()``: a :class:`UserFacingError` becomes ``error: <message>`` and exit status 1.

    Every other exception propagates unchanged (with its traceback), and so does ours when
    ``MMGHOST_TRACEBACK=1``::

        if __name__ == '__main__':
            with exit_on_user_error():
                main()
    """
    try:
        yield
    except UserFacingError as exc:
        if want_traceback():
            raise
        sys.stderr.write(f'error: {short_message(exc)}\n(set {TRACEBACK_ENV}=1 to see the full traceback)\n')
        sys.stderr.flush()
        raise SystemExit(1) from None
