"""`synth-mhd`: procedurally generated handwritten digits in the MHD format, the embedded default.

Why: the real MHD files live on a cloud drive; a sweep, a test or a demo must run without them.
This generator produces the same three modalities from one shared latent "pen stroke", so the
modalities agree on the class the way MHD's do, and it writes them in MHD's file format so the
real loader (`robustmm.data.mhd.load_mhd_dir`) reads them back: the real code path is exercised
on every run.

Per sample:
- a class template (ten hand-designed pen paths; 1/7, 3/5/8, 4/9, 0/6 share parts) is re-timed
  (random pen speed), bent by smooth low-frequency jitter, and put through a random affine
  (rotation, scale, aspect, shear, translation): one writer's pen path;
- image: the inked part of that path (200 points) with its own mild distortion and offset, splatted with
  bilinear weights, blurred with one of seven Gaussian widths and saturated like ink with a
  random gain (stroke thickness), then, rarely, degraded: a broken stroke, an erased blotch,
  clutter strokes; always a little contrast change and pixel noise. Values in [0, 1];
- trajectory: 100 (x, y) pen positions in 28×28 pixel coordinates, INTERLEAVED
  `[x0, y0, x1, y1, ..., x99, y99]`, pen-up travel included, as the tracker recorded the same
  writer: a random recording window and clock drift (time warp), a tilt/zoom of the tablet, an
  offset, smooth drift, sensor noise, sometimes a stretch where it froze, and for a share of the
  samples the digit it recorded is a look-alike of the class (1↔7, 4↔9, 3↔5/8, ...).
  Stored raw (pixel units) with `traj_norm` {'min', 'max'} like the real files;
- sound: a 32-bin × 128-frame log spectrogram of a class-specific "spoken digit" (a sequence
  of formant targets with voiced/fricative parts; one/nine, six/seven, four/five share sounds)
  with random pitch, formant shift, onset, time stretch, loudness, a background word nearly as
  loud, a dropped stretch of frames and heavy noise; for a share of the samples the word said
  is a sound-alike of the class. Stored as the MHD N×4×32×32 chunks.

Balance of information, as in real MHD (the thesis' MDAE: 38.6 % with the image missing,
98.0 % with the trajectory missing): the IMAGE is the dominant modality, the trajectory carries
the class but is weaker and not linearly separable, the sound is the weakest. A multinomial
logistic regression on the raw inputs (standardised features; see tests/data/test_synth_mhd.py)
scores, with 3 000 train / 1 000 test samples: image 0.89, trajectory 0.71, sound 0.44, all three
0.91; at the default 20 000 / 2 000: image 0.92, trajectory 0.69, sound 0.41, image+trajectory
0.94, all three 0.95 (generator v1: trajectory 0.99, image 0.72, sound 0.93).

Difficulty knobs (dataset options; each is multiplied by `difficulty`, and `difficulty` 0 gives
clean templates):
- `difficulty` (default 1, in [0, 3]): every nuisance, the shared pen-path ones included;
- `image_noise` (1): the image-only distortion, offset (0.6 px std), degradations, contrast
  and pixel noise;
- `traj_noise` (1): the trajectory's tilt/zoom (14° / 10 % std), offset, drift, sensor noise
  and freezes;
- `traj_warp` (1): the trajectory's time warp (saturates at 1);
- `traj_confusion` (0.1, in [0, 1]): share of trajectories of a look-alike digit;
- `sound_noise` (1): the sound's noise (7 dB std), background word and dropped frames;
- `sound_confusion` (0.3, in [0, 1]): share of sounds of a sound-alike word.

Everything is vectorised over samples in chunks of fixed size and driven by one numpy
Generator per split (seeded from `data_seed` and the split name), so the same options give
bit-identical files.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from robustmm.data.base import DatasetOptions, RawData, cache_root, register_dataset
from robustmm.data.mhd import (
    NUM_CLASSES,
    TEST_FILE,
    TRAIN_FILE,
    atomic_write,
    check_modalities,
    load_mhd_dir,
    save_mhd_split,
    spectrogram_to_sound_chunks,
)
from robustmm.errors import ConfigError, DataError

log = logging.getLogger(__name__)

FORMAT_VERSION = 2  # bump whenever the generated data change: it keys the cache
META_FILE = "synth_mhd.json"
MAX_SAMPLES = 1_000_000  # per split
TRAJ_POINTS = 100
DENSE = 2 * TRAJ_POINTS  # rendered points per path; the trajectory takes every second
GRID = 1024  # template resolution (uniform in arc length)
SIZE = 28
PX_PER_UNIT = 8.5  # template units -> pixels: the digit body (2 units tall) spans ~17 px
CHUNK = 2048  # samples per vectorised batch; fixed so the random streams never depend on N
N_FREQ, N_FRAMES = 32, 128

# ----------------------------------------------------------------------------------------------
# digit templates: x right, y down, body in [-1, 1]; each a list of inked pieces, travel between
# pieces (pen up) is added automatically


def _arc(cx: float, cy: float, rx: float, ry: float, deg0: float, deg1: float) -> np.ndarray:
    """Ellipse arc; increasing angle runs clockwise on screen (y down): 0 right, 90 bottom."""
    t = np.radians(np.linspace(deg0, deg1, max(8, int(abs(deg1 - deg0) / 4))))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _line(*pts: tuple[float, float]) -> np.ndarray:
    p = np.asarray(pts, dtype=float)
    out = [np.linspace(p[i], p[i + 1], 16, endpoint=False) for i in range(len(p) - 1)]
    return np.concatenate([*out, p[-1:]])


def _curve(*pts: tuple[float, float], rounds: int = 4) -> np.ndarray:
    """Smooth curve hugging the control polygon (Chaikin corner cutting), ends kept."""
    p = np.asarray(pts, dtype=float)
    for _ in range(rounds):
        q = 0.75 * p[:-1] + 0.25 * p[1:]
        r = 0.25 * p[:-1] + 0.75 * p[1:]
        p = np.concatenate([p[:1], np.stack([q, r], axis=1).reshape(-1, 2), p[-1:]])
    return p


def _pieces() -> list[list[np.ndarray]]:
    """Per digit 0-9 its inked pieces, in writing order."""
    up3, lo3 = _arc(0.0, -0.5, 0.48, 0.48, 200, 450), _arc(0.0, 0.5, 0.55, 0.5, -90, 160)
    loop8 = [_arc(0.0, -0.5, 0.45, 0.48, -30, -270), _arc(0.0, 0.5, 0.55, 0.5, -90, 270)]
    loop8.append(_arc(0.0, -0.5, 0.45, 0.48, 90, -30))
    belly5 = _arc(0.0, 0.42, 0.55, 0.53, -125, 155)
    hook2 = _arc(0.0, -0.45, 0.52, 0.52, 195, 385)
    hook6 = _curve((0.45, -0.98), (-0.45, -0.6), (-0.55, 0.45))
    return [
        [_arc(0.0, 0.0, 0.58, 0.98, -80, -450)],
        [_line((-0.35, -0.55), (0.05, -1.0), (0.05, 1.0))],
        [np.concatenate([hook2, _line((0.49, -0.27), (-0.58, 1.0), (0.6, 1.0))])],
        [np.concatenate([up3, lo3])],
        [_line((0.2, -1.0), (-0.6, 0.35), (0.65, 0.35)), _line((0.3, -0.55), (0.3, 1.0))],
        [np.concatenate([_line((-0.32, -0.95), (-0.34, 0.02)), belly5]), _line((-0.32, -0.95), (0.55, -0.97))],
        [np.concatenate([hook6, _arc(0.0, 0.45, 0.55, 0.52, 180, -180)])],
        [_line((-0.55, -0.95), (0.52, -0.95), (-0.1, 1.0))],
        [np.concatenate(loop8)],
        [np.concatenate([_arc(0.0, -0.45, 0.5, 0.5, 0, -360), _line((0.5, -0.45), (0.42, 1.0))])],
    ]


def _templates() -> tuple[np.ndarray, np.ndarray]:
    """(10, GRID, 2) points uniform in arc length along the whole pen path, (10, GRID) ink flags."""
    pts_out, ink_out = [], []
    for pieces in _pieces():
        pts, ink = [pieces[0]], [np.ones(len(pieces[0]) - 1, bool)]
        for piece in pieces[1:]:
            pts.append(piece)  # the segment joining the previous piece is pen-up travel
            ink += [np.zeros(1, bool), np.ones(len(piece) - 1, bool)]
        p = np.concatenate(pts)
        seg_ink = np.concatenate(ink)
        seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
        cum = np.concatenate([[0.0], np.cumsum(seg)])
        s = np.linspace(0.0, cum[-1], GRID)
        pts_out.append(np.stack([np.interp(s, cum, p[:, 0]), np.interp(s, cum, p[:, 1])], axis=1))
        idx = np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1)
        ink_out.append(seg_ink[idx] & (seg[idx] > 0))
    return np.stack(pts_out), np.stack(ink_out)


# ----------------------------------------------------------------------------------------------
# spoken-digit templates: per class a sequence of (F1, F2, F3 in mel bins, voicing, energy, length)

# fmt: off
_PH = {  # F1, F2, F3, voicing (1 voiced .. 0 fricative), energy
    "z": (4, 20, 27, 0.4, 0.5), "s": (5, 22, 28, 0.0, 0.7), "f": (5, 16, 26, 0.0, 0.35),
    "th": (5, 18, 26, 0.0, 0.3), "v": (4, 16, 25, 0.5, 0.4), "t": (5, 20, 27, 0.0, 0.5),
    "k": (5, 14, 24, 0.0, 0.4), "n": (3, 13, 22, 1.0, 0.45), "w": (3, 7, 20, 1.0, 0.6),
    "r": (5, 10, 15, 1.0, 0.8), "i": (3, 21, 26, 1.0, 1.0), "I": (4, 18, 25, 1.0, 0.9),
    "e": (5, 19, 25, 1.0, 1.0), "E": (6, 17, 25, 1.0, 1.0), "a": (9, 13, 23, 1.0, 1.0),
    "A": (7, 12, 23, 1.0, 1.0), "o": (6, 9, 22, 1.0, 1.0), "u": (4, 8, 21, 1.0, 0.9),
    "O": (7, 10, 22, 1.0, 1.0), "@": (6, 13, 23, 1.0, 0.8), "_": (5, 14, 24, 0.5, 0.05),
}
# fmt: on
_WORDS = [  # (phoneme, relative duration)
    [("z", 1.2), ("i", 1.5), ("r", 1.0), ("o", 2.0)],  # zero
    [("w", 1.0), ("A", 2.0), ("n", 1.8)],  # one
    [("t", 0.8), ("u", 2.6)],  # two
    [("th", 1.0), ("r", 1.0), ("i", 2.2)],  # three
    [("f", 1.2), ("O", 2.0), ("r", 1.2)],  # four
    [("f", 1.2), ("a", 1.4), ("I", 1.0), ("v", 1.2)],  # five
    [("s", 1.5), ("I", 1.3), ("_", 0.5), ("k", 0.5), ("s", 1.4)],  # six
    [("s", 1.4), ("E", 1.3), ("v", 0.8), ("@", 0.8), ("n", 1.3)],  # seven
    [("e", 2.0), ("I", 1.0), ("_", 0.5), ("t", 0.7)],  # eight
    [("n", 1.0), ("a", 1.4), ("I", 1.0), ("n", 1.6)],  # nine
]
_WORD_GRID = 64


def _word_tracks() -> np.ndarray:
    """(10, 5, _WORD_GRID): formants, voicing and energy over the word, coarticulated."""
    out = np.zeros((NUM_CLASSES, 5, _WORD_GRID))
    kernel = np.exp(-0.5 * (np.arange(-6, 7) / 2.5) ** 2)
    kernel /= kernel.sum()
    for c, word in enumerate(_WORDS):
        dur = np.array([d for _, d in word])
        edges = np.concatenate([[0.0], np.cumsum(dur) / dur.sum()])
        pos = (np.arange(_WORD_GRID) + 0.5) / _WORD_GRID
        which = np.clip(np.searchsorted(edges, pos, side="right") - 1, 0, len(word) - 1)
        track = np.array([_PH[p] for p, _ in word], float)[which].T  # (5, grid)
        padded = np.pad(track, ((0, 0), (6, 6)), mode="edge")
        out[c] = np.stack([np.convolve(row, kernel, mode="valid") for row in padded])
    return out


_TEMPLATE_PTS, _TEMPLATE_INK = (a.reshape(NUM_CLASSES * GRID, *a.shape[2:]) for a in _templates())
_TEMPLATE_C = np.ascontiguousarray(_TEMPLATE_PTS, np.float32).view(np.complex64).ravel()  # x + iy
_WORD = _word_tracks()
_PATH_S = np.linspace(0.0, 1.0, DENSE, dtype=np.float32)
# per digit two look-alikes: what a mis-recorded trajectory / a misheard word is taken from
_LOOKALIKE = np.array([[6, 9], [7, 4], [7, 3], [5, 8], [9, 1], [3, 6], [0, 5], [1, 2], [3, 0], [4, 7]])
_SOUNDALIKE = np.array([[3, 4], [9, 7], [8, 3], [0, 2], [5, 0], [4, 9], [7, 8], [6, 1], [6, 2], [1, 5]])
IMAGE_SHIFT_PX = 0.6  # std of the image-only offset at image_noise × difficulty = 1
SOUND_NOISE_DB = 7.0  # std of the sound's additive noise at sound_noise × difficulty = 1

# ----------------------------------------------------------------------------------------------
# generation


def _uniform_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean uniform noise with standard deviation `std`, from raw 64-bit draws cut into bytes
    (several times faster than `standard_normal` for the sound's millions of values)."""
    size = int(np.prod(shape))
    words = rng.integers(0, 2**64 - 1, size=-(-size // 8), dtype=np.uint64, endpoint=True)
    raw = words.view(np.int8)[:size].reshape(shape)
    return np.multiply(raw, np.float32(std / 73.9), dtype=np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, harmonics: int, amp: float) -> np.ndarray:
    """(n, DENSE, 2) low-frequency displacement along the path: random sinusoids, 1/k amplitudes."""
    k = np.arange(1, harmonics + 1, dtype=np.float32)[:, None]
    arg = 2 * np.pi * k * _PATH_S
    basis = np.concatenate([np.sin(arg) / k, np.cos(arg) / k])  # 2h, DENSE
    coef = rng.standard_normal((n * 2, 2 * harmonics), dtype=np.float32) * np.float32(amp / np.sqrt(2))
    return (coef @ basis).reshape(n, 2, DENSE).transpose(0, 2, 1)


def _paths(rng: np.random.Generator, labels: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Pen paths (k, n, DENSE, 2) in pixel coordinates and their ink flags (k, n, DENSE).

    `labels` is (k, n): k digits per sample drawn by the SAME writer (one pen speed, jitter and
    affine per sample), e.g. the digit in the image and the one the tracker recorded.
    """
    k, n = labels.shape
    s = _PATH_S
    # pen speed: a monotone re-timing of the template
    b = rng.uniform(-0.45, 0.45, (n, 2)).astype(np.float32) * np.float32(min(d, 1.0))
    u = s + b[:, :1] * np.sin(np.pi * s) / np.pi + b[:, 1:] * np.sin(2 * np.pi * s) / (2 * np.pi)
    pos = np.clip(u, 0.0, 1.0) * np.float32(GRID - 1)
    i0 = np.minimum(np.floor(pos), np.float32(GRID - 2))
    frac = pos - i0
    flat = labels[..., None] * GRID + i0.astype(np.intp)
    lo = _TEMPLATE_C.take(flat)
    pts = (lo + (_TEMPLATE_C.take(flat + 1) - lo) * frac).view(np.float32).reshape(k, n, DENSE, 2)
    ink = _TEMPLATE_INK.take(flat + (frac > 0.5))
    pts += _smooth_noise(rng, n, 3, 0.08 * d)
    # affine: rotation, scale, aspect, shear, translation
    rot = np.radians(rng.normal(0.0, 7.0 * d, n))
    scale = 1.0 + rng.uniform(-0.12, 0.08, n) * d
    aspect = np.exp(rng.normal(0.0, 0.1 * d, n))
    shear = rng.normal(0.0, 0.12 * d, n)
    shift = rng.normal(0.0, 0.1 * d, (n, 2)) * PX_PER_UNIT + SIZE / 2
    cos, sin = np.cos(rot), np.sin(rot)
    sx, sy = scale * aspect * PX_PER_UNIT, scale / aspect * PX_PER_UNIT
    m = [[cos * sx, -sin * sy + shear * cos * sx], [sin * sx, cos * sy + shear * sin * sx]]
    m = [[v.astype(np.float32)[:, None] for v in row] for row in m]
    x, y = pts[..., 0], pts[..., 1]
    out = np.empty_like(pts)
    out[..., 0] = m[0][0] * x + m[0][1] * y + shift[:, :1].astype(np.float32)
    out[..., 1] = m[1][0] * x + m[1][1] * y + shift[:, 1:].astype(np.float32)
    return out, ink


def _confuse(rng: np.random.Generator, labels: np.ndarray, p: float, partners: np.ndarray) -> np.ndarray:
    """`labels` with a share `p` of them swapped for one of their class's look-alikes."""
    swap = rng.random(len(labels)) < p
    pick = partners[labels, rng.integers(0, partners.shape[1], len(labels))]
    return np.where(swap, pick, labels)


def _rotation_scale(rng: np.random.Generator, n: int, deg: float, log_scale: float) -> np.ndarray:
    """(n, 2, 2) random rotations (std `deg` degrees) times isotropic scales (log std `log_scale`)."""
    rot = np.radians(rng.normal(0.0, deg, n))
    scale = np.exp(rng.normal(0.0, log_scale, n))
    cos, sin = np.cos(rot) * scale, np.sin(rot) * scale
    return np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2).astype(np.float32)


def _trace(rng: np.random.Generator, pts: np.ndarray, t: float, w: float) -> np.ndarray:
    """The trajectory (n, 100, 2) from a dense pen path, with the tracker's own nuisances.

    `w` (time warp): the recording starts late / stops early and the sampling clock drifts (a
    random monotone re-timing), so point k is not the same part of the digit in every sample.
    `t` (geometry and sensor): a tilt/zoom of the tablet about the canvas centre, an offset,
    a smooth drift, per-point sensor noise and sometimes a stretch where the tracker froze (it
    repeats its last position), losing part of the shape.
    """
    n = len(pts)
    k = np.linspace(0.0, 1.0, TRAJ_POINTS, dtype=np.float32)
    wc = min(w, 1.0)
    b = rng.uniform(-1.0, 1.0, (n, 3)).astype(np.float32) * np.float32(wc) * np.float32([0.5, 0.3, 0.15])
    harm = np.arange(1, 4, dtype=np.float32)[:, None]
    u = k + b @ (np.sin(np.pi * harm * k) / (np.pi * harm))  # monotone: sum |b_j| < 1
    start = rng.uniform(0.0, 0.2, (n, 1)).astype(np.float32) * np.float32(wc)
    stop = 1.0 - rng.uniform(0.0, 0.2, (n, 1)).astype(np.float32) * np.float32(wc)
    pos = np.clip(start + (stop - start) * u, 0.0, 1.0) * np.float32(DENSE - 1)
    # the tracker froze: positions after `at` repeat the one at `at` for a stretch
    at = rng.uniform(0.05, 0.95, (n, 1)).astype(np.float32)
    span = (rng.uniform(0.08, 0.25, (n, 1)) * (rng.random((n, 1)) < min(0.2 * t, 1.0))).astype(np.float32)
    frozen = (k >= at) & (k < at + span)
    pos = np.where(frozen, np.take_along_axis(pos, np.argmax(k >= at, axis=1)[:, None], axis=1), pos)
    i0 = np.minimum(np.floor(pos), np.float32(DENSE - 2))
    frac = (pos - i0)[..., None]
    i0 = i0.astype(np.intp)[..., None]
    lo = np.take_along_axis(pts, i0, axis=1)
    out = lo + (np.take_along_axis(pts, i0 + 1, axis=1) - lo) * frac
    centre = np.float32(SIZE / 2)
    m = _rotation_scale(rng, n, 14.0 * t, 0.1 * t)
    shift = rng.normal(0.0, 1.2 * t, (n, 1, 2)).astype(np.float32)
    out = (out - centre) @ m.transpose(0, 2, 1) + centre + shift
    out += _smooth_noise(rng, n, 3, 0.6 * t)[:, ::2]
    out += rng.standard_normal(out.shape, dtype=np.float32) * np.float32(0.35 * t)
    return out


def _clutter(
    rng: np.random.Generator, n: int, d: float, strokes: int = 2, points: int = 24
) -> tuple[np.ndarray, np.ndarray]:
    """Short random curved strokes (n, strokes*points, 2) and their ink weights."""
    t = np.linspace(0.0, 1.0, points, dtype=np.float32)
    c0 = rng.uniform(2, SIZE - 2, (n, strokes, 1, 2)).astype(np.float32)
    ang = rng.uniform(0, 2 * np.pi, (n, strokes, 1)).astype(np.float32)
    length = rng.uniform(3, 9, (n, strokes, 1)).astype(np.float32)
    bend = rng.normal(0, 0.6, (n, strokes, 1)).astype(np.float32)
    theta = ang + bend * t
    pts = c0 + (length * t)[..., None] * np.stack([np.cos(theta), np.sin(theta)], -1)
    on = rng.random((n, strokes, 1)) < 0.06 * d
    w = np.broadcast_to(on * length / points, (n, strokes, points)).astype(np.float32)
    return pts.reshape(n, strokes * points, 2), w.reshape(n, strokes * points)


def _splat(pts: np.ndarray, w: np.ndarray, slot: np.ndarray) -> np.ndarray:
    """Bilinear splat of weighted points (pixel coordinates, pixel centres at .5) -> (n, 28, 28).

    Sample i lands in image `slot[i]`; points off the canvas fall on a discarded guard border.
    """
    n, side = len(pts), SIZE + 2
    x = pts[..., 0] + np.float32(0.5)
    y = pts[..., 1] + np.float32(0.5)
    np.clip(x, 0.0, np.float32(side - 1.001), out=x)
    np.clip(y, 0.0, np.float32(side - 1.001), out=y)
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).astype(np.float64), (y - y0).astype(np.float64)
    base = (y0 * side + x0).astype(np.intp) + (slot.astype(np.intp) * side * side)[:, None]
    idx = np.concatenate([base, base + 1, base + side, base + side + 1], axis=1)
    wx1 = fx * w
    wx0 = w - wx1
    wts = np.concatenate([wx0 - wx0 * fy, wx1 - wx1 * fy, wx0 * fy, wx1 * fy], axis=1)
    acc = np.bincount(idx.ravel(), wts.ravel(), minlength=n * side * side)
    return acc.reshape(n, side, side)[:, 1:-1, 1:-1].astype(np.float32)


_SIGMA_LEVELS = np.linspace(0.55, 1.15, 7)  # stroke blur (thickness) levels, in pixels


@functools.cache
def _blur_matrices() -> np.ndarray:
    grid = np.arange(SIZE)
    g = np.exp(-0.5 * ((grid[None, :, None] - grid[None, None, :]) / _SIGMA_LEVELS[:, None, None]) ** 2)
    g /= g.sum(2, keepdims=True)
    return np.where(g > 1e-9, g, 0.0).astype(np.float32)  # subnormal weights make GEMMs crawl


def _blur(images: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur of (n, 28, 28) images sorted by level (`counts` per level).

    Returns every image TRANSPOSED: the second pass works on the transposed first pass, so
    both passes are single GEMMs; the caller's final gather undoes the transpose for free.
    """
    out = np.empty_like(images)
    lo = 0
    for g, count in zip(_blur_matrices(), counts, strict=True):
        hi = lo + int(count)
        if hi > lo:
            x = (images[lo:hi].reshape(-1, SIZE) @ g.T).reshape(hi - lo, SIZE, SIZE)  # along x
            x = x.transpose(0, 2, 1).reshape(-1, SIZE) @ g.T  # along y
            out[lo:hi] = x.reshape(hi - lo, SIZE, SIZE)
        lo = hi
    return out


def _render(rng: np.random.Generator, pts: np.ndarray, ink: np.ndarray, d: float) -> np.ndarray:
    """Images (n, 28, 28) in [0, 1] of the inked path, with the image-only degradations at
    level `d` (difficulty × image_noise)."""
    n = len(pts)
    pts = pts + _smooth_noise(rng, n, 4, 0.4 * d)  # image-only distortion
    pts += rng.normal(0.0, IMAGE_SHIFT_PX * d, (n, 1, 2)).astype(np.float32)  # where the digit sits
    # broken stroke: erase a random stretch of the path
    start = rng.uniform(0.0, 1.0, (n, 1)).astype(np.float32)
    gap = (rng.uniform(0.0, 0.2, (n, 1)) * (rng.random((n, 1)) < 0.05 * d)).astype(np.float32)
    keep = ink & ((_PATH_S < start) | (_PATH_S >= start + gap))
    step = np.empty(pts.shape[:2], np.float32)  # ink per point ~ local path length
    step[:, 1:] = np.hypot(*np.moveaxis(np.diff(pts, axis=1), -1, 0))
    step[:, 0] = step[:, 1]
    cpts, cw = _clutter(rng, n, d)
    # thickness level per sample; images are splatted grouped by level so each level is one GEMM
    level = rng.integers(0, len(_SIGMA_LEVELS), n)
    order = np.argsort(level, kind="stable")
    slot = np.empty(n, np.intp)
    slot[order] = np.arange(n)
    dens = _splat(np.concatenate([pts, cpts], axis=1), np.concatenate([keep * step, cw], axis=1), slot)
    blurred = _blur(dens, np.bincount(level, minlength=len(_SIGMA_LEVELS))).transpose(0, 2, 1)[slot]
    sigma = _SIGMA_LEVELS[level].astype(np.float32)
    grid = np.arange(SIZE, dtype=np.float32)
    gain = (rng.uniform(2.0, 3.5, n) * np.sqrt(2 * np.pi) * sigma).astype(np.float32)[:, None, None]
    img = 1.0 - np.exp(-gain * blurred)
    # occluding blotch: erase a random rectangle
    occ = rng.random((n, 1)) < 0.03 * d
    centre = rng.uniform(6, SIZE - 6, (n, 2))
    half = rng.uniform(3, 6.5, (n, 2))
    in_y = (np.abs(grid - centre[:, 1:]) < half[:, 1:]) & occ
    in_x = np.abs(grid - centre[:, :1]) < half[:, :1]
    img[in_y[:, :, None] & in_x[:, None, :]] = 0.0
    img *= (1.0 - rng.uniform(0.0, 0.2, n) * min(d, 1.0)).astype(np.float32)[:, None, None]
    img += _uniform_noise(rng, img.shape, 0.05 * d)
    return np.clip(img, 0.0, 1.0, out=img)


_SCALE_LEVELS = np.linspace(-0.2, 0.2, 17)  # log formant scale (speaker size)
_F0_LEVELS = np.linspace(2.6, 4.6, 8)  # harmonic spacing in mel bins (pitch)
_FLOOR_DB = -30.0


@functools.cache
def _sound_table() -> np.ndarray:
    """log spectrum (10·S·P·grid, 32) for every class, formant scale, pitch and word position."""
    bins = np.arange(N_FREQ, dtype=np.float64)
    scale = np.exp(_SCALE_LEVELS)[None, :, None, None, None]  # c, s, p, g, f
    tr = _WORD[:, :, None, None, :, None]  # c, field, s, p, g, f
    f1, f2, f3, voicing, energy = (tr[:, i] for i in range(5))
    form = sum(
        w * np.exp(-0.5 * ((bins - f * scale) / bw) ** 2)
        for f, bw, w in ((f1, 1.4, 1.0), (f2, 2.0, 0.55), (f3, 2.6, 0.3))
    )
    comb = 0.15 + 0.85 * (0.5 + 0.5 * np.cos(2 * np.pi * bins / _F0_LEVELS[:, None, None])) ** 2  # p, g, f
    fric = np.exp(-0.5 * ((bins - 25.0 * scale) / 5.0) ** 2)
    power = energy * (voicing * comb * form + (1.0 - voicing) * fric)
    return (10.0 * np.log10(power + 1e-4)).astype(np.float32).reshape(-1, N_FREQ)


def _word(rng: np.random.Generator, labels: np.ndarray, d: float) -> tuple[np.ndarray, np.ndarray]:
    """Table rows (n, T) and frame gains in dB (n, T) of one spoken word per sample."""
    n = len(labels)
    length = np.clip(rng.uniform(60, 100, n) * np.exp(rng.normal(0, 0.15 * d, n)), 40, 120)
    onset = rng.uniform(0, 1, n) * (N_FRAMES - length)
    phase = (np.arange(N_FRAMES)[None] - onset[:, None]) / length[:, None]  # n, T
    pos = np.clip((phase * _WORD_GRID).astype(np.int64), 0, _WORD_GRID - 1)
    s = np.clip(np.rint(rng.normal(0, 0.06 * d, n) / 0.025) + 8, 0, len(_SCALE_LEVELS) - 1).astype(np.int64)
    p = rng.integers(0, len(_F0_LEVELS), n)
    row = ((labels * len(_SCALE_LEVELS) + s) * len(_F0_LEVELS) + p)[:, None] * _WORD_GRID + pos
    gain = np.sin(np.pi * np.clip(phase, 0, 1)) ** 0.3 * np.exp(rng.normal(0, 0.25 * d, n))[:, None]
    return row, (10.0 * np.log10(np.maximum(gain, 1e-6))).astype(np.float32)


def _sound(rng: np.random.Generator, labels: np.ndarray, d: float, q: float, out: np.ndarray) -> np.ndarray:
    """Log spectrograms (n, 128 frames, 32 bins) of the spoken digit, written into `out`; raw dB-like values.

    Nuisance: speaker (formant scale, pitch), timing, loudness, a quieter background word
    (combined with the max-of-logs approximation), a dropped stretch of frames, noise. `d` is the
    difficulty (speaker and timing spread), `q` = difficulty × sound_noise the recording's
    level of interference (background word, lost frames, noise).
    """
    n = len(labels)
    table = _sound_table()
    row, gain_db = _word(rng, labels, d)
    # a stretch of lost frames
    drop = rng.random((n, 1)) < min(0.5 * q, 1.0)
    start = rng.uniform(0, N_FRAMES, (n, 1))
    frames = np.arange(N_FRAMES)
    gain_db[drop & (frames >= start) & (frames < start + rng.uniform(8, 24, (n, 1)))] = -60.0
    spec = np.take(table, row, axis=0, out=out)  # n, T, F
    spec += gain_db[..., None]
    # background word
    other, other_db = _word(rng, rng.integers(0, NUM_CLASSES, n), d)
    attenuation = np.where(rng.random(n) < min(q, 1.0), rng.uniform(3.0, 7.5, n) / max(q, 1e-6), 100.0)
    other_db -= attenuation.astype(np.float32)[:, None]
    background = table[other]
    background += other_db[..., None]
    np.maximum(spec, background, out=spec)
    np.maximum(spec, np.float32(_FLOOR_DB), out=spec)
    spec += _uniform_noise(rng, spec.shape, SOUND_NOISE_DB * q)
    return spec


@dataclass(frozen=True)
class Knobs:
    """The per-modality difficulty knobs (dataset options); each multiplies `difficulty`."""

    image_noise: float = 1.0
    traj_noise: float = 1.0
    traj_warp: float = 1.0
    traj_confusion: float = 0.1
    sound_noise: float = 1.0
    sound_confusion: float = 0.3


KNOBS = tuple(f.name for f in fields(Knobs))


def generate(n: int, *, seed: int, split: str, difficulty: float = 1.0, **knobs: float) -> dict[str, np.ndarray]:
    """One split in memory: labels (n,), image (n,1,28,28), trajectory (n,200), sound (n,32,128).

    `knobs` are the `Knobs` fields (defaults where not given). `sound` is [bin, frame], a
    transposed view of a [frame, bin] buffer: that is the layout of the MHD file's chunks, so
    writing it needs no copy.
    """
    k = Knobs(**knobs)
    stream = {"train": 0, "test": 1}[split]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), stream, FORMAT_VERSION]))
    labels = rng.permutation(np.arange(n) % NUM_CLASSES)
    image = np.empty((n, 1, SIZE, SIZE), np.float32)
    traj = np.empty((n, TRAJ_POINTS, 2), np.float32)
    sound = np.empty((n, N_FRAMES, N_FREQ), np.float32)
    d = float(difficulty)
    for lo in range(0, n, CHUNK):
        hi = min(n, lo + CHUNK)
        sub = np.random.default_rng(rng.integers(2**63))  # one stream per chunk
        lab = labels[lo:hi]
        drawn = _confuse(sub, lab, min(k.traj_confusion * d, 1.0), _LOOKALIKE)  # what the tracker saw
        (pts, tpts), (ink, _) = _paths(sub, np.stack([lab, drawn]), d)
        traj[lo:hi] = _trace(sub, tpts, k.traj_noise * d, k.traj_warp * d)
        image[lo:hi, 0] = _render(sub, pts, ink, k.image_noise * d)
        said = _confuse(sub, lab, min(k.sound_confusion * d, 1.0), _SOUNDALIKE)
        _sound(sub, said, d, k.sound_noise * d, out=sound[lo:hi])
        log.debug("synth-mhd %s: %d/%d samples", split, hi, n)
    return {
        "labels": labels.astype(np.int64),
        "image": image,
        "trajectory": traj.reshape(n, 2 * TRAJ_POINTS),
        "sound": sound.transpose(0, 2, 1),
    }


# ----------------------------------------------------------------------------------------------
# files and registration


def cache_key(n_train: int, n_test: int, data_seed: int, difficulty: float, **knobs: float) -> str:
    """Directory name under the cache root; knobs at their defaults are left out of it."""
    k = Knobs(**knobs)
    extra = "".join(f"-{name}{getattr(k, name):g}" for name in KNOBS if getattr(k, name) != getattr(Knobs(), name))
    return f"v{FORMAT_VERSION}-train{n_train}-test{n_test}-seed{data_seed}-diff{float(difficulty):g}{extra}"


def _options(n_train: int, n_test: int, data_seed: int, difficulty: float, **knobs: float) -> dict:
    """What META_FILE records: the files in a directory are reused only for these exact options."""
    k = Knobs(**knobs)
    return {
        "format_version": FORMAT_VERSION,
        "n_train": n_train,
        "n_test": n_test,
        "data_seed": data_seed,
        "difficulty": float(difficulty),
        **{name: float(getattr(k, name)) for name in KNOBS},
    }


def _write_split(path: Path, data: dict[str, np.ndarray], traj_norm: dict, sound_norm: dict) -> None:
    save_mhd_split(
        path,
        torch.from_numpy(data["labels"]),
        torch.from_numpy(data["image"]),
        torch.from_numpy(data["trajectory"]),
        spectrogram_to_sound_chunks(torch.from_numpy(data["sound"])),
        traj_norm,
        sound_norm,
    )


def write_synth_mhd(
    directory: str | Path, *, n_train: int, n_test: int, data_seed: int, difficulty: float, **knobs: float
) -> Path:
    """Generate both splits and write them (atomically) in the MHD format into `directory`."""
    directory = Path(directory)
    t0 = time.perf_counter()
    log.info("generating synth-mhd (%d train, %d test, seed %d, difficulty %g)", n_train, n_test, data_seed, difficulty)
    train = generate(n_train, seed=data_seed, split="train", difficulty=difficulty, **knobs)
    test = generate(n_test, seed=data_seed, split="test", difficulty=difficulty, **knobs)
    log.info("generated in %.1f s; writing to %s", time.perf_counter() - t0, directory)
    norms = {
        m: {"min": torch.tensor(float(train[m].min())), "max": torch.tensor(float(train[m].max()))}
        for m in ("trajectory", "sound")
    }
    # the options go first: files without them would look foreign to the next reader
    meta = json.dumps(_options(n_train, n_test, data_seed, difficulty, **knobs), sort_keys=True).encode()
    atomic_write(directory / META_FILE, lambda fh: fh.write(meta))
    _write_split(directory / TRAIN_FILE, train, norms["trajectory"], norms["sound"])
    _write_split(directory / TEST_FILE, test, norms["trajectory"], norms["sound"])
    log.info("synth-mhd ready in %s (%.1f s)", directory, time.perf_counter() - t0)
    return directory


@dataclass(frozen=True)
class SynthMHDOptions(DatasetOptions, Knobs):
    """The dataset options: modalities, split sizes, the data seed, `difficulty` and the `Knobs`."""

    modalities: tuple[str, ...] = ("image", "trajectory")
    n_train: int = 20000
    n_test: int = 2000
    data_seed: int = 0
    difficulty: float = 1.0

    def check(self, path: str) -> None:
        super().check(path)
        check_modalities("synth-mhd", self.modalities)
        for name, low in (("n_train", NUM_CLASSES), ("n_test", 1), ("data_seed", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"{path}.{name} must be an integer ≥ {low}, got {getattr(self, name)!r}")
        for name in ("n_train", "n_test"):  # about 20 kB a sample in memory: the cap is ~20 GB
            if getattr(self, name) > MAX_SAMPLES:
                raise ConfigError(f"{path}.{name} must be at most {MAX_SAMPLES}, got {getattr(self, name)!r}")
        highs = {"difficulty": 3.0, **{k: 1.0 if k.endswith("confusion") else 10.0 for k in KNOBS}}
        for name, high in highs.items():
            if not 0 <= getattr(self, name) <= high:
                raise ConfigError(f"{path}.{name} must be a number in [0, {high:g}], got {getattr(self, name)!r}")

    def knobs(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in KNOBS}


@register_dataset(
    "synth-mhd",
    options=SynthMHDOptions,
    summary="synthetic MHD-like digits (image dominant, trajectory weaker, sound weakest), generated in seconds",
    needs_data_dir=False,
)
def load(*, data_dir: Path | None, options: SynthMHDOptions) -> RawData:
    o, knobs = options, options.knobs()
    key = cache_key(o.n_train, o.n_test, o.data_seed, o.difficulty, **knobs)
    directory = Path(data_dir) if data_dir is not None else cache_root() / "synth-mhd" / key
    meta = _options(o.n_train, o.n_test, o.data_seed, o.difficulty, **knobs)
    files = [directory / TRAIN_FILE, directory / TEST_FILE]
    meta_path = directory / META_FILE
    if meta_path.is_file():
        try:
            found = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            found = None
        if found != meta:
            raise DataError(
                f"{directory} holds synth-mhd files made with other options ({found}), not {meta}; "
                "give another --data-dir or delete those files"
            )
    elif any(p.is_file() for p in files):
        raise DataError(
            f"{directory} holds MHD files that synth-mhd did not write ({META_FILE} is missing); "
            "refusing to overwrite them: give another --data-dir"
        )
    if all(p.is_file() for p in files):
        log.info("reusing synth-mhd files in %s", directory)
    else:
        write_synth_mhd(
            directory, n_train=o.n_train, n_test=o.n_test, data_seed=o.data_seed, difficulty=o.difficulty, **knobs
        )
    return load_mhd_dir(directory, o.modalities, name="synth-mhd", info={"synth": meta, "cache_key": key})
