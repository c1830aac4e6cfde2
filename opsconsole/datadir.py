"""The data folder (``DATA_DIR``) and the development secret key kept in it.

Settings only read them: importing the settings writes nothing. The entry points (manage.py,
the WSGI module) call ``prepare_data_dir()`` before the settings load, so that every process of
an installation without ``SECRET_KEY`` signs with the one key in ``DATA_DIR/secret_key``."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from opsconsole.env import env_str

BASE_DIR = Path(__file__).resolve().parent.parent
KEY_FILE_NAME = "secret_key"


def data_dir() -> Path:
    return Path(env_str("DATA_DIR", str(BASE_DIR / "data"))).resolve()


def read_development_key(directory: Path) -> str | None:
    """The development key kept in ``directory``, or None when none was made there yet."""
    try:
        return (directory / KEY_FILE_NAME).read_text().strip() or None
    except FileNotFoundError:
        return None


def prepare_data_dir() -> Path:
    """Creates ``DATA_DIR`` when this installation keeps something there (the embedded SQLite
    database, the development key), and the development key when ``SECRET_KEY`` is unset."""
    directory = data_dir()
    needs_key = not env_str("SECRET_KEY")
    if needs_key or not env_str("DATABASE_URL"):
        directory.mkdir(parents=True, exist_ok=True)
    if needs_key:
        # O_EXCL: two processes starting together must agree on one key.
        try:
            fd = os.open(directory / KEY_FILE_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(50))
    return directory
