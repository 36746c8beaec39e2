"""Beam model of a pencil-beam-scanning proton machine.

A :class:`Machine` holds, for each nominal energy, the integrated depth dose (IDD) in water,
the lateral widening by multiple Coulomb scattering in water, and the spot size in air.  The
tables are data (see :mod:`protonpath.planning.resources` for the packaged Proteus One-like
file); this module also holds the physics that generated that file:

* Bragg-Kleeman range-energy relation ``R = alpha * E**p`` (Bortfeld 1997, water:
  ``alpha = 0.0022 cm MeV**-p``, ``p = 1.77``);
* Bortfeld's analytical Bragg curve with range straggling, energy spread and nuclear losses
  (T. Bortfeld, Med. Phys. 24, 2024 (1997));
* Fermi-Eyges lateral widening with Gottschalk's differential Highland scattering power
  (B. Gottschalk, Med. Phys. 37, 352 (2010)).

Units: energies in MeV, depths and widths in mm (water-equivalent), IDD in MeV cm^2 g^-1 per
proton (the matRad convention), spot weights elsewhere in units of 10^6 protons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import special

#: Bragg-Kleeman constants for water (Bortfeld 1997).
BK_ALPHA_MM = 0.022  # mm MeV^-p (0.0022 cm MeV^-p)
BK_P = 1.77
PROTON_MASS_MEV = 938.272
#: Converts MeV cm^2 g^-1 per proton into Gy mm^2 per 10^6 protons.
IDD_TO_GY_MM2_PER_MEGAPROTON = 1.602176634e-2


@dataclass(frozen=True)
class Machine:
    """Pencil-beam base data of one treatment machine.

    Attributes
    ----------
    name : str
        Machine name, e.g. ``"Proteus One-like"``.
    energies_mev : ndarray, shape (n_energies,)
        Nominal energies, ascending.
    depths_mm : list of ndarray
        Water-equivalent depth samples of each energy's tables.
    idd : list of ndarray
        Integrated depth dose in MeV cm^2 g^-1 per proton at ``depths_mm``.
    sigma_mcs_mm : list of ndarray
        Lateral sigma added by multiple scattering in water at ``depths_mm``.
    peak_depth_mm : ndarray, shape (n_energies,)
        Depth of the Bragg peak maximum.
    range_r80_mm : ndarray, shape (n_energies,)
        Distal 80 % depth.
    focus_distance_mm : ndarray, shape (n_foci,)
        Distances from the virtual source at which the spot size in air is tabulated.
    focus_sigma_mm : ndarray, shape (n_energies, n_foci)
        Spot sigma in air at those distances.
    sad_mm : float
        Virtual source to isocentre distance.
    nozzle_to_isocentre_mm : float
        Distance from the nozzle exit to the isocentre (air gap correction).
    fit_air_offset_mm : float
        Air gap already included in the depth-dose tables.
    source : str
        Where the data came from.
    """

    name: str
    energies_mev: np.ndarray
    depths_mm: list
    idd: list
    sigma_mcs_mm: list
    peak_depth_mm: np.ndarray
    range_r80_mm: np.ndarray
    focus_distance_mm: np.ndarray
    focus_sigma_mm: np.ndarray
    sad_mm: float
    nozzle_to_isocentre_mm: float = 0.0
    fit_air_offset_mm: float = 0.0
    source: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def n_energies(self) -> int:
        return len(self.energies_mev)

    def spot_sigma_in_air_mm(self, energy_index: np.ndarray, distance_from_source_mm: np.ndarray):
        """Spot sigma in air (mm) for energies at distances from the virtual source."""
        energy_index = np.asarray(energy_index)
        distance = np.asarray(distance_from_source_mm, dtype=float)
        out = np.empty(np.broadcast(energy_index, distance).shape)
        e_b, d_b = np.broadcast_arrays(energy_index, distance)
        for e in np.unique(e_b):
            sel = e_b == e
            out[sel] = np.interp(d_b[sel], self.focus_distance_mm, self.focus_sigma_mm[e])
        return out

    def energy_index(self, energy_mev: np.ndarray, atol_mev: float = 1e-3) -> np.ndarray:
        """Index of each energy in :attr:`energies_mev` (must be present)."""
        energy_mev = np.atleast_1d(np.asarray(energy_mev, dtype=float))
        idx = np.searchsorted(self.energies_mev, energy_mev)
        idx = np.clip(idx, 0, self.n_energies - 1)
        left = np.clip(idx - 1, 0, self.n_energies - 1)
        closer = np.abs(self.energies_mev[left] - energy_mev) < np.abs(
            self.energies_mev[idx] - energy_mev
        )
        idx = np.where(closer, left, idx)
        if np.any(np.abs(self.energies_mev[idx] - energy_mev) > atol_mev):
            raise ValueError("energy not in the machine's base data")
        return idx


def bragg_kleeman_range_mm(energy_mev, alpha_mm: float = BK_ALPHA_MM, p: float = BK_P):
    """Projected range in water (mm) of protons of ``energy_mev``: ``alpha * E**p``."""
    return alpha_mm * np.asarray(energy_mev, dtype=float) ** p


def bragg_kleeman_energy_mev(range_mm, alpha_mm: float = BK_ALPHA_MM, p: float = BK_P):
    """Energy (MeV) of protons whose range in water is ``range_mm``."""
    return (np.asarray(range_mm, dtype=float) / alpha_mm) ** (1.0 / p)


def bortfeld_idd(
    depth_mm,
    energy_mev: float,
    energy_spread_fraction: float = 0.008,
    tail_fraction: float = 0.1,
    beta_per_mm: float = 0.0012,
    gamma_nuclear: float = 0.6,
    nuclear_buildup_mm: float = 0.0,
):
    """Bortfeld's analytical integrated depth dose of a proton beam in water.

    Parameters
    ----------
    depth_mm : array_like
        Depths in water.
    energy_mev : float
        Mean initial energy.
    energy_spread_fraction : float
        Relative one-sigma energy spread of the beam.
    tail_fraction : float
        Fraction ``epsilon`` of primary fluence in the low-energy tail.
    beta_per_mm : float
        Slope of the fluence reduction by nuclear interactions.
    gamma_nuclear : float
        Fraction of energy released in nuclear interactions that is absorbed locally.
    nuclear_buildup_mm : float
        Build-up length of that deposit: the secondaries (mostly protons) of nonelastic
        interactions travel forward, so the nuclear term grows as ``1 - exp(-z / length)``
        from the surface instead of being local (0: Bortfeld's local deposit).

    Returns
    -------
    ndarray
        IDD in MeV cm^2 g^-1 per proton (density of water 1 g cm^-3).
    """
    z = np.asarray(depth_mm, dtype=float) / 10.0  # cm
    p = BK_P
    alpha = BK_ALPHA_MM / 10.0  # cm MeV^-p
    beta = beta_per_mm * 10.0  # cm^-1
    e0 = float(energy_mev)
    r0 = alpha * e0**p
    sigma_mono = 0.012 * r0**0.935
    sigma_e0 = energy_spread_fraction * e0
    sigma = np.sqrt(sigma_mono**2 + sigma_e0**2 * alpha**2 * p**2 * e0 ** (2 * p - 2))
    norm = 1.0 / (p * alpha ** (1 / p) * (1 + beta * r0))
    if nuclear_buildup_mm > 0:
        local = gamma_nuclear * -np.expm1(-z / (nuclear_buildup_mm / 10.0))
    else:
        local = np.full_like(z, gamma_nuclear)
    coef = beta / p + local * beta + tail_fraction / r0

    zeta = (r0 - z) / sigma
    out = np.zeros_like(z)
    far = zeta > 10.0  # Bortfeld's plateau form, with the straggling to second order
    resid = np.clip(r0 - z[far], 1e-12, None)
    # the straggled form's coefficient multiplies D_{-1/p-1}, whose asymptote carries
    # Gamma(1/p + 1) / Gamma(1/p) = 1/p: the plateau term is p * coef (Bortfeld's eq. for the
    # unstraggled curve, beta + gamma beta p + ...).  Straggling smooths each power r^k of the
    # residual range by sigma^2/2 d2/dr2, k (k - 1) sigma^2 / (2 r^2) relative: with it the two
    # forms join at zeta = 10 within 1e-4 (without it, 3e-3)
    q = sigma**2 / (2 * resid**2)
    k1, k2 = 1 / p - 1, 1 / p
    out[far] = norm * (
        resid**k1 * (1 + k1 * (k1 - 1) * q) + p * coef[far] * resid**k2 * (1 + k2 * (k2 - 1) * q)
    )
    near = ~far & (zeta > -12.0)
    zn = zeta[near]
    d1, _ = special.pbdv(-1 / p, -zn)
    d2, _ = special.pbdv(-1 / p - 1, -zn)
    pref = np.exp(-(zn**2) / 4) * sigma ** (1 / p) * special.gamma(1 / p) / np.sqrt(2 * np.pi)
    out[near] = norm * pref * (d1 / sigma + coef[near] * d2)
    return np.clip(out, 0.0, None)


def _pv_mev(kinetic_mev):
    """Momentum times velocity (MeV) of protons of kinetic energy ``kinetic_mev``."""
    t = np.asarray(kinetic_mev, dtype=float)
    return t * (t + 2 * PROTON_MASS_MEV) / (t + PROTON_MASS_MEV)


def multiple_scattering_sigma_mm(depth_mm, energy_mev: float):
    """Lateral sigma (mm) added by multiple Coulomb scattering of a pencil beam in water.

    Fermi-Eyges moment ``sigma^2(z) = integral (z - z')^2 T(z') dz'`` with Gottschalk's
    differential Highland scattering power ``T_dH`` (``E_s = 15 MeV``, water scattering length
    ``X_S = 468.8 mm``) and the residual energy from the Bragg-Kleeman relation.  Beyond the
    end of range the width is held at its end-of-range value.
    """
    depth_mm = np.asarray(depth_mm, dtype=float)
    r0 = float(bragg_kleeman_range_mm(energy_mev))
    zs = np.linspace(0.0, r0 * 0.999, 2000)
    residual_energy = bragg_kleeman_energy_mev(r0 - zs)
    pv = _pv_mev(residual_energy)
    p1v1 = _pv_mev(energy_mev)
    ratio = np.clip(1 - (pv / p1v1) ** 2, 1e-12, None)
    f_dh = 0.5244 + 0.1975 * np.log10(ratio) + 0.2320 * np.log10(pv)
    f_dh -= 0.0098 * np.log10(pv) * np.log10(ratio)
    t_dh = np.clip(f_dh, 0.0, None) * (15.0 / pv) ** 2 / 468.8  # rad^2 / mm
    a0 = _cumtrapz(t_dh, zs)
    a1 = _cumtrapz(t_dh * zs, zs)
    a2 = _cumtrapz(t_dh * zs**2, zs)
    var = np.clip(zs**2 * a0 - 2 * zs * a1 + a2, 0.0, None)
    return np.sqrt(np.interp(depth_mm, zs, var))


def _cumtrapz(y, x):
    out = np.zeros_like(y)
    out[1:] = np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))
    return out


def distal_depth_mm(depths_mm, idd, level: float = 0.8) -> float:
    """Depth (mm) beyond the peak where the IDD falls to ``level`` of its maximum."""
    depths_mm = np.asarray(depths_mm, dtype=float)
    idd = np.asarray(idd, dtype=float)
    i_max = int(np.argmax(idd))
    target = level * idd[i_max]
    tail = idd[i_max:]
    below = np.nonzero(tail < target)[0]
    if len(below) == 0:
        return float(depths_mm[-1])
    j = i_max + below[0]
    # linear interpolation between j-1 (above) and j (below)
    x0, x1, y0, y1 = depths_mm[j - 1], depths_mm[j], idd[j - 1], idd[j]
    return float(x0 + (target - y0) * (x1 - x0) / (y1 - y0))


def bragg_peak_width_mm(depths_mm, idd, level: float = 0.8) -> float:
    """Width (mm) of the Bragg peak at ``level`` of its maximum: distal minus proximal depth.

    Both depths are interpolated linearly on the depth-dose samples (the distal one as
    :func:`distal_depth_mm`).  When the curve does not fall below ``level`` upstream of the peak
    (a peak at the surface, e.g. behind a range shifter) the proximal depth is the first sample.
    """
    depths_mm = np.asarray(depths_mm, dtype=float)
    idd = np.asarray(idd, dtype=float)
    i_max = int(np.argmax(idd))
    target = level * idd[i_max]
    distal = distal_depth_mm(depths_mm, idd, level)
    below = np.nonzero(idd[: i_max + 1] < target)[0]
    if len(below) == 0:
        return float(distal - depths_mm[0])
    j = below[-1]  # below the level at j, above it at j + 1
    x0, x1, y0, y1 = depths_mm[j], depths_mm[j + 1], idd[j], idd[j + 1]
    return float(distal - (x0 + (target - y0) * (x1 - x0) / (y1 - y0)))


def peak_depth_mm(depths_mm, idd) -> float:
    """Depth (mm) of the IDD maximum, refined by a parabola through the top three samples."""
    depths_mm = np.asarray(depths_mm, dtype=float)
    idd = np.asarray(idd, dtype=float)
    i = int(np.argmax(idd))
    if 0 < i < len(idd) - 1:
        y0, y1, y2 = idd[i - 1 : i + 2]
        denom = y0 - 2 * y1 + y2
        if denom != 0 and depths_mm[i + 1] - depths_mm[i] == depths_mm[i] - depths_mm[i - 1]:
            shift = 0.5 * (y0 - y2) / denom
            return float(depths_mm[i] + shift * (depths_mm[i + 1] - depths_mm[i]))
    return float(depths_mm[i])


def _depth_samples_mm(range_mm: float) -> np.ndarray:
    """Depth samples: 2 mm in the plateau, 0.2 mm around the peak, up to 25 mm beyond."""
    fine_start = max(range_mm - 30.0, 0.0)
    plateau = np.arange(0.0, fine_start, 2.0)
    fine = np.arange(fine_start, range_mm + 10.0, 0.2)
    tail = np.arange(range_mm + 10.0, range_mm + 25.0, 1.0)
    return np.round(np.concatenate([plateau, fine, tail]), 3)


def build_analytical_machine(
    energies_mev,
    spot_sigma_at_isocentre_mm,
    *,
    name: str,
    sad_mm: float,
    nozzle_to_isocentre_mm: float,
    energy_spread_fraction: float = 0.008,
    focus_offsets_mm=(-300.0, 0.0, 300.0),
    spot_divergence_mrad: float = 1.5,
    source: str = "",
    tail_fraction: float = 0.1,
    gamma_nuclear: float = 0.6,
    nuclear_buildup_mm: float = 0.0,
) -> Machine:
    """Machine from the analytical models of this module.

    Parameters
    ----------
    energies_mev : array_like
        Nominal energies (ascending).
    spot_sigma_at_isocentre_mm : array_like
        Spot sigma in air at the isocentre, one per energy.
    name : str
        Machine name.
    sad_mm, nozzle_to_isocentre_mm : float
        Virtual source-axis distance and nozzle to isocentre distance.
    energy_spread_fraction : float
        Relative one-sigma energy spread.
    focus_offsets_mm : sequence of float
        Distances from the isocentre (along the beam) at which the spot size is tabulated.
    spot_divergence_mrad : float
        Angular spread that widens the spot in air away from the isocentre.
    source : str
        Provenance text stored with the data.
    tail_fraction, gamma_nuclear, nuclear_buildup_mm : float
        Depth-dose parameters of :func:`bortfeld_idd`.
    """
    energies = np.asarray(energies_mev, dtype=float)
    sig_iso = np.asarray(spot_sigma_at_isocentre_mm, dtype=float)
    depths, idds, sigmas = [], [], []
    peaks, r80s = [], []
    for e in energies:
        r0 = float(bragg_kleeman_range_mm(e))
        d = _depth_samples_mm(r0)
        idd = bortfeld_idd(
            d,
            e,
            energy_spread_fraction=energy_spread_fraction,
            tail_fraction=tail_fraction,
            gamma_nuclear=gamma_nuclear,
            nuclear_buildup_mm=nuclear_buildup_mm,
        )
        depths.append(d)
        idds.append(idd)
        sigmas.append(multiple_scattering_sigma_mm(d, e))
        peaks.append(peak_depth_mm(d, idd))
        r80s.append(distal_depth_mm(d, idd, 0.8))
    offsets = np.asarray(focus_offsets_mm, dtype=float)
    focus_sigma = np.sqrt(sig_iso[:, None] ** 2 + (spot_divergence_mrad * 1e-3 * offsets) ** 2)
    return Machine(
        name=name,
        energies_mev=energies,
        depths_mm=depths,
        idd=idds,
        sigma_mcs_mm=sigmas,
        peak_depth_mm=np.asarray(peaks),
        range_r80_mm=np.asarray(r80s),
        focus_distance_mm=sad_mm + offsets,
        focus_sigma_mm=focus_sigma,
        sad_mm=float(sad_mm),
        nozzle_to_isocentre_mm=float(nozzle_to_isocentre_mm),
        fit_air_offset_mm=0.0,
        source=source,
    )


def machine_to_dict(machine: Machine) -> dict:
    """Plain JSON-able dictionary of a machine (inverse of :func:`machine_from_dict`)."""

    def rnd(a, nd=6):
        return [float(f"{x:.{nd}g}") for x in np.asarray(a, dtype=float).ravel()]

    return {
        "name": machine.name,
        "source": machine.source,
        "units": {
            "energy": "MeV",
            "depth": "mm water",
            "idd": "MeV cm2 g-1 per proton",
            "sigma": "mm",
        },
        "sad_mm": machine.sad_mm,
        "nozzle_to_isocentre_mm": machine.nozzle_to_isocentre_mm,
        "fit_air_offset_mm": machine.fit_air_offset_mm,
        "focus_distance_mm": rnd(machine.focus_distance_mm),
        "meta": machine.meta,
        "energies": [
            {
                "energy_mev": float(machine.energies_mev[i]),
                "peak_depth_mm": float(machine.peak_depth_mm[i]),
                "range_r80_mm": float(machine.range_r80_mm[i]),
                "focus_sigma_mm": rnd(machine.focus_sigma_mm[i], 5),
                "depths_mm": rnd(machine.depths_mm[i], 6),
                "idd": rnd(machine.idd[i], 5),
                "sigma_mcs_mm": rnd(machine.sigma_mcs_mm[i], 4),
            }
            for i in range(machine.n_energies)
        ],
    }


def machine_from_dict(data: dict) -> Machine:
    """Machine from the dictionary written by :func:`machine_to_dict`."""
    rows = sorted(data["energies"], key=lambda r: r["energy_mev"])
    return Machine(
        name=data["name"],
        energies_mev=np.array([r["energy_mev"] for r in rows]),
        depths_mm=[np.asarray(r["depths_mm"], dtype=float) for r in rows],
        idd=[np.asarray(r["idd"], dtype=float) for r in rows],
        sigma_mcs_mm=[np.asarray(r["sigma_mcs_mm"], dtype=float) for r in rows],
        peak_depth_mm=np.array([r["peak_depth_mm"] for r in rows]),
        range_r80_mm=np.array([r["range_r80_mm"] for r in rows]),
        focus_distance_mm=np.asarray(data["focus_distance_mm"], dtype=float),
        focus_sigma_mm=np.array([r["focus_sigma_mm"] for r in rows], dtype=float),
        sad_mm=float(data["sad_mm"]),
        nozzle_to_isocentre_mm=float(data.get("nozzle_to_isocentre_mm", 0.0)),
        fit_air_offset_mm=float(data.get("fit_air_offset_mm", 0.0)),
        source=data.get("source", ""),
        meta=dict(data.get("meta", {})),
    )
