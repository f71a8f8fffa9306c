"""How much of the method the fast tests guard: plant method-level mutations one at a time and see which the
fast tests catch.

    python tests/mutation_check.py            # every mutant; about 10 minutes on 2 cores
    python tests/mutation_check.py --list     # the mutants, without running anything
    python tests/mutation_check.py --only stage2_squared_distance tables_own_space_from_dev

Each mutant is a copy of this checkout (without results/ or .venv/) with one deliberate method error: a changed
loss term, sampling scheme, rescaling, selection rule or table column. The fast tests run on the copy
(`pytest -m "not slow" -x`, the method tests first) with the copy's package first on PYTHONPATH; a failing run
kills the mutant. Exit status 1 if any mutant survives.

Our own short list rather than mutmut or cosmic-ray: their operators mutate syntax (`+` to `-`, `<` to `<=`)
across every line, thousands of mutants of which few are the method errors that matter here, and each needs a
test run of tens of seconds on 2 cores. Not part of CI (it takes minutes); run it after changing a method module.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path("workflow/deltaspace")
# The method tests first, so a mutant usually dies within seconds; then the rest of the fast suite.
FIRST_TESTS = ["tests/test_method.py", "tests/test_selection_and_tables.py", "tests/test_subspace.py"]
# Not copied: outputs, caches and the data wheels (linked instead: hundreds of MB).
SKIPPED_IN_COPY = {".git", ".venv", "results", "resources", ".snakemake", ".pytest_cache", "__pycache__", ".deltaspace"}


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str  # relative to workflow/deltaspace
    edits: tuple[tuple[str, str], ...]  # (exact original text, replacement); each original occurs once
    what: str


MUTANTS = [
    # stage 2's objective
    Mutant("stage2_squared_distance", "subspace.py",
           (("torch.linalg.vector_norm(deltas[d] - self.decode(d, points[d]), dim=-1).mean()",
             "torch.linalg.vector_norm(deltas[d] - self.decode(d, points[d]), dim=-1).pow(2).mean()"),),
           "reconstruction term squared (the paper's is the plain L2 distance)"),
    Mutant("stage2_lambda_dropped", "decompose.py",
           (("return lam * reconstruction + task_loss, reconstruction, task_loss",
             "return reconstruction + task_loss, reconstruction, task_loss"),),
           "lambda no longer weights the reconstruction term"),
    Mutant("stage2_task_loss_at_own_point", "decompose.py",
           (("model.functional_loss(inits[det] + subspace.decode(det, mixed), batch)",
             "model.functional_loss(inits[det] + subspace.decode(det, points[det]), batch)"),),
           "task loss of each DET at its own point instead of the mixed point"),
    Mutant("mix_ignores_weights", "subspace.py",
           (("return sum(w * p for w, p in zip(weights, points.values()))",
             "return sum(points.values()) / len(points)"),),
           "the mixed point is the plain mean, whatever the drawn weights"),
    Mutant("down_projection_without_tanh", "subspace.py",
           (("return self.second(torch.tanh(self.first(delta)))", "return self.second(self.first(delta))"),),
           "down projection loses its tanh"),
    # mixing schemes
    Mutant("paper_mixing_reversed", "subspace.py",
           (("return torch.tensor(weights + [left])", "return torch.tensor([left] + weights)"),),
           "stick breaking hands alpha to the last DET instead of the first"),
    Mutant("paper_mixing_beta_unconditioned", "subspace.py",
           (("w = float(torch.rand((), generator=generator)) * left",
             "w = min(float(torch.rand((), generator=generator)), left)"),),
           "beta ~ U(0, 1) clipped, not U(0, 1 - alpha)"),
    Mutant("dirichlet_from_uniforms", "subspace.py",
           (("e = -torch.log(torch.rand(n, generator=generator).clamp_min(1e-12))",
             "e = torch.rand(n, generator=generator)"),),
           "normalised uniforms instead of a flat Dirichlet"),
    Mutant("mixed_dev_score_hardcodes_paper", "decompose.py",
           (("mixed = Subspace.mix(points, simplex_weights(len(points), scheme, generator).to(job.device))",
             'mixed = Subspace.mix(points, simplex_weights(len(points), "paper", generator).to(job.device))'),),
           "the checkpoint choice mixes with 'paper' whatever subspace.mixing says (the fixed bug)"),
    # the random-subspace baseline
    Mutant("random_dense_not_rescaled", "optimize.py",
           (("random.weight.copy_(weight * learned.weight.norm() / weight.norm())", "random.weight.copy_(weight)"),),
           "dense random baseline keeps N(0, 1) scale instead of the learned Frobenius norm"),
    Mutant("random_dense_is_learned", "optimize.py",
           (("weight = torch.randn(dim, rank, generator=generator)",
             "weight = learned.weight.detach().clone() + 0 * torch.randn(dim, rank, generator=generator)"),),
           "the 'random' dense baseline is the learned matrix itself"),
    Mutant("random_fastfood_not_rescaled", "projections.py",
           (("fresh.diagonal.mul_(frobenius_norm / fresh.frobenius_norm())", "pass"),),
           "Fastfood random baseline keeps its own scale"),
    # Hadamard and Fastfood
    Mutant("hadamard_not_sylvester", "projections.py",
           (("h = torch.cat([torch.cat([h, h], 1), torch.cat([h, -h], 1)], 0)",
             "h = torch.cat([torch.cat([h, h], 1), torch.cat([-h, h], 1)], 0)"),),
           "an orthogonal +-1 matrix, but not Sylvester's Hadamard"),
    Mutant("fastfood_unnormalised", "projections.py",
           (("return walsh_hadamard(x)[..., : self.dim] / math.sqrt(self.length)",
             "return walsh_hadamard(x)[..., : self.dim]"),),
           "Fastfood up direction drops its 1 / sqrt(L)"),
    # tables
    Mutant("tables_subspace_from_dev", "tables.py",
           (('"subspace": "test"', '"subspace": "dev"'),),
           "relative performance from the stage-3 dev score"),
    Mutant("tables_random_column_from_learned", "tables.py",
           (('table["random_relative"] = percent_of(table["random_subspace"], table["own_space"])',
             'table["random_relative"] = percent_of(table["subspace"], table["own_space"])'),),
           "random_relative computed from the learned subspace's score"),
    Mutant("tables_own_space_from_dev", "tables.py",
           (('table.rename(columns={"test": "own_space"})', 'table.rename(columns={"dev": "own_space"})'),),
           "own space is the stage-1 dev score"),
    Mutant("tables_transfer_over_source_own_space", "tables.py",
           (('own = _own_space(original_csv).rename(columns={"det": "target_det"})',
             'own = _own_space(original_csv).rename(columns={"det": "source_det"})'),
            ('table = table.merge(own, on=["task", "target_det", "seed"], how="left")',
             'table = table.merge(own, on=["task", "source_det", "seed"], how="left")')),
           "transfer relative to the source DET's own space"),
    Mutant("tables_inf_where_own_space_zero", "tables.py",
           (("return 100 * score / own_space.where(own_space != 0)", "return 100 * score / own_space"),),
           "division by a zero own-space score writes inf (the fixed bug)"),
    # checkpoint and lr selection
    Mutant("stage1_keeps_last", "original.py",
           (('if improves(dev[primary], None if state["best_dev"] is None else state["best_dev"][primary]):',
             "if True:"),),
           "stage 1 keeps the last checkpoint"),
    Mutant("stage1_tests_last_vector", "original.py",
           (('model.load_vector(state["best_vector"])', "pass"),),
           "stage 1 scores test at the last vector, not the kept one"),
    Mutant("stage1_delta_without_init", "original.py",
           (('delta = state["best_vector"] - init_vector', 'delta = state["best_vector"]'),),
           "the saved delta is theta, not theta - theta_init"),
    Mutant("stage2_keeps_last", "decompose.py",
           (('if improves(dev_score, state["best"]):', "if True:"),),
           "stage 2 keeps the last subspace"),
    Mutant("stage3_keeps_last", "intrinsic.py",
           (('if improves(dev, None if self.best is None else self.best["dev"]):', "if True:"),),
           "stage 3 keeps the last point"),
    Mutant("stage3_forgets_earlier_lrs", "optimize.py",
           (("        point = start_point(up.rank", "        selection.best = None\n        point = start_point(up.rank"),),
           "stage 3 keeps the best of the last lr only"),
    Mutant("stage3_batched_forgets_earlier_lrs", "intrinsic_batched.py",
           (("            for done, loss, score, point in evaluations[k]:",
             "            selection.best = None\n            for done, loss, score, point in evaluations[k]:"),),
           "batched stage 3 keeps the best of the last lr only"),
    Mutant("point_scored_without_init", "job.py",
           (("return self.inits[det] + up(point)", "return up(point)"),),
           "a subspace point is scored without theta_init (stage 3's dev choice, transfer)"),
]


def missing_originals(root: Path = REPO) -> list[str]:
    """Mutants whose original text no longer occurs exactly once (a refactor moved it): update MUTANTS."""
    problems = []
    for mutant in MUTANTS:
        path = root / PACKAGE / mutant.file
        text = path.read_text() if path.exists() else ""
        problems += [f"{mutant.name}: {PACKAGE / mutant.file} holds {original!r} {text.count(original)} times"
                     for original, _ in mutant.edits if text.count(original) != 1]
    return problems


def copy_checkout(target: Path) -> None:
    shutil.copytree(REPO, target, symlinks=True,
                    ignore=lambda folder, names: [n for n in names if n in SKIPPED_IN_COPY])
    if (REPO / "resources").exists():
        (target / "resources").symlink_to(REPO / "resources")


def apply(mutant: Mutant, root: Path) -> None:
    path = root / PACKAGE / mutant.file
    text = path.read_text()
    for original, replacement in mutant.edits:
        count = text.count(original)
        if count != 1:
            raise SystemExit(f"mutant {mutant.name}: {PACKAGE / mutant.file} holds its original text {count} times "
                             f"(expected once); update MUTANTS in {Path(__file__).name}:\n{original}")
        text = text.replace(original, replacement)
    path.write_text(text)


def run_tests(root: Path, timeout: float) -> tuple[bool, str]:
    """(killed, what killed it or why not)."""
    env = {**os.environ, "PYTHONPATH": f"{root / 'workflow'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    where = subprocess.run([sys.executable, "-c", "import deltaspace; print(deltaspace.__file__)"], cwd=root,
                           env=env, capture_output=True, text=True)
    if not where.stdout.strip().startswith(str(root)):
        raise SystemExit(f"the copy's package is not the one imported ({where.stdout.strip() or where.stderr})")
    # Files, not the folder: given a folder too, pytest runs in the folder's order and drops the files' order.
    # Not test_mutation_list.py: it fails on any mutant by design (the original text is gone), so it proves nothing.
    rest = sorted(str(p.relative_to(root)) for p in (root / "tests").glob("test_*.py")
                  if p.name != "test_mutation_list.py")
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-rf", "-m", "not slow", "-p", "no:cacheprovider",
               *FIRST_TESTS, *[t for t in rest if t not in FIRST_TESTS]]
    try:
        done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return True, f"timed out after {timeout:.0f} s"
    if done.returncode == 0:
        return False, "all fast tests passed"
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, flags=re.M)
    return True, failed[0] if failed else f"pytest exit {done.returncode}: {done.stdout.strip().splitlines()[-1:]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--check", action="store_true", help="check that every mutant still applies, and exit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these mutants")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant's test run")
    args = parser.parse_args(argv)
    names = {m.name for m in MUTANTS}
    unknown = sorted(set(args.only or []) - names)
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; --list shows them")
    chosen = [m for m in MUTANTS if not args.only or m.name in args.only]
    if args.check:
        problems = missing_originals()
        print("\n".join(problems) or f"all {len(MUTANTS)} mutants apply")
        return 1 if problems else 0
    if args.list:
        for m in chosen:
            print(f"{m.name:40s} {m.file:15s} {m.what}")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="deltaspace-mutants-") as scratch:
        for i, mutant in enumerate(chosen, 1):
            root = Path(scratch) / mutant.name
            copy_checkout(root)
            apply(mutant, root)
            started = time.perf_counter()
            killed, by = run_tests(root, args.timeout)
            seconds = time.perf_counter() - started
            results.append((mutant, killed, by, seconds))
            print(f"[{i}/{len(chosen)}] {mutant.name}: {'killed by ' + by if killed else 'SURVIVED'} "
                  f"({seconds:.0f} s)", flush=True)
            shutil.rmtree(root, ignore_errors=True)
    killed = sum(k for _, k, _, _ in results)
    print(f"\n{killed} of {len(results)} mutants killed\n")
    print("| mutant | module | what it plants | result |\n|---|---|---|---|")
    for mutant, was_killed, by, _ in results:
        print(f"| {mutant.name} | {mutant.file} | {mutant.what} | {'killed by `' + by + '`' if was_killed else '**survived**'} |")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
