"""Errors meant for users (bad data, unusable checkpoints), shown as one clear line instead of a traceback.

``import mmghost`` installs :func:`install_excepthook`: an uncaught :class:`UserFacingError` (raised by mmghost
before training starts, e.g. for an annotation file that is not COCO) prints ``error: <message>`` and exits with
status 1; every other exception keeps Python's normal traceback. Set ``MMGHOST_TRACEBACK=1`` to see the full
traceback of ours too.
"""
import os
import sys


class UserFacingError(Exception):
    """Marker base: the message alone tells the user what is wrong and what to do."""


class DataError(UserFacingError, ValueError):
    """A dataset / annotation file that cannot be trained on; the message names the file and the problem."""


def _short_message(exc: BaseException) -> str:
    text = str(exc)
    # Errors re-raised from dataloader workers carry the worker's traceback in their text: keep the last line.
    if 'Original Traceback' in text or 'Traceback (most recent call last)' in text:
        lines = [line for line in text.strip().splitlines() if line.strip()]
        text = lines[-1] if lines else text
        for name in (type(exc).__name__ + ': ',):
            text = text.split(name, 1)[-1]
    return text


def install_excepthook() -> None:
    """Print uncaught :class:`UserFacingError` s as one line; idempotent, chains to the previous hook."""
    if getattr(sys.excepthook, '_mmghost', False):
        return
    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        if (isinstance(exc, UserFacingError)
                and os.environ.get('MMGHOST_TRACEBACK', '0').lower() in ('', '0', 'false', 'no')):
            sys.stderr.write(f'error: {_short_message(exc)}\n'
                             '(set MMGHOST_TRACEBACK=1 to see the full traceback)\n')
            return
        previous(exc_type, exc, tb)

    hook._mmghost = True
    sys.excepthook = hook
