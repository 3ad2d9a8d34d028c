"""Content-addressed image store inside the workspace.

Images are kept as 8-bit RGB PNG named by the sha256 of their bytes (``images/ab/abcdef....png``), so
the same image is stored once however often it is ingested, and a path alone proves its content.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from craft_agent.errors import CatalogError
from craft_agent.models import StoredImage

IMAGES_DIR = "images"


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of an RGB (H, W, 3) or grey (H, W) uint8 array."""
    if image.dtype != np.uint8:
        raise ValueError(f"only uint8 images are stored, got {image.dtype}")
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image.shape} as PNG")
    return buffer.tobytes()


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ImageStore:
    """Stores and loads images by content hash under ``workspace/images``.

    Args:
        workspace: the workspace folder; paths in :class:`StoredImage` are relative to it.
    """

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace

    def put(self, image: np.ndarray) -> StoredImage:
        """Store an RGB uint8 image (no-op when the same bytes are already stored).

        Raises:
            CatalogError: when the store folder cannot be written.
        """
        data = encode_png(image)
        digest = hashlib.sha256(data).hexdigest()
        relative = Path(IMAGES_DIR) / digest[:2] / f"{digest}.png"
        target = self.workspace / relative
        if not target.exists():
            try:
                write_atomic(target, data)
            except OSError as exc:
                raise CatalogError(
                    f"cannot write image {target}: {exc.strerror or exc}.",
                    hint="check that the workspace folder is writable and the disk is not full.",
                ) from exc
        return StoredImage(sha256=digest, path=relative.as_posix(), width=image.shape[1], height=image.shape[0])

    def path_of(self, image: StoredImage) -> Path:
        return self.workspace / image.path

    def read_png(self, image: StoredImage, verify: bool = True) -> bytes:
        """The stored PNG bytes, checked against the content hash unless ``verify`` is False.

        Raises:
            CatalogError: when the file is missing or its content no longer matches its hash.
        """
        path = self.path_of(image)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CatalogError(
                f"stored image {path} is missing or unreadable ({exc.strerror or exc}).",
                hint="re-run `craft-agent ingest` on the source to restore it.",
            ) from exc
        if verify and hashlib.sha256(data).hexdigest() != image.sha256:
            raise CatalogError(
                f"stored image {path} does not match its content hash (corrupted on disk).",
                hint="delete the file and re-run `craft-agent ingest` on the source.",
            )
        return data

    def load(self, image: StoredImage) -> np.ndarray:
        """The stored image as an RGB uint8 array.

        Raises:
            CatalogError: when the file is missing or its content no longer matches its hash.
        """
        path = self.path_of(image)
        data = self.read_png(image)
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise CatalogError(f"stored image {path} cannot be decoded.", hint="re-run `craft-agent ingest`.")
        return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
