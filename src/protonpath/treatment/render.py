"""Pictures of a plan for its pages: the dose over one CT slice (colour wash, isodose lines,
contours) as a PNG, and the DVH as an SVG. Server-side, from the plan's files."""

from __future__ import annotations

import io
from functools import lru_cache
from html import escape

import numpy as np
import pydicom

from protonpath.imaging.render import render_slice
from protonpath.treatment import engine

ISODOSE_LEVELS = (0.95, 0.80, 0.50, 0.20)  # of the prescription
ISODOSE_COLOURS = ("#ff2d2d", "#ffa500", "#ffe600", "#3aa0ff")
PALETTE = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e")


@lru_cache(maxsize=8)
def _dose(path: str):
    with np.load(path) as z:
        return z["dose"], tuple(z["origin"].tolist()), tuple(z["spacing"].tolist())


def _dose_file(plan):
    try:
        return _dose(plan.dose_file.path)
    except NotImplementedError:  # storage without local paths
        with plan.dose_file.open("rb") as f, np.load(io.BytesIO(f.read())) as z:
            return z["dose"], tuple(z["origin"].tolist()), tuple(z["spacing"].tolist())


def dose_on_slice(plan, ct_ds) -> np.ndarray:
    """The course dose (Gy) sampled (nearest voxel) on one CT slice's pixels; 0 outside."""
    dose, origin, spacing = _dose_file(plan)
    rows, cols = int(ct_ds.Rows), int(ct_ds.Columns)
    x0, y0, z = (float(v) for v in ct_ds.ImagePositionPatient)
    dy, dx = (float(v) for v in ct_ds.PixelSpacing)
    xs = x0 + dx * np.arange(cols)
    ys = y0 + dy * np.arange(rows)
    k = int(round((z - origin[2]) / spacing[2]))
    if not 0 <= k < dose.shape[0]:
        return np.zeros((rows, cols))
    i = np.rint((ys - origin[1]) / spacing[1]).astype(int)
    j = np.rint((xs - origin[0]) / spacing[0]).astype(int)
    vi = (i >= 0) & (i < dose.shape[1])
    vj = (j >= 0) & (j < dose.shape[2])
    out = np.zeros((rows, cols))
    out[np.ix_(vi, vj)] = dose[k][np.ix_(i[vi], j[vj])]
    return out


def overlay_png(plan, ct_ds, contours: dict[str, list[np.ndarray]], colours: dict[str, str]) -> bytes:
    """CT slice with the dose wash (above 20 % of the prescription), isodose lines and contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grey = render_slice(ct_ds, "soft tissue" if str(ct_ds.get("Modality", "")) == "CT" else None)
    if grey.ndim == 3:
        grey = grey[..., 0]
    rx = float(plan.prescription.dose_gy)
    dose = dose_on_slice(plan, ct_ds)
    rows, cols = grey.shape
    x0, y0, z = (float(v) for v in ct_ds.ImagePositionPatient)
    dy, dx = (float(v) for v in ct_ds.PixelSpacing)
    scale = max(1.0, 512.0 / max(rows, cols))  # small matrices drawn at 512 px at least
    fig = plt.figure(figsize=(cols * scale / 100, rows * scale / 100), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(grey, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    wash = np.ma.masked_less(dose, 0.2 * rx)
    ax.imshow(wash, cmap="jet", vmin=0.2 * rx, vmax=1.1 * rx, alpha=0.35, interpolation="nearest")
    if dose.max() >= 0.2 * rx:
        ax.contour(dose, levels=sorted(level * rx for level in ISODOSE_LEVELS),
                   colors=list(reversed(ISODOSE_COLOURS)), linewidths=1.0)
    for name, polys in contours.items():
        for c in polys:
            if abs(c[0, 2] - z) > 0.5 * float(getattr(ct_ds, "SliceThickness", 1) or 1):
                continue
            px = (c[:, 0] - x0) / dx
            py = (c[:, 1] - y0) / dy
            ax.plot(np.append(px, px[0]), np.append(py, py[0]), color=colours.get(name, "#00ff00"), lw=1.2)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)
    ax.axis("off")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def structure_colours(names) -> dict[str, str]:
    return {n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}


def read_rtstruct(plan):
    with plan.rtstruct.file.open("rb") as f:
        return engine.roi_contours(pydicom.dcmread(f))


_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 640, 360, 56, 150, 28, 44


def _frame(top_dose: float, prescription_gy: float, title: str, number):
    """The DVH charts' frame: box, title, grid and tick labels, prescription line; with the
    dose and volume to SVG coordinates functions."""
    w, left, right, top, bottom = _W, _LEFT, _RIGHT, _TOP, _BOTTOM
    pw, ph = w - left - right, _H - top - bottom

    def X(v):
        return left + pw * v / top_dose

    def Y(v):
        return top + ph * (1 - v)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {_H}" width="{w}" height="{_H}" role="img" '
             f'aria-label="{escape(title)}" class="dvh">',
             f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="white" stroke="#888"/>',
             f'<text x="{left}" y="18" font-size="13" font-weight="bold">{escape(title)}</text>']
    step = 10 if top_dose > 40 else 5 if top_dose > 15 else 1
    for g in np.arange(0, top_dose + 1e-9, step):
        parts.append(f'<line x1="{X(g):.1f}" y1="{top}" x2="{X(g):.1f}" y2="{top + ph}" stroke="#eee"/>')
        parts.append(f'<text x="{X(g):.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">{number(float(g))}</text>')
    for v in range(0, 101, 20):
        parts.append(f'<line x1="{left}" y1="{Y(v / 100):.1f}" x2="{left + pw}" y2="{Y(v / 100):.1f}" stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{Y(v / 100) + 3:.1f}" font-size="10" text-anchor="end">{v}</text>')
    parts.append(f'<line x1="{X(prescription_gy):.1f}" y1="{top}" x2="{X(prescription_gy):.1f}" y2="{top + ph}" '
                 'stroke="#555" stroke-dasharray="4 3"/>')
    return parts, X, Y


def _close(parts: list[str], x_label: str, y_label: str) -> str:
    pw, ph = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    parts.append(f'<text x="{_LEFT + pw / 2}" y="{_H - 8}" font-size="11" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{_TOP + ph / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 14 {_TOP + ph / 2})">{escape(y_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _legend(parts: list[str], i: int, name: str, colour: str) -> None:
    ly = _TOP + 12 + 16 * i
    parts.append(f'<line x1="{_W - _RIGHT + 10}" y1="{ly}" x2="{_W - _RIGHT + 28}" y2="{ly}" stroke="{colour}" stroke-width="3"/>')
    parts.append(f'<text x="{_W - _RIGHT + 32}" y="{ly + 4}" font-size="11">{escape(name)}</text>')


def dvh_svg(dvhs: list[dict], colours: dict[str, str], prescription_gy: float, *, x_label: str, y_label: str,
            title: str, number=lambda v: f"{v:g}") -> str:
    """Cumulative DVH curves as an SVG (volume % against dose Gy), one colour per structure."""
    top_dose = max([prescription_gy * 1.15] + [max(d["dose_gy"]) for d in dvhs if d["dose_gy"]])
    parts, X, Y = _frame(top_dose, prescription_gy, title, number)
    for i, d in enumerate(dvhs):
        colour = colours.get(d["name"], "#000")
        pts = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(d["dose_gy"], d["volume"], strict=True))
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{pts}" data-structure="{escape(d["name"])}"/>')
        _legend(parts, i, d["name"], colour)
    return _close(parts, x_label, y_label)


def _last_nonzero(values) -> int:
    nz = [k for k, v in enumerate(values) if v > 0]
    return min(len(values) - 1, (nz[-1] + 1) if nz else 0)


def dvh_band_svg(bands: list[dict], colours: dict[str, str], prescription_gy: float, *, x_label: str,
                 y_label: str, title: str, number=lambda v: f"{v:g}") -> str:
    """DVH bands as an SVG, on the same axes as :func:`dvh_svg`: per structure the band between
    the lowest and highest volume over the scenarios (translucent) and the nominal curve on
    top. ``bands`` are RobustnessEvaluation.to_dict's ``dvh_bands`` (volume fractions)."""
    top_dose = prescription_gy * 1.15
    for b in bands:
        if b["dose_gy"]:
            top_dose = max(top_dose, b["dose_gy"][_last_nonzero(b["upper"])])
    parts, X, Y = _frame(top_dose, prescription_gy, title, number)
    for i, b in enumerate(bands):
        colour = colours.get(b["name"], "#000")
        n = _last_nonzero(b["upper"]) + 1
        dose = b["dose_gy"][:n]
        upper = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(dose, b["upper"][:n], strict=True))
        lower = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(reversed(dose), reversed(b["lower"][:n]), strict=True))
        name = escape(b["name"])
        parts.append(f'<polygon class="band" fill="{colour}" fill-opacity="0.22" stroke="none" points="{upper} {lower}" '
                     f'data-structure="{name}"/>')
        nominal = " ".join(f"{X(x):.1f},{Y(y):.1f}" for x, y in zip(dose, b["nominal"][:n], strict=True))
        parts.append(f'<polyline class="nominal" fill="none" stroke="{colour}" stroke-width="1.6" points="{nominal}" '
                     f'data-structure="{name}"/>')
        _legend(parts, i, b["name"], colour)
    return _close(parts, x_label, y_label)
