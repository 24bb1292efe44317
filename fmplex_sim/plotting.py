"""What every figure the commands draw shares: names from the user drawn as they are."""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator


@contextlib.contextmanager
def user_text_as_is() -> Iterator[None]:
    """Draw and save figures inside this: a file, task or system name holding ``$`` is text,
    not math markup (``a$\\frac$b.yaml`` made matplotlib raise while saving), and a character
    the font lacks draws as a box without a warning on stderr."""
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
        yield
