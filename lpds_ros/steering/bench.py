"""``lpds bench``: the comparison table, grown one cached run at a time (DESIGN §4).

Each (task, backbone, method, seed) is one ``train`` run whose result is cached as
``<results>/runs/<task>/<backbone>/<method>/seed<k>.json`` (the run folder ``seed<k>/`` beside it holds
its log, TensorBoard events and checkpoint, so a killed bench resumes its runs).  ``bench`` skips the runs
already done with the same budget and decoder, runs the missing ones in parallel (``ProcessPoolExecutor``
with one torch thread per worker, or an existing Ray cluster with ``--ray-address``), then aggregates
``<results>/<task>-<backbone>.json``, a learning-curve PNG and a markdown table per (task, backbone).

``--agent-config FILE`` sets method config fields for the whole bench, one section per method, e.g.
``{lpds: {actor_delay: 2000}}``; a cached run counts only if it ran with those values.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpds_ros.errors import LpdsError
from lpds_ros.utils import atomic_write_bytes, atomic_write_text

RESULT_KEYS = ("final_success_mean", "final_success_std", "final_return_mean", "final_return_std",
               "entropy", "entropy_ratio", "deviation", "curve")
"""Keys every method entry of an aggregate result has (the LP-DS issue's schema, plus entropy_ratio)."""


@dataclass(frozen=True)
class RunSpec:
    task: str
    backbone: str
    method: str
    seed: int
    policy: str
    env_steps: int
    results: str
    options: tuple[tuple[str, Any], ...] = ()
    """Extra ``FinetuneConfig`` fields shared by every run of the bench (num_envs, utd, ...)."""
    agent: tuple[tuple[str, Any], ...] = ()
    """This method's config fields from ``--agent-config`` (LPDSConfig, DSRLConfig, ...); empty: defaults."""

    @property
    def result_path(self) -> Path:
        return Path(self.results) / "runs" / self.task / self.backbone / self.method / f"seed{self.seed}.json"

    @property
    def run_dir(self) -> Path:
        return self.result_path.with_suffix("")


def policy_sha256(policy_dir: str | Path) -> str | None:
    from lpds_ros.utils import sha256_file

    path = Path(policy_dir) / "model.safetensors"
    return sha256_file(path) if path.is_file() else None


_NOT_RUN = ("not run", "unreadable result")

EXPERIMENT_FIELDS = ("num_envs", "utd", "learning_starts", "buffer_size", "eval_every", "eval_episodes", "eval_envs",
                     "eval_seed", "entropy_states", "entropy_latents", "knn_k")
"""``FinetuneConfig`` fields that change what a run measures: a cached run counts only if each equals this
bench's value (its flag, else the default).  Not here: the run's identity (task, method, seed, ...), δ
(compared on its own), and what cannot change a result (device, threads, checkpoints, progress bars)."""

TRAINING_FIELDS = ("utd", "learning_starts", "buffer_size")
"""The ``EXPERIMENT_FIELDS`` that only act through updates: a method that never learns (``base``) ignores them, so
its runs count for a bench at any value of them (the base cell of a ``--utd 2`` bench is the UTD-1 one)."""


def _finetune_default(key: str) -> Any:
    from lpds_ros.steering.config import FinetuneConfig

    return {f.name: f.default for f in dataclasses.fields(FinetuneConfig)}[key]


def cache_mismatch(spec: RunSpec, sha256: str | None) -> str | None:
    """Why the cached result of ``spec`` does not count; None when it does (same budget, decoder, settings)."""
    if not spec.result_path.is_file():
        return _NOT_RUN[0]
    try:
        result = json.loads(spec.result_path.read_text())
    except json.JSONDecodeError:
        return _NOT_RUN[1]
    if result.get("budget") != spec.env_steps:
        return f"budget {result.get('budget')}"
    if sha256 is not None and result.get("decoder_sha256") != sha256:
        return "another decoder"
    # A cell run with other settings (utd, δ, ...) is a different experiment, whether this bench gives them or
    # leaves them at their defaults; the device is not, and δ only matters to the methods that resolved one
    # (LP-DS records the δ it ran under; without --delta that is the task's).
    ran = result.get("finetune_config", {})
    given = dict(spec.options)
    from lpds_ros.steering.registry import get_method

    learns = get_method(spec.method).learns
    for key in EXPERIMENT_FIELDS:  # the bench's other flags are δ (below), the device and checkpoint_every
        if key in TRAINING_FIELDS and not learns:
            continue
        want = given[key] if key in given else _finetune_default(key)
        if key in ran and ran[key] != want:
            return f"{key} {ran[key]!r}"
    if result.get("delta") is not None:
        from lpds_ros.steering.config import task_delta

        want = given.get("delta", task_delta(spec.task))
        if result["delta"] != want:
            return f"delta {result['delta']}"
    # so is one with other method config fields (runs from before --agent-config recorded none)
    overrides = result.get("agent_overrides", {})
    if overrides != dict(spec.agent):
        return f"agent config {overrides or 'defaults'}"
    return None


def is_done(spec: RunSpec, sha256: str | None) -> bool:
    return cache_mismatch(spec, sha256) is None


def run_one(spec: RunSpec) -> str:
    """Run (or resume) one cell and cache its result; returns the result path.  Runs in a worker process."""
    import torch

    from lpds_ros.config import config_from_dict
    from lpds_ros.steering.config import FinetuneConfig
    from lpds_ros.steering.loop import train
    from lpds_ros.steering.registry import get_method

    torch.set_num_threads(1)
    config = FinetuneConfig(task=spec.task, policy=spec.policy, method=spec.method, seed=spec.seed,
                            env_steps=spec.env_steps, out=str(spec.run_dir), progress=False, torch_threads=1,
                            **dict(spec.options))
    agent_config = config_from_dict(get_method(spec.method).config_class, dict(spec.agent)) if spec.agent else None
    result = train(config, agent_config, resume=True)
    result["backbone"] = spec.backbone
    result["agent_overrides"] = dict(spec.agent)
    atomic_write_text(spec.result_path, json.dumps(result, indent=2) + "\n")
    return str(spec.result_path)


def run_missing(specs: list[RunSpec], jobs: int, ray_address: str | None = None, progress: bool = True) -> list[str]:
    """Run ``specs`` with ``jobs`` workers (in-process when jobs == 1); returns the failures' messages."""
    from tqdm import tqdm

    failures: list[str] = []
    bar = tqdm(total=len(specs), desc="bench runs", unit="run", disable=not progress)
    if not specs:
        bar.close()
        return failures
    if ray_address:
        failures = _run_on_ray(specs, ray_address, bar)
    elif jobs == 1:
        for spec in specs:
            try:
                run_one(spec)
            except Exception as exc:  # noqa: BLE001 - report and go on with the other cells
                failures.append(f"{spec.result_path}: {exc.__class__.__name__}: {exc}")
            bar.update(1)
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        # CUDA cannot be used in a forked child: spawn the workers when the runs go to a GPU.
        on_gpu = any(dict(spec.options).get("device", "cpu").startswith("cuda") for spec in specs)
        context = multiprocessing.get_context("spawn") if on_gpu else None
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(run_one, spec): spec for spec in specs}
            for future in as_completed(futures):
                try:
                    future.result()
                except Exception as exc:  # noqa: BLE001
                    failures.append(f"{futures[future].result_path}: {exc.__class__.__name__}: {exc}")
                bar.update(1)
    bar.close()
    return failures


def _run_on_ray(specs: list[RunSpec], address: str, bar) -> list[str]:
    try:
        import ray
    except ImportError:
        raise LpdsError("--ray-address needs the optional `ray` extra: pip install .[ray]") from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address=address, include_dashboard=False, ignore_reinit_error=True)
    remote = ray.remote(num_cpus=1, max_retries=1)(run_one)
    refs = {remote.remote(spec): spec for spec in specs}
    failures = []
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        try:
            ray.get(done[0])
        except Exception as exc:  # noqa: BLE001
            failures.append(f"{refs[done[0]].result_path}: {exc}")
        bar.update(1)
    return failures


# --------------------------------------------------------------------------------------- aggregate
CURVE_KEYS = ("success", "return", "success_mean_latent", "return_mean_latent", "deviation", "deviation_probe",
              "alpha", "temperature", "entropy_ratio", "entropy_ratio_chunk")


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not values:
        return None, None
    return float(np.mean(values)), float(np.std(values))


def aggregate_method(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's entry: final metrics mean ± std over seeds, and the mean ± std curve."""
    finals = [r["final"] for r in results]
    entry: dict[str, Any] = {"seeds": sorted(r["seed"] for r in results)}
    for key in ("success", "return", "success_mean_latent", "return_mean_latent"):
        entry[f"final_{key}_mean"], entry[f"final_{key}_std"] = _mean_std([f[key] for f in finals])
    for key in ("entropy", "entropy_chunk", "entropy_ratio", "entropy_ratio_chunk", "deviation", "deviation_probe",
                "alpha", "temperature", "entropy_base"):
        entry[key], entry[f"{key}_std"] = _mean_std([f.get(key) for f in finals])
    # Curves: evaluations happen at the same env-step marks in every seed; align on the shortest.
    length = min(len(r["curve"]) for r in results)
    curve: dict[str, list] = {"env_steps": [int(np.mean([r["curve"][i]["env_steps"] for r in results]))
                                            for i in range(length)]}
    for key in CURVE_KEYS:
        means, stds = zip(*(_mean_std([r["curve"][i].get(key) for r in results]) for i in range(length)))
        curve[f"{key}_mean"], curve[f"{key}_std"] = list(means), list(stds)
    entry["curve"] = curve
    return entry


def aggregate(task: str, backbone: str, methods: list[str], results_dir: str | Path) -> dict[str, Any] | None:
    """Read every cached run of (task, backbone) for ``methods`` and build the aggregate document."""
    root = Path(results_dir) / "runs" / task / backbone
    per_method: dict[str, list[dict[str, Any]]] = {}
    for method in methods:
        files = sorted((root / method).glob("seed*.json"))
        runs = [json.loads(p.read_text()) for p in files]
        if runs:
            per_method[method] = runs
    if not per_method:
        return None
    for method, runs in per_method.items():
        variants = sorted({json.dumps(r.get("agent_overrides", {}), sort_keys=True) for r in runs})
        if len(variants) > 1:
            raise LpdsError(f"{root / method}: its runs used different --agent-config values ({', '.join(variants)}); "
                            "keep one experiment per --results folder")
    any_run = next(iter(per_method.values()))[0]
    budgets = sorted({r["budget"] for runs in per_method.values() for r in runs})
    deltas = [r["delta"] for runs in per_method.values() for r in runs if r.get("delta") is not None]  # the LP-DS family
    delta = deltas[0] if deltas else None
    fc = any_run["finetune_config"]
    return {
        "task": task, "backbone": backbone,
        "env_steps": budgets[0] if len(budgets) == 1 else budgets,
        "seeds": sorted({r["seed"] for runs in per_method.values() for r in runs}),
        "delta": delta, "delta_per_dim": delta / any_run["latent_dim"] if delta is not None else None,
        "budget": {"env_steps": budgets[0] if len(budgets) == 1 else budgets, "num_envs": fc["num_envs"],
                   "utd": fc["utd"], "learning_starts": fc["learning_starts"], "eval_episodes": fc["eval_episodes"],
                   "eval_every": fc["eval_every"], "entropy_latents": fc["entropy_latents"],
                   "entropy_states": fc["entropy_states"]},
        "decoder_sha256": any_run.get("decoder_sha256"),
        "measured_on": sorted({r.get("machine") or "unrecorded" for runs in per_method.values() for r in runs}),
        "methods": {m: aggregate_method(runs) for m, runs in per_method.items()},
        "agent_overrides": {m: runs[0]["agent_overrides"] for m, runs in per_method.items() if runs[0].get("agent_overrides")},
    }


def validate_aggregate(doc: dict[str, Any]) -> None:
    """Raise ``ValueError`` unless ``doc`` has the result schema (task, env_steps, seeds, methods{...})."""
    for key in ("task", "env_steps", "seeds", "methods"):
        if key not in doc:
            raise ValueError(f"aggregate result lacks {key!r}")
    from lpds_ros.steering.registry import METHODS

    for name, entry in doc["methods"].items():
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r} in the aggregate result")
        missing = [k for k in RESULT_KEYS if k not in entry]
        if missing:
            raise ValueError(f"method {name!r} lacks {missing}")
        if not {"env_steps", "success_mean", "success_std", "return_mean", "return_std"} <= set(entry["curve"]):
            raise ValueError(f"method {name!r}: curve lacks env_steps/success/return mean and std")


def _fmt(mean: float | None, std: float | None, pct: bool = False, digits: int = 3) -> str:
    if mean is None:
        return "–"
    if pct:
        return f"{100 * mean:.1f} ± {100 * (std or 0):.1f}"
    return f"{mean:.{digits}g} ± {(std or 0):.{digits}g}"


def markdown_table(doc: dict[str, Any]) -> str:
    delta = doc.get("delta")
    head = (f"### {doc['task']} / {doc['backbone']}: {doc['env_steps']} env steps, seeds {doc['seeds']}"
            + (f", δ = {delta:g} (δ/(H·d) = {doc['delta_per_dim']:.4g})" if delta is not None else "") + "\n\n")
    rows = ["| method | success % | return | success % (mean latent) | entropy ratio (first / chunk) | deviation | α |",
            "|---|---|---|---|---|---|---|"]
    for name, e in doc["methods"].items():
        ratio = "–" if e["entropy_ratio"] is None else f"{e['entropy_ratio']:.3f} / {e['entropy_ratio_chunk']:.3f}"
        rows.append(f"| {name} (n={len(e['seeds'])}) | {_fmt(e['final_success_mean'], e['final_success_std'], True)} | "
                    f"{_fmt(e['final_return_mean'], e['final_return_std'])} | "
                    f"{_fmt(e['final_success_mean_latent_mean'], e['final_success_mean_latent_std'], True)} | {ratio} | "
                    f"{_fmt(e['deviation'], e['deviation_std'])} | {_fmt(e['alpha'], e['alpha_std'])} |")
    notes = ("\n\nsuccess/return: stochastic policy (fresh ε), mean ± std over seeds of the last evaluation "
             f"({doc['budget']['eval_episodes']} episodes each).  deviation: E‖Δ(s)‖² (LP-DS), E[2 KL(N(μ, σ²) ‖ N(0, I))] "
             "(lpds-gauss), E‖μ(s)‖² of the mean latent or residual (SAC baselines).  entropy ratio: exp((H − H_base)/D), k-NN on the first executed "
             "action (D = d) / the chunk (D = H·d).  deviation is measured on replayed states, where the trust region "
             "is enforced.\n")
    return head + "\n".join(rows) + notes


def plot_curves(doc: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("success", "success rate"), ("return", "return"), ("deviation", "deviation E‖Δ‖² / E‖μ‖²"),
              ("alpha", "α (LP-DS)"), ("entropy_ratio", "entropy ratio (first action)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    colors = {name: f"C{i}" for i, name in enumerate(doc["methods"])}  # one colour per method in every panel
    counts = {name: len(entry["seeds"]) for name, entry in doc["methods"].items()}
    uneven = len(set(counts.values())) > 1  # a partial cell: say each method's n, not the union's
    for ax, (key, label) in zip(axes, panels):
        for name, entry in doc["methods"].items():
            c = entry["curve"]
            x = np.asarray(c["env_steps"], dtype=float)
            mean = np.asarray([np.nan if v is None else v for v in c[f"{key}_mean"]], dtype=float)
            std = np.asarray([np.nan if v is None else v for v in c[f"{key}_std"]], dtype=float)
            if np.all(np.isnan(mean)):
                continue
            ax.plot(x, mean, label=f"{name} (n={counts[name]})" if uneven else name, color=colors[name])
            low, high = mean - std, mean + std
            if key != "return":  # success, ‖Δ‖², α and the entropy ratio cannot go below 0, nor success above 1
                low = np.maximum(low, 0.0)
                high = np.minimum(high, 1.0) if key == "success" else high
            ax.fill_between(x, low, high, alpha=0.2, color=colors[name])
        if key == "deviation" and doc.get("delta") is not None:
            ax.axhline(doc["delta"], color="k", linestyle="--", linewidth=0.8, label="δ")
        ax.set_xlabel("env steps")
        ax.set_title(label)
    axes[0].legend(fontsize=8)
    over = "seeds, n per method" if uneven else f"{len(doc['seeds'])} seeds"
    fig.suptitle(f"{doc['task']} / {doc['backbone']} (mean ± std over {over})")
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def write_outputs(doc: dict[str, Any], results_dir: str | Path) -> list[Path]:
    validate_aggregate(doc)
    stem = Path(results_dir) / f"{doc['task']}-{doc['backbone']}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(doc, indent=2) + "\n")
    atomic_write_text(stem.with_suffix(".md"), markdown_table(doc))
    plot_curves(doc, stem.with_suffix(".png"))
    return [stem.with_suffix(s) for s in (".json", ".md", ".png")]


# -------------------------------------------------------------------------------------------- CLI
def _split(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def load_agent_overrides(path: str | Path, methods: list[str]) -> dict[str, dict[str, Any]]:
    """``--agent-config``: a mapping {method: {field: value}}, each section checked against its method's config."""
    from lpds_ros.config import ConfigError, config_from_dict, read_config_file
    from lpds_ros.steering.registry import get_method, method_config

    data = read_config_file(path) or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{path}: expected one section per method, e.g. 'lpds: {{actor_delay: 2000}}'")
    unused = sorted(set(data) - set(methods))
    if unused:
        raise ConfigError(f"{path}: section(s) {unused} name no method of this bench ({', '.join(methods)})")
    for method, fields in data.items():
        where = f"{path} [{method}]"
        if "delta" in fields:
            raise ConfigError(f"{where}: set δ with --delta (it applies to every LP-DS run), not here")
        fixed = sorted(set(fields) & set(get_method(method).fixed))
        if fixed:
            raise ConfigError(f"{where}: {fixed} fixed by the method {method!r}")
        try:
            json.dumps(fields)  # runs record their overrides as JSON
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: values must be numbers, strings, booleans or lists of them") from None
        method_config(method, config_from_dict(get_method(method).config_class, fields, source=where))  # bad keys/values
    return data


def plan(args: argparse.Namespace) -> list[RunSpec]:
    from lpds_ros.steering.registry import get_method

    tasks, backbones, methods = _split(args.tasks), _split(args.backbones), _split(args.methods)
    for m in methods:
        get_method(m)
    overrides = load_agent_overrides(args.agent_config, methods) if getattr(args, "agent_config", None) else {}
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    options = {k: getattr(args, k) for k in ("num_envs", "utd", "delta", "learning_starts", "eval_every",
                                              "eval_episodes", "checkpoint_every", "entropy_states", "entropy_latents", "device")
               if getattr(args, k, None) is not None}
    specs = []
    for task in tasks:
        for backbone in backbones:
            policy = str(Path(args.policy_root) / f"{task}-{backbone}")
            if not Path(policy).is_dir():
                raise LpdsError(f"no base policy at {policy}; train it with `lpds pretrain` or pass --policy-root")
            for method in methods:
                for seed in seeds:
                    specs.append(RunSpec(task, backbone, method, seed, policy, args.steps, args.results,
                                         tuple(sorted(options.items())), tuple(sorted(overrides.get(method, {}).items()))))
    return specs


def main(args: argparse.Namespace) -> int:
    specs = plan(args)
    shas = {spec.policy: policy_sha256(spec.policy) for spec in specs}
    mismatch = {id(s): cache_mismatch(s, shas[s.policy]) for s in specs}  # each cached result read once
    todo = [s for s in specs if args.force or mismatch[id(s)] is not None]
    if args.force:
        cached = [s for s in todo if s.result_path.exists() or s.run_dir.exists()]
        if cached:  # a checkpoint left in place would only resume the old run to its end
            print(f"lpds bench: --force: discarding {len(cached)} cached run(s) to re-run them")
        for spec in cached:
            shutil.rmtree(spec.run_dir, ignore_errors=True)
            spec.result_path.unlink(missing_ok=True)
    else:
        from lpds_ros.steering.loop import CHECKPOINT_FILE

        clashes = []
        for spec in todo:
            reason = mismatch[id(spec)]
            if (spec.run_dir / CHECKPOINT_FILE).is_file() and reason not in _NOT_RUN and not reason.startswith("budget"):
                clashes.append(f"{spec.result_path} ({reason})")
        if clashes:
            raise LpdsError(f"{len(clashes)} cached run(s) ran with other settings, e.g. {clashes[0]}: use another "
                            "--results folder, or --force to discard and re-run them")
    print(f"lpds bench: {len(specs)} runs, {len(specs) - len(todo)} cached, {len(todo)} to run with {args.jobs} job(s)")
    failures = run_missing(todo, args.jobs, args.ray_address, progress=not args.no_progress)
    methods = _split(args.methods)
    for task in _split(args.tasks):
        for backbone in _split(args.backbones):
            doc = aggregate(task, backbone, methods, args.results)
            if doc is None:
                continue
            paths = write_outputs(doc, args.results)
            print(markdown_table(doc))
            print("wrote " + ", ".join(str(p) for p in paths))
    if failures:
        raise LpdsError(f"{len(failures)} run(s) failed: " + "; ".join(failures))
    return 0
