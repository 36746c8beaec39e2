"""``protonpath plan``: a PBS plan from a CT series and its RT Structure Set.

Example::

    protonpath plan CT_DIR --target PTV --beams 0,90 --dose 60 --fractions 30 \\
        --oar "Rectum:50" --out plan_out

writes ``RTPLAN.dcm`` (RT Ion Plan), ``RTDOSE.dcm`` (RT Dose), ``dvh.png`` and ``summary.json``
in the output folder and prints the target and organ statistics.  ``CT_DIR`` may also be a
matRad ``.mat`` phantom (e.g. TG119).  Energy layers are spaced by the Bragg peak's width
(``--layer-spacing auto``, the default; see :func:`protonpath.planning.spots.select_energy_layers`)
or by a fixed number of mm (``--layer-spacing 5``).

With ``--scenarios 21`` (setup shifts ``--setup-mm``, range errors ``--range-pct``) the plan is
also evaluated in every scenario (worst-case goals printed, DVH bands in ``dvh_bands.png``,
``robust`` in ``summary.json``); ``--robust voxel_worst_case`` (or ``stochastic``,
``composite_worst_case``) optimises the target objective robustly, ``--oar-robust`` the organs',
and the settings and scenarios go into the RT Ion Plan's private block (see
:mod:`protonpath.planning.robust_export`).

``--deliverable`` makes a Proteus One plan (:mod:`protonpath.planning.deliverable`): the
prescription is in Gy(RBE) with the constant RBE 1.1, a range shifter is inserted for shallow
targets, every spot is 0 or within the MU limits, ``--reduce-layers`` prunes light energy layers;
it also writes ``RTDOSE_RBE.dcm`` (dose type EFFECTIVE, Gy(RBE)) and adds to the summary the
minimum-MU report, LET_d and the McNamara/Wedenberg RBE-weighted statistics.  The summary always
holds the delivery-time estimate per field and per fraction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer


def _parse_floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _parse_oars(items: list[str]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for item in items:
        name, _, limit = item.partition(":")
        out[name.strip()] = float(limit) if limit else None
    return out


def _load_images(source: Path):
    from protonpath.planning import dicom_export, dicom_io, matrad_io

    if source.is_file() and source.suffix == ".mat":
        phantom = matrad_io.load_matrad_phantom(source)
        return phantom.ct, phantom.structures, dicom_export.StudyContext()
    images = dicom_io.read_planning_folder(source)
    return images.ct, images.structures, images.context


def _dvh_png(dvhs, path: Path, prescription_gy: float, unit: str = "Gy") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for dvh in dvhs:
        ax.plot(dvh.dose_gy, 100 * dvh.volume_fraction, label=dvh.name)
    ax.axvline(prescription_gy, color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"Dose ({unit})")
    ax.set_ylabel("Volume (%)")
    ax.set_ylim(0, 102)
    ax.set_xlim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(loc="center right", fontsize=8)
    ax.set_title("Cumulative DVH")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plan_command(
    ct_dir: Annotated[
        Path,
        typer.Argument(
            help="Folder with the CT series and RT Structure Set (or a matRad .mat phantom)."
        ),
    ],
    target: Annotated[str, typer.Option("--target", help="Name of the target structure.")],
    beams: Annotated[
        str, typer.Option("--beams", help="Gantry angles in degrees, comma separated.")
    ] = "0",
    couch: Annotated[
        str, typer.Option("--couch", help="Couch angles in degrees, comma separated (default 0).")
    ] = "",
    dose: Annotated[
        float, typer.Option("--dose", help="Prescribed target dose in Gy (whole course).")
    ] = 2.0,
    fractions: Annotated[int, typer.Option("--fractions", help="Number of fractions.")] = 1,
    oar: Annotated[
        list[str] | None, typer.Option("--oar", help="Organ at risk NAME[:MAX_GY]; repeatable.")
    ] = None,
    mode: Annotated[str, typer.Option("--mode", help="multi (IMPT) or single (SFUD).")] = "multi",
    grid: Annotated[float, typer.Option("--grid", help="Dose grid spacing in mm.")] = 3.0,
    spot_spacing: Annotated[
        float, typer.Option("--spot-spacing", help="Lateral spot spacing in mm.")
    ] = 5.0,
    layer_spacing: Annotated[
        str,
        typer.Option(
            "--layer-spacing",
            help="Energy layer spacing: auto (each step upstream is the current layer's Bragg "
            "peak width at 80 %, W80, so shallow layers are closer than deep ones) or a fixed "
            "spacing in mm of water (1 to 20).",
        ),
    ] = "auto",
    iterations: Annotated[
        int, typer.Option("--iterations", help="Maximum optimiser iterations.")
    ] = 300,
    machine_file: Annotated[
        Path | None, typer.Option("--machine", help="Machine JSON (default: Proteus One-like).")
    ] = None,
    calibration_file: Annotated[
        Path | None, typer.Option("--calibration", help="HU to SPR CSV (hu,spr).")
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("plan_out"),
    scenarios: Annotated[
        str,
        typer.Option(
            "--scenarios",
            help="Uncertainty scenarios: nominal, shifts, ranges, combined (or 21), sampled:N.",
        ),
    ] = "nominal",
    setup_mm: Annotated[
        float, typer.Option("--setup-mm", help="Setup shift per patient axis (mm).")
    ] = 3.0,
    range_pct: Annotated[
        float, typer.Option("--range-pct", help="Relative range error (percent).")
    ] = 3.5,
    robust: Annotated[
        str,
        typer.Option(
            "--robust",
            help="Robustness of the target objective: none (evaluate only), stochastic, "
            "voxel_worst_case or composite_worst_case.",
        ),
    ] = "none",
    oar_robust: Annotated[
        str, typer.Option("--oar-robust", help="Robustness of the organ objectives.")
    ] = "nominal",
    robust_method: Annotated[
        str,
        typer.Option("--robust-method", help="lbfgsb_smooth_max or slsqp_epigraph."),
    ] = "lbfgsb_smooth_max",
    robust_iterations: Annotated[
        int, typer.Option("--robust-iterations", help="Robust optimiser iterations.")
    ] = 200,
    deliverable: Annotated[
        bool,
        typer.Option(
            "--deliverable/--no-deliverable",
            help="Proteus One plan: PSTAR machine (unless --machine), range shifter for shallow "
            "targets, minimum MU per spot, delivery time, LET and RBE (doses in Gy(RBE), "
            "constant RBE 1.1).",
        ),
    ] = False,
    reduce_layers: Annotated[
        float,
        typer.Option(
            "--reduce-layers",
            help="With --deliverable: prune energy layers lighter than this fraction of their "
            "field's mean layer weight (0: keep all).",
        ),
    ] = 0.0,
    lateral_model: Annotated[
        str | None,
        typer.Option(
            "--lateral-model",
            help="Lateral dose model of the spots: single (core Gaussian), halo (double Gaussian "
            "from the Proteus One data) or halo-depth (halo weight growing with depth; the "
            "model that agrees with MCsquare, bench/dose_accuracy.py). The halo models cost a "
            "second, wider dose matrix. Default: halo-depth with --deliverable, else single.",
        ),
    ] = None,
) -> None:
    """Plan a proton PBS treatment and write RT Ion Plan, RT Dose, a DVH plot and a summary."""
    # numba on OpenMP (numba's own work queue, the fallback, wakes its threads more slowly),
    # with OpenMP's default wait policy: the optimisers take fewer threads when other
    # processes keep CPUs busy (protonpath.planning.threads)
    import numba

    if numba.config.THREADING_LAYER == "default":
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "workqueue", "tbb"]
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from protonpath.planning import dicom_export, dicom_io, resources
    from protonpath.planning.dvh import Dvh
    from protonpath.planning.optimise import SQUARED_DEVIATION, SQUARED_OVERDOSE, Objective
    from protonpath.planning.pipeline import PlanSettings, plan_pbs, target_centre_mm
    from protonpath.planning.raytrace import Beam

    console = Console()
    gantries = _parse_floats(beams)
    couches = _parse_floats(couch) if couch else [0.0] * len(gantries)
    if len(couches) != len(gantries):
        raise typer.BadParameter("--couch needs one angle per beam")
    if mode not in ("multi", "single"):
        raise typer.BadParameter("--mode is multi or single")
    from protonpath.planning.spots import parse_layer_spacing

    try:
        layer_spacing_mm = parse_layer_spacing(layer_spacing)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--layer-spacing") from None
    from protonpath.planning.pipeline import LATERAL_MODELS

    if lateral_model is None:
        lateral_model = "halo-depth" if deliverable else "single"
    if lateral_model not in LATERAL_MODELS:
        raise typer.BadParameter(f"--lateral-model is one of {', '.join(LATERAL_MODELS)}")

    from protonpath.planning.robust import METHODS, ROBUSTNESS
    from protonpath.planning.scenarios import parse_scenarios

    try:
        scenario_set = parse_scenarios(scenarios, setup_mm, range_pct)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if robust != "none" and robust not in ROBUSTNESS:
        raise typer.BadParameter(f"--robust is none or one of {', '.join(ROBUSTNESS)}")
    if oar_robust not in ROBUSTNESS:
        raise typer.BadParameter(f"--oar-robust is one of {', '.join(ROBUSTNESS)}")
    if robust_method not in METHODS:
        raise typer.BadParameter(f"--robust-method is one of {', '.join(METHODS)}")
    if robust != "none" and len(scenario_set) == 1:
        raise typer.BadParameter("--robust needs --scenarios other than nominal")
    if robust != "none" and reduce_layers:
        raise typer.BadParameter("--reduce-layers is for nominal plans: not with --robust")

    with console.status("reading images"):
        ct, structures, ctx = _load_images(ct_dir)
    names = [s.name for s in structures]
    if target not in names:
        raise typer.BadParameter(f"no structure {target!r}; structures: {', '.join(names)}")
    oars = _parse_oars(oar or [])
    for name in oars:
        if name not in names:
            raise typer.BadParameter(f"no structure {name!r}; structures: {', '.join(names)}")

    if machine_file:
        machine = resources.load_machine_json(machine_file.read_text())
    elif deliverable:
        from protonpath.planning.proteus_one import build_proteus_one_machine

        machine = build_proteus_one_machine()
    else:
        machine = resources.load_default_machine()
    calibration = (
        resources.parse_calibration_csv(calibration_file.read_text())
        if calibration_file
        else resources.load_default_calibration()
    )
    per_fraction = dose / fractions
    if deliverable:
        # the prescription is in Gy(RBE) with the constant RBE: optimise the physical dose
        from protonpath.planning.let_rbe import CONSTANT_RBE

        per_fraction = per_fraction / CONSTANT_RBE
    objectives = [Objective(target, SQUARED_DEVIATION, per_fraction, 1000.0)]
    for name, limit in oars.items():
        limit_fx = (
            (limit / fractions) * (per_fraction * fractions / dose)
            if limit is not None
            else 0.5 * per_fraction
        )
        objectives.append(Objective(name, SQUARED_OVERDOSE, limit_fx, 100.0))
    target_structure = next(s for s in structures if s.name == target)
    if not target_structure.mask.any():
        raise typer.BadParameter(
            f"the target {target!r} has no voxel on the CT: its contours lie outside the CT's "
            f"{ct.grid.shape[0]} slice(s) or enclose no voxel centre",
            param_hint="--target",
        )
    iso = target_centre_mm(target_structure, ct.grid)
    beam_list = [Beam(g, c, iso) for g, c in zip(gantries, couches, strict=True)]
    shifter = None
    if deliverable:
        from protonpath.planning.deliverable import choose_range_shifter

        machine, shifter = choose_range_shifter(
            ct, calibration, beam_list, machine, target_structure
        )
    settings = PlanSettings(
        dose_grid_mm=grid,
        spot_spacing_mm=spot_spacing,
        layer_spacing_mm=layer_spacing_mm,
        mode=mode,
        max_iterations=iterations,
        lateral_model=lateral_model,
    )
    if robust != "none":
        # spots must reach where the target can move: margins widened by the setup shift
        # (laterally) and by the shift plus the range error at 10 cm (in depth)
        from dataclasses import replace

        settings = replace(
            settings,
            lateral_margin_mm=settings.lateral_margin_mm + scenario_set.setup_mm,
            proximal_margin_mm=settings.proximal_margin_mm
            + scenario_set.setup_mm
            + 100 * scenario_set.range_error,
            distal_margin_mm=settings.distal_margin_mm
            + scenario_set.setup_mm
            + 100 * scenario_set.range_error,
        )

    with Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bars:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bars.add_task(stage, total=total)
            bars.update(tasks[stage], completed=done, total=total)

        robust_result = None
        try:
            if robust != "none":
                from protonpath.cli.robust import robust_objectives
                from protonpath.planning.deliverability import minimum_weights_from_mu
                from protonpath.planning.robust_plan import RobustSettings, plan_robust

                robust_result = plan_robust(
                    ct,
                    structures,
                    beam_list,
                    machine,
                    calibration,
                    robust_objectives(objectives, target, robust, oar_robust),
                    target=target,
                    prescription_gy=per_fraction,
                    scenarios=scenario_set,
                    settings=settings,
                    robust_settings=RobustSettings(
                        method=robust_method, max_iterations=robust_iterations
                    ),
                    progress=progress,
                    # a deliverable robust plan gets its minimum MU on the robust objectives
                    spot_limits=minimum_weights_from_mu if deliverable else None,
                )
                result = robust_result.nominal
            else:
                result = plan_pbs(
                    ct,
                    structures,
                    beam_list,
                    machine,
                    calibration,
                    objectives,
                    target=target,
                    prescription_gy=per_fraction,
                    settings=settings,
                    progress=progress,
                )
        except ValueError as exc:
            console.print(f"[red]cannot plan:[/red] {exc}")
            raise typer.Exit(1) from None

    evaluation = None
    if robust_result is not None:
        # the plan written is the robust one; the nominal plan stays as the comparison
        nominal_evaluation = robust_result.nominal_evaluation
        evaluation = robust_result.evaluation
        result.weights = robust_result.weights
        result.dose_gy = robust_result.dose_gy
        result.statistics = robust_result.statistics
        result.dvhs = robust_result.dvhs
        result.timings_s = robust_result.timings_s
    elif len(scenario_set) > 1:
        from protonpath.cli.robust import evaluate_plan

        with console.status(f"evaluating {len(scenario_set)} scenarios"):
            evaluation = evaluate_plan(
                ct, calibration, result, machine, scenario_set, settings.cut_level, per_fraction
            )

    from protonpath.planning import deliverable as deliverable_plan
    from protonpath.planning.delivery_time import fraction_delivery_time

    if deliverable and robust_result is None:
        with console.status("minimum MU, layers and delivery time"):
            made = deliverable_plan.make_deliverable(
                result,
                objectives,
                per_fraction,
                layer_weight_fraction=reduce_layers or None,
            )
        result = made.plan
        delivery_report = made.summary()
    else:
        delivery_report = {
            "delivery_time": fraction_delivery_time(
                result.spots, result.weights, n_beams=len(beam_list)
            ).as_dict()
        }
        if deliverable:  # a robust plan's minimum MU was enforced by plan_robust's spot_limits
            delivery_report["minimum_mu"] = robust_result.deliverability.as_dict()
    rbe_factor = 1.0
    if deliverable:
        with console.status("LET and RBE"):
            let_rbe_eval = deliverable_plan.evaluate_let_rbe(
                result, ct, calibration, machine, prescription_gy=per_fraction
            )
        rbe_factor = 1.1

    out.mkdir(parents=True, exist_ok=True)
    total_dose = result.dose_gy * fractions
    sigma = machine.spot_sigma_in_air_mm(
        result.spots.energy_index, np.full(len(result.spots), machine.sad_mm)
    )
    plan_ds = dicom_export.rt_ion_plan_dataset(
        beam_list,
        result.spots,
        result.weights,
        machine,
        ctx,
        n_fractions=fractions,
        prescription_gy=dose,
        spot_sigma_mm=sigma,
        range_shifter=shifter,
    )
    robust_record = None
    if evaluation is not None:
        robust_record = {
            "robust": robust,
            "objectives": [
                {
                    "structure": o.structure,
                    "kind": o.kind,
                    "dose_gy": o.dose_gy,
                    "weight": o.weight,
                    "robustness": (robust if o.structure == target else oar_robust)
                    if robust != "none"
                    else "nominal",
                }
                for o in objectives
            ],
            "settings": robust_result.settings.to_dict() if robust_result else None,
            "fractions": fractions,
            "worst_case": evaluation.to_dict(fractions * rbe_factor)["worst_case"],
        }
        from protonpath.planning.robust_export import write_robust_settings

        write_robust_settings(plan_ds, scenario_set, robust_record)
    dose_ds = dicom_export.rt_dose_dataset(total_dose, result.dose_grid, ctx, plan=plan_ds)
    dicom_io.write_datasets([plan_ds], out, "RTPLAN")
    dicom_io.write_datasets([dose_ds], out, "RTDOSE")
    written = ["RTPLAN.dcm", "RTDOSE.dcm"]
    if deliverable:
        rbe_ds = dicom_export.rt_dose_dataset(
            total_dose * rbe_factor,
            result.dose_grid,
            ctx,
            plan=plan_ds,
            dose_type="EFFECTIVE",
            comment="Gy(RBE), constant RBE 1.1",
        )
        dicom_io.write_datasets([rbe_ds], out, "RTDOSE_RBE")
        written.append("RTDOSE_RBE.dcm")
    course_dvhs = [
        Dvh(d.name, d.dose_gy * fractions * rbe_factor, d.volume_fraction) for d in result.dvhs
    ]
    _dvh_png(course_dvhs, out / "dvh.png", dose, "Gy(RBE)" if deliverable else "Gy")

    from protonpath.planning.spots import layer_spacing_record

    stats = {}
    for s in result.structures:
        st = dict(result.statistics[s.name])
        for key in ("mean", "min", "max", "D98", "D95", "D50", "D2"):
            if key in st:
                st[key] = st[key] * fractions * rbe_factor
        stats[s.name] = st
    summary = {
        "target": target,
        "prescription_gy": dose,
        "fractions": fractions,
        "mode": mode,
        "machine": machine.name,
        "beams": [{"gantry_deg": b.gantry_deg, "couch_deg": b.couch_deg} for b in beam_list],
        "isocentre_mm": [float(v) for v in iso],
        "spots": len(result.spots),
        "energy_layers": int(
            len(
                {
                    (int(b), int(e))
                    for b, e in zip(result.spots.beam_index, result.spots.energy_index, strict=True)
                }
            )
        ),
        "dose_grid_mm": grid,
        "layer_spacing": layer_spacing_record(
            result.spots,
            machine,
            settings.layer_spacing_mm,
            settings.layer_spacing_factor,
            settings.min_layer_spacing_mm,
            settings.max_layer_spacing_mm,
        ),
        "optimiser": {
            "iterations": result.optimisation.iterations,
            "objective": result.optimisation.objective,
            "message": result.optimisation.message,
        },
        "timings_s": result.timings_s,
        "dose_unit": "Gy(RBE)" if deliverable else "Gy",
        "lateral_model": lateral_model,
        "structures": stats,
        **delivery_report,
    }
    if evaluation is not None:
        from protonpath.cli.robust import dvh_band_png

        # voxel-wise lowest and highest dose over the scenarios (targets and organs)
        for name, cube in (
            ("RTDOSE_MIN", evaluation.min_dose),
            ("RTDOSE_MAX", evaluation.max_dose),
        ):
            ds = dicom_export.rt_dose_dataset(
                cube * fractions * rbe_factor,
                result.dose_grid,
                ctx,
                plan=plan_ds,
                **(
                    {"dose_type": "EFFECTIVE", "comment": "Gy(RBE), constant RBE 1.1"}
                    if deliverable
                    else {}
                ),
            )
            ds.SeriesDescription = (
                f"voxel-wise {name[-3:].lower()} over {len(scenario_set)} scenarios"
            )
            dicom_io.write_datasets([ds], out, name)

        robust_summary = {**robust_record, **evaluation.to_dict(fractions * rbe_factor)}
        if robust_result is not None:
            robust_summary["optimiser"] = robust_result.optimisation.to_dict()
            robust_summary["memory"] = robust_result.matrices.memory
            robust_summary["nominal_plan_worst_case"] = nominal_evaluation.to_dict(
                fractions * rbe_factor
            )["worst_case"]
        summary["robust"] = robust_summary
        dvh_band_png(
            evaluation,
            out / "dvh_bands.png",
            fractions * rbe_factor,
            dose,
            "Gy(RBE)" if deliverable else "Gy",
        )
    if deliverable:
        summary["rbe_model"] = (
            "constant 1.1 (prescription); McNamara 2015, Wedenberg 2013 (evaluation)"
        )
        summary["range_shifter"] = (
            None
            if shifter is None
            else {
                "id": shifter.id,
                "water_equivalent_thickness_mm": shifter.water_equivalent_thickness_mm,
            }
        )
        summary["let_d_kev_um"] = let_rbe_eval["let_statistics"]
        summary["rbe_evaluation_gy_rbe"] = {
            model: {
                name: {
                    k: v * fractions
                    for k, v in st.items()
                    if k in ("mean", "D98", "D95", "D50", "D2", "max")
                }
                for name, st in by_structure.items()
            }
            for model, by_structure in let_rbe_eval["statistics"].items()
        }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))

    unit = summary["dose_unit"]
    n_delivered = int(np.count_nonzero(result.weights))
    table = Table(
        title=f"{target}: {dose:g} {unit} in {fractions} fraction(s), {n_delivered} spots"
    )
    for col in ("structure", "mean", "D98", "D95", "D2", "max", "V95"):
        table.add_column(col, justify="right" if col != "structure" else "left")
    empty = []
    for name, st in stats.items():
        if not st.get("voxels"):
            # a structure smaller than a dose voxel, or outside the dose grid: no statistics
            empty.append(name)
            table.add_row(name, *(["-"] * 5), "")
            continue
        v95 = f"{100 * st['V95']:.1f} %" if "V95" in st else ""
        table.add_row(name, *(f"{st[k]:.2f}" for k in ("mean", "D98", "D95", "D2", "max")), v95)
    console.print(table)
    if empty:
        console.print(
            f"no voxel on the {grid:g} mm dose grid (no statistics): {', '.join(empty)}; "
            "a finer --grid may resolve them"
        )
    if evaluation is not None:
        from protonpath.cli.robust import worst_case_table

        if robust_result is not None:
            console.print(
                worst_case_table(
                    nominal_evaluation,
                    fractions * rbe_factor,
                    "nominally optimised plan, worst case",
                )
            )
            mem = robust_result.matrices.memory
            console.print(
                f"scenario matrices: {mem['scenarios']} x {mem['rows']} rows "
                f"(of {mem['full_rows']}), {mem['blocks_bytes'] / 2**20:.1f} MiB float32 blocks "
                f"({mem['csr_float64_bytes'] / 2**20:.1f} MiB as float64 CSR)"
            )
        label = "robust plan" if robust_result is not None else "plan"
        console.print(
            worst_case_table(
                evaluation,
                fractions * rbe_factor,
                f"{label}, worst case over {len(scenario_set)} scenarios",
            )
        )
        written += ["dvh_bands.png", "RTDOSE_MIN.dcm", "RTDOSE_MAX.dcm"]
    timing = summary["delivery_time"]
    console.print(
        f"delivery: {timing['energy_layers']} energy layers, {timing['spots']} spots, "
        f"{timing['total_s']:.0f} s per fraction (beam on {timing['beam_on_s']:.1f} s)"
    )
    spacing = summary["layer_spacing"]
    between = spacing["spacing_mm"]
    console.print(
        "energy layers: "
        + (
            f"automatic spacing, {spacing['factor']:g} x the Bragg peak's {spacing['width']}"
            if spacing["mode"] == "auto"
            else f"fixed spacing of {spacing['mm']:g} mm"
        )
        + (f" ({between[0]:g} to {between[1]:g} mm apart)" if between else "")
    )
    if "minimum_mu" in summary:
        mm = summary["minimum_mu"]
        console.print(
            f"minimum MU: {mm['spots_removed']} spots removed, objective "
            f"{mm['objective_before']:.4g} -> {mm['objective_after']:.4g}"
        )
    if "layer_reduction" in summary:
        lr = summary["layer_reduction"]
        console.print(
            f"layers {lr['layers_before']} -> {lr['layers_after']}, "
            f"{lr['time_saved_s']:.0f} s saved per fraction"
        )
    if deliverable and shifter is not None:
        console.print(
            f"range shifter {shifter.id} ({shifter.water_equivalent_thickness_mm:g} mm WET)"
        )
    console.print(f"wrote {out}/{', '.join(written)}, dvh.png, summary.json")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan_command)
