"""Where the store keeps its files: one per object, sharded by the first two hex digits of the
hash, and a folder of uploads in progress on the same file system (so that a finished upload
becomes its object by one atomic rename, and a half-written one is never at an object's path)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

TEMP_FOLDER = "tmp"  # uploads in progress: never an object's path


def store_dir() -> Path:
    """The store's folder (the STORE_DIR setting)."""
    return Path(settings.STORE_DIR)


def object_path(sha256: str) -> Path:
    """The file of the object `sha256`: `STORE_DIR/ab/abcdef…`."""
    return store_dir() / sha256[:2] / sha256


def temp_dir() -> Path:
    """The folder of uploads in progress, made when missing."""
    folder = store_dir() / TEMP_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    return folder
