"""Which samples a cell classified correctly, kept compactly: the `correct_mask` column of the rows.

A boolean vector over the n evaluated samples (in test-set order) is packed 8 samples to a byte
(`numpy.packbits`, little bit order) and written as base64 text, so a row stays a flat record
that pandas, parquet and MLflow carry as a string: about n/6 characters (10 000 samples: 1 668).
The empty string means "no mask" (statistic rows, rows written before masks existed).
"""

from __future__ import annotations

import base64
import binascii

import numpy as np

from robustmm.errors import DataError

NO_MASK = ""


def encode_mask(correct: np.ndarray | list[bool]) -> str:
    """A 1-D boolean vector -> base64 text of its packed bits."""
    bits = np.asarray(correct, dtype=bool)
    if bits.ndim != 1:
        raise DataError(f"a correct mask is one boolean per sample (1-D); got shape {bits.shape}")
    return base64.b64encode(np.packbits(bits, bitorder="little").tobytes()).decode("ascii")


def decode_mask(text: str, n: int) -> np.ndarray:
    """`encode_mask`'s text for `n` samples -> the boolean vector of length n."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise DataError(f"correct_mask {text[:16]!r}... is not base64 ({e}); not a mask robustmm wrote") from e
    if len(raw) != (n + 7) // 8:
        raise DataError(
            f"correct_mask holds {len(raw)} bytes but n={n} samples need {(n + 7) // 8}; the row's mask and n disagree"
        )
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8), count=n, bitorder="little").astype(bool)
