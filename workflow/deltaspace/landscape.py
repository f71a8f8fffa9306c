"""The performance landscape (method.md, "Landscape"): every DET evaluated on a grid over the plane through
the DETs' points of one task in the shared subspace.

The DETs' points: a task the subspace was learned from has one per DET in points.csv (the down-projection of
its stage-1 delta); any other task has each DET's stage-3 intrinsic vector I*. The plane through them:
- three DETs (the paper's): the affine plane through the three points, p(u, v) = P1 + u (P2 - P1) + v (P3 - P1),
  so (u, v) are barycentric-like coordinates, weights (1 - u - v, u, v): P1, P2, P3 sit at (0, 0), (1, 0),
  (0, 1) and the grid spans [-margin, 1 + margin] on both axes;
- any other number of DETs, or three in a line: the best-fit plane through their mean (its first two
  principal directions), u and v scaled so that the points' bounding box in the plane is [0, 1]^2 and the
  grid spans [-margin, 1 + margin]; where the points span only a line (two DETs) the second direction is the
  coordinate axis most orthogonal to it, given the line's length, with the points at v = 0.5;
- every point the same (each DET kept stage 3's seeded start, which they share): the plane through it along
  the subspace's first two coordinate axes, as wide as the farthest training point (points.csv) lies from the
  origin, with the point at its centre (rule "axes").
Each DET m decodes a grid point p as theta = init_m + Up_m(p) and is scored on the first `dev_examples` dev
examples (grid_eval.stacked_scores). Its own-space score is its stage-1 solution scored the same way on the
same examples, so the region "every DET reaches `fraction` of its own-space score" compares like with like
(stage 1's full-dev score is kept beside it). The region's area is the share of grid points inside it times
the grid's area in the subspace's own (Euclidean) units.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .io import atomic_path, load_tensors, read_json, tensor_digest, write_json
from .paths import Landscape, OptimizeRun, OriginalRun, file_in
AREA_COLUMNS = ["task", "seed", "fraction", "area", "area_fraction", "grid_area", "points_inside", "grid_points",
                "plane_rule", "metric", "dev_examples", "source"]


# ---- the plane -----------------------------------------------------------------------------------------


@dataclass
class Plane:
    """p(u, v) = origin + u * axis_u + v * axis_v in the r-dimensional subspace, for (u, v) in the grid's box."""

    origin: torch.Tensor
    axis_u: torch.Tensor
    axis_v: torch.Tensor
    u_range: tuple[float, float]
    v_range: tuple[float, float]
    rule: str  # triangle | best_fit

    def at(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(n, r) subspace points of the plane coordinates u, v (each (n,))."""
        return self.origin + u[:, None] * self.axis_u + v[:, None] * self.axis_v

    def coordinates(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, 2) plane coordinates of (n, r) points (least squares) and each point's distance from the plane."""
        basis = torch.stack([self.axis_u, self.axis_v], dim=1)
        uv = torch.linalg.lstsq(basis, (points - self.origin).T).solution.T
        return uv, torch.linalg.vector_norm(points - self.at(uv[:, 0], uv[:, 1]), dim=1)

    @property
    def unit_area(self) -> float:
        """Area in the subspace of the unit square in (u, v): |axis_u x axis_v|."""
        gram = torch.stack([self.axis_u, self.axis_v]) @ torch.stack([self.axis_u, self.axis_v]).T
        return float(torch.linalg.det(gram).clamp_min(0).sqrt())

    @property
    def grid_area(self) -> float:
        return (self.u_range[1] - self.u_range[0]) * (self.v_range[1] - self.v_range[0]) * self.unit_area

    def orthonormal_xy(self, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates in an orthonormal frame of the plane (x along axis_u): what the figures draw, to scale."""
        a, b = self.axis_u.double(), self.axis_v.double()
        length = float(a.norm())
        along = float(a @ b) / length
        across = math.sqrt(max(float(b @ b) - along**2, 0.0))
        return u * length + v * along, v * across


def _second_direction(first: torch.Tensor) -> torch.Tensor:
    """The coordinate axis with the largest part orthogonal to `first`, that part normalised (deterministic)."""
    residual = torch.eye(first.numel(), dtype=first.dtype) - first[None, :] * first[:, None]
    best = int(residual.norm(dim=1).argmax())
    return residual[best] / residual[best].norm()


def _sign_fixed(direction: torch.Tensor) -> torch.Tensor:
    """SVD directions have arbitrary signs: make the largest entry positive, so reruns draw the same picture."""
    return direction if direction[direction.abs().argmax()] >= 0 else -direction


def plane_through(points: torch.Tensor, margin: float, tolerance: float = 1e-6, extent: float | None = None) -> Plane:
    """The grid's plane through (k, r) points (rules in the module's docstring); extent: the width of the plane
    around points that coincide (None: they are refused)."""
    points = points.double()
    k, r = points.shape
    if r < 2:
        raise ValueError("the landscape needs a subspace of at least 2 dimensions (decompose.intrinsic_dim >= 2)")
    if k < 2:
        raise ValueError("the landscape needs the points of at least 2 DETs")
    box = (-margin, 1.0 + margin)
    if k == 3:
        plane = Plane(points[0], points[1] - points[0], points[2] - points[0], box, box, "triangle")
        longest = max(float(plane.axis_u.norm()), float(plane.axis_v.norm()), float((points[2] - points[1]).norm()))
        if plane.unit_area > tolerance * longest**2:
            return plane
    centre = points.mean(0)
    _, singular, vh = torch.linalg.svd(points - centre, full_matrices=True)
    if singular[0] <= tolerance * max(1.0, float(points.abs().max())):
        if not extent:
            raise ValueError(f"the DETs' points coincide ({points[0].tolist()}); no plane runs through them")
        axes = torch.eye(r, dtype=points.dtype)[:2] * extent
        return Plane(centre - (axes[0] + axes[1]) / 2, axes[0], axes[1], box, box, "axes")
    first = _sign_fixed(vh[0])
    second = _sign_fixed(vh[1]) if len(singular) > 1 and singular[1] > tolerance * singular[0] else _second_direction(first)
    a, b = (points - centre) @ first, (points - centre) @ second
    span_a = float(a.max() - a.min())
    span_b = float(b.max() - b.min())
    low_b = float(b.min())
    if span_b <= tolerance * span_a:  # the points lie on a line: give the plane the line's extent across it
        span_b, low_b = span_a, float(b.mean()) - span_a / 2
    origin = centre + float(a.min()) * first + low_b * second
    return Plane(origin, first * span_a, second * span_b, box, box, "best_fit")


def grid_coordinates(plane: Plane, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(resolution^2,) u and v of the grid, row-major: v is the row, u the column."""
    u = torch.linspace(*plane.u_range, resolution, dtype=torch.float64)
    v = torch.linspace(*plane.v_range, resolution, dtype=torch.float64)
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    return uu.reshape(-1), vv.reshape(-1)


# ---- the region where every DET does well ------------------------------------------------------------


def region_map(grid: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """Per grid point (row, col, u, v): whether every DET reaches `fraction` of its own-space score there."""
    grid = grid.assign(reaches=grid["score"] >= fraction * grid["own_space"])
    inside = grid.groupby(["row", "col", "u", "v"], as_index=False)["reaches"].all()
    return inside.rename(columns={"reaches": "inside"})


def region_area(inside: pd.DataFrame, plane: Plane) -> dict:
    """The region's share of the grid points, and that share of the grid's area in subspace units."""
    share = float(inside["inside"].mean())
    return {"area": share * plane.grid_area, "area_fraction": share, "grid_area": plane.grid_area,
            "points_inside": int(inside["inside"].sum()), "grid_points": len(inside)}


# ---- inputs --------------------------------------------------------------------------------------------


def anchor_points(task: str, seed: int, dets: list[str], points_csv: str | Path, stage3: dict[str, Path]):
    """(source, {det: point}) of the task: points.csv where the subspace saw the task, else stage-3 I*."""
    from .sources import read_table
    from .subspace import point_columns

    table = read_table(points_csv, ["task", "seed", "det"], "subspace points table")
    rows = table[(table["task"] == task) & (table["seed"] == seed)]
    if not rows.empty:
        columns = point_columns(table)
        missing = sorted(set(dets) - set(rows["det"]))
        if missing:
            raise ValueError(f"{points_csv} has no point of DET(s) {missing} for task {task!r} seed {seed}")
        by_det = rows.set_index("det")
        return str(points_csv), {d: torch.tensor(by_det.loc[d, columns].to_numpy(dtype=float)) for d in dets}
    missing = sorted(set(dets) - set(stage3))
    if missing:
        raise ValueError(f"task {task!r} seed {seed} is not in {points_csv} (the subspace never saw it) and has no "
                         f"stage-3 run of DET(s) {missing}: list it in decompose.unseen_tasks, or pick a train task")
    return "stage 3", stage3_points(stage3)


def training_points_reach(points_csv: str | Path) -> float:
    """How far the farthest training point (points.csv: every training task through every DET) lies from the
    origin of the subspace: the width of a plane around coinciding stage-3 points."""
    from .sources import read_table
    from .subspace import point_columns

    table = read_table(points_csv, ["task", "seed", "det"], "subspace points table")
    return float(torch.tensor(table[point_columns(table)].to_numpy(dtype=float)).norm(dim=1).max())


def stage3_points(intrinsic_files: dict[str, Path]) -> dict[str, torch.Tensor]:
    """Each DET's optimize vector I* (from its intrinsic file, or its OptimizeRun folder)."""
    return {det: load_tensors(file_in(given, OptimizeRun, "intrinsic"))[0]["intrinsic"].double()
            for det, given in intrinsic_files.items()}


def own_space_solution(run: OriginalRun, init: torch.Tensor, det: str) -> tuple[torch.Tensor, dict]:
    """init + the stage-1 delta of a run (checked to be a delta from this init), and its metrics."""
    tensors, meta = load_tensors(run.delta)
    if meta.get("init_digest") not in (None, tensor_digest(init)):
        raise ValueError(f"{run.delta} was trained from another init of DET {det!r} than the subspace's; "
                         "rerun the stages before this one")
    return init + tensors["delta"].to(init), read_json(run.metrics, what="stage-1 metrics")


# ---- the stage -----------------------------------------------------------------------------------------

GENERATE_BATCH_SIZE = 32  # dev examples decoded together at one grid point (generate mode)



def landscape(task: str, seed: int, spec: dict, subspace_path: str | Path, points_csv: str | Path,
              original: dict, data, out, optimize: dict | None = None, threads: int | None = None, log=print) -> dict:
    """Writes the Landscape files `out` (or into that folder): grid, area, info, one heat map per DET and the
    region map (each PNG with a PDF twin). original: {det: OriginalRun or its folder}; optimize: {det: intrinsic
    file or OptimizeRun folder} (the points of a task the subspace never saw; empty for a training task)."""
    from .grid_eval import point_metrics, stacked_scores, tokenise_by_length
    from .job import load_task_splits, start_job
    from .subspace import load_subspace

    started = time.perf_counter()
    out, optimize = Landscape.of(out), optimize or {}
    settings = spec["landscape"]
    dets = list(spec["dets"])
    splits, task_info = load_task_splits(data, task)
    metric = task_info.get("primary_metric", "accuracy")
    dev = splits["dev"][: settings["dev_examples"]]
    subspace, inits, _ = load_subspace(subspace_path)
    job = start_job(spec, threads, init_digests={d: tensor_digest(vector) for d, vector in inits.items()},
                    source=subspace_path)
    device, precision = job.device, job.precision
    subspace = subspace.to(device)
    source, anchors = anchor_points(task, seed, dets, points_csv, optimize)
    plane = plane_through(torch.stack([anchors[d] for d in dets]), settings["margin"],
                          extent=training_points_reach(points_csv))
    u, v = grid_coordinates(plane, settings["resolution"])
    grid_points = plane.at(u, v).float().to(device)
    cap = None if settings["batch_points"] == "auto" else int(settings["batch_points"])
    log(f"[landscape] task={task} seed={seed} dets={dets} plane={plane.rule} grid={settings['resolution']}^2 "
        f"dev examples={len(dev)} device={device} precision={precision} points from {source}")

    form = job.task_format(task, task_info, splits["train"])
    frames, own = [], {}
    for det, model in job.models.items():
        det_started = time.perf_counter()
        init = job.inits[det]
        solution, stage1 = own_space_solution(OriginalRun.of(original[det]), init, det)
        own_full = stage1["dev"] if stage1.get("primary_metric", metric) == metric else float("nan")

        def decoded(start: int, stop: int, det=det, init=init) -> torch.Tensor:
            return init + subspace.decode(det, grid_points[start:stop])

        if form.scoring == "generate":
            # Greedy decoding has no batching rule over vectors: every grid point decodes the dev examples alone.
            batches = job.batches(dev, form, GENERATE_BATCH_SIZE)
            own[det] = job.score_vector(det, solution, batches)
            values = [job.score_vector(det, decoded(i, i + 1)[0], batches)[metric] for i in range(len(grid_points))]
        else:
            devset = tokenise_by_length(model.backbone, dev, form, device)
            own[det] = point_metrics(stacked_scores(model, solution[None], 1, devset, precision, device), devset,
                                     [metric])[0]
            scores = stacked_scores(model, decoded, len(grid_points), devset, precision, device, cap)
            values = [m[metric] for m in point_metrics(scores, devset, [metric])]
        frames.append(pd.DataFrame({
            "task": task, "seed": seed, "det": det, "row": np.repeat(np.arange(settings["resolution"]), settings["resolution"]),
            "col": np.tile(np.arange(settings["resolution"]), settings["resolution"]), "u": u.numpy(), "v": v.numpy(),
            **{f"i{k}": grid_points[:, k].cpu().numpy() for k in range(grid_points.shape[1])},
            "metric": metric, "score": values, "own_space": own[det][metric], "own_space_full_dev": own_full}))
        log(f"[landscape] {det}: {len(grid_points)} points in {time.perf_counter() - det_started:.1f} s; "
            f"own space {own[det][metric]:.4f} on these {len(dev)} examples ({own_full:.4f} on the full dev split)")
    grid = pd.concat(frames, ignore_index=True)
    grid["relative"] = grid["score"] / grid["own_space"]
    with atomic_path(out.grid) as tmp:
        grid.to_csv(tmp, index=False, float_format="%.6g")

    inside = region_map(grid, settings["fraction"])
    area = {"task": task, "seed": seed, "fraction": settings["fraction"], **region_area(inside, plane),
            "plane_rule": plane.rule, "metric": metric, "dev_examples": len(dev), "source": str(out.grid)}
    with atomic_path(out.area) as tmp:
        pd.DataFrame([area], columns=AREA_COLUMNS).to_csv(tmp, index=False, float_format="%.6g")

    stage3 = stage3_points(optimize)
    marks = Marks.of(plane, anchors, stage3)
    for det in dets:
        plot_heatmap(grid[grid["det"] == det], plane, marks, det, settings["fraction"], out.heatmap(det))
    plot_region(inside, plane, marks, area, out.region)
    info = {"task": task, "seed": seed, "plane": {"rule": plane.rule, "origin": plane.origin.tolist(),
                                                  "axis_u": plane.axis_u.tolist(), "axis_v": plane.axis_v.tolist(),
                                                  "u_range": plane.u_range, "v_range": plane.v_range},
            "points_source": source, "points": {d: p.tolist() for d, p in anchors.items()},
            "stage3": {d: p.tolist() for d, p in stage3.items()}, "own_space": own, "settings": settings,
            "device": str(device), "precision": precision, "seconds": round(time.perf_counter() - started, 2),
            **{k: area[k] for k in ("area", "area_fraction")}}
    write_json(out.info, info)
    log(f"[landscape] done: region where every DET reaches {settings['fraction']:.0%} of its own space: "
        f"{area['area_fraction']:.1%} of the grid ({area['area']:.4g} in subspace units) in {info['seconds']} s")
    return info


def landscape_area_table(areas: list[str | Path], out: str | Path) -> pd.DataFrame:
    """The landscape area table: every landscape's area row (area files, or Landscape folders)."""
    from .sources import read_table

    table = pd.concat([read_table(file_in(given, Landscape, "area"), AREA_COLUMNS, "landscape area") for given in areas],
                      ignore_index=True).sort_values(["task", "seed"], ignore_index=True)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return table


# ---- figures -------------------------------------------------------------------------------------------


@dataclass
class Marks:
    """The DETs' points and the stage-3 solutions, in the figures' orthonormal plane frame."""

    points: dict[str, tuple[float, float]]
    stage3: dict[str, tuple[float, float]]
    off_plane: dict[str, float]  # stage-3 solutions' distance from the plane (more than three DETs: not zero)
    axis_labels: tuple[str, str]

    @classmethod
    def of(cls, plane: Plane, anchors: dict[str, torch.Tensor], stage3: dict[str, torch.Tensor]) -> "Marks":
        def frame(points: dict[str, torch.Tensor]):
            if not points:
                return {}, {}
            uv, distance = plane.coordinates(torch.stack(list(points.values())).double())
            x, y = plane.orthonormal_xy(uv[:, 0].numpy(), uv[:, 1].numpy())
            return ({d: (float(a), float(b)) for d, a, b in zip(points, x, y)},
                    {d: float(e) for d, e in zip(points, distance)})

        anchor_xy, _ = frame(anchors)
        stage3_xy, off = frame(stage3)
        dets = list(anchors)
        labels = ((f"along {dets[0]} -> {dets[1]}", "across it, in the plane") if plane.rule == "triangle"
                  else ("first principal direction", "second direction"))
        return cls(anchor_xy, stage3_xy, off, tuple(f"{label} (subspace units)" for label in labels))

    def draw(self, ax) -> None:
        for k, (det, (x, y)) in enumerate(self.points.items()):
            ax.scatter([x], [y], s=60, marker="o", facecolor="white", edgecolor="black", zorder=4)
            ax.annotate(det, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9, zorder=5,
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.7, "linewidth": 0})
        if len(self.points) == 3:
            xs, ys = zip(*self.points.values())
            ax.plot([*xs, xs[0]], [*ys, ys[0]], color="black", alpha=0.6, linewidth=0.8, linestyle=":", zorder=3)
        if self.stage3:
            xs, ys = zip(*self.stage3.values())
            ax.scatter(xs, ys, s=90, marker="*", color="black", zorder=5, label="stage-3 solutions (I*)")
        ax.set_aspect("equal")
        ax.set_xlabel(self.axis_labels[0])
        ax.set_ylabel(self.axis_labels[1])


def _mesh(frame: pd.DataFrame, plane: Plane, column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    frame = frame.sort_values(["row", "col"])
    n = int(frame["row"].max()) + 1
    x, y = plane.orthonormal_xy(frame["u"].to_numpy(), frame["v"].to_numpy())
    return x.reshape(n, -1), y.reshape(n, -1), frame[column].to_numpy(dtype=float).reshape(n, -1)


def plane_figure(x: np.ndarray, y: np.ndarray, width: float):
    """A figure whose height follows the grid's aspect (the plot keeps equal axes), so a colorbar fits the plot."""
    from matplotlib.figure import Figure

    aspect = (np.nanmax(y) - np.nanmin(y)) / max(np.nanmax(x) - np.nanmin(x), 1e-12)
    return Figure(figsize=(width, float(np.clip(4.2 * aspect, 2.2, 6.0)) + 1.4), layout="constrained")


def plot_heatmap(frame: pd.DataFrame, plane: Plane, marks: Marks, det: str, fraction: float, png) -> list[Path]:
    from .figures import save_figure

    x, y, score = _mesh(frame, plane, "score")
    own = float(frame["own_space"].iloc[0])
    fig = plane_figure(x, y, width=5.6)
    ax = fig.subplots()
    image = ax.pcolormesh(x, y, score, shading="nearest", cmap="viridis", vmin=0.0, vmax=1.0)
    if np.nanmin(score) < fraction * own < np.nanmax(score):  # the DET's own threshold, where the grid crosses it
        ax.contour(x, y, score, levels=[fraction * own], colors="white", linewidths=1.0)
    marks.draw(ax)
    metric = frame["metric"].iloc[0]
    ax.set_title(f"{frame['task'].iloc[0]} (seed {frame['seed'].iloc[0]}): {det} decoded at every grid point\n"
                 f"dev {metric}; own space {own:.3f}, white line {fraction:.0%} of it", fontsize=9)
    if marks.stage3:
        ax.legend(loc="lower right", fontsize=7)
    fig.colorbar(image, ax=ax, label=f"dev {metric}")
    return save_figure(fig, png)


def plot_region(inside: pd.DataFrame, plane: Plane, marks: Marks, area: dict, png) -> list[Path]:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from .figures import save_figure

    x, y, region = _mesh(inside.assign(inside=inside["inside"].astype(float)), plane, "inside")
    fig = plane_figure(x, y, width=5.2)
    ax = fig.subplots()
    colors = ["#d9d9d9", "#2a9d8f"]
    ax.pcolormesh(x, y, region, shading="nearest", cmap=ListedColormap(colors), vmin=0, vmax=1)
    marks.draw(ax)
    ax.set_title(f"{area['task']} (seed {area['seed']}): where every DET reaches {area['fraction']:.0%} of its own "
                 f"space\narea {area['area']:.3g} (subspace units) = {area['area_fraction']:.1%} of the grid",
                 fontsize=9)
    inside_patch = Patch(color=colors[1], label=f"every DET >= {area['fraction']:.0%} of its own space")
    ax.legend(handles=[inside_patch, *ax.get_legend_handles_labels()[0]], loc="lower right", fontsize=7)
    return save_figure(fig, png)
