"""The `lpds` command.

Each sub-command is declared here with argparse only (cheap to import: `lpds --help` never loads torch
or MuJoCo) and names the function that runs it as ``"module:function"``, imported when it is called.
A user mistake raises ``LpdsError`` and is printed as one line; anything else keeps its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from lpds_ros.errors import LpdsError


def _add_collect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="roll out a scripted demonstrator (or expert) and write an HDF5 demo file")
    p.add_argument("--task", required=True, help="task name, e.g. franka-lift")
    p.add_argument("--episodes", type=int, default=200, help="number of episodes to record")
    p.add_argument("--noise", type=float, default=0.1, help="std of the Gaussian noise added to the demonstrator's actions")
    p.add_argument("--out", required=True, help="output .hdf5 path")
    p.add_argument("--seed", type=int, default=0, help="first episode's reset seed (episode i uses seed + i)")
    p.add_argument("--successful-only", action="store_true", help="keep only the episodes that succeeded")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(handler="lpds_ros.data.collect:main")


def _add_pretrain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pretrain", help="behaviour-clone a diffusion or flow policy on demos (it is frozen afterwards)")
    p.add_argument("--task", required=True)
    p.add_argument("--demos", required=True, help="HDF5 demo file from `lpds collect`")
    p.add_argument("--backbone", choices=["diffusion", "flow"], default="diffusion")
    p.add_argument("--out", required=True, help="output folder (config.json + model.safetensors)")
    p.add_argument("--config", help="YAML with PolicyConfig/TrainConfig overrides")
    p.add_argument("--max-demos", type=int, help="use only the first N demos (limits coverage on purpose)")
    p.add_argument("--epochs", type=int, help="override the number of epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.set_defaults(handler="lpds_ros.policies.train:main")


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="roll out a policy and print success rate, return and episode length")
    p.add_argument("--task", required=True)
    p.add_argument("--policy", required=True, help="policy folder, e.g. models/franka-lift-diffusion")
    p.add_argument("--steering", help="steering checkpoint (LP-DS/DSRL); default: the base policy")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=8, help="parallel envs (in-process, batched decoding)")
    p.add_argument("--json", action="store_true", help="print one JSON object on the last line")
    p.set_defaults(handler="lpds_ros.evaluate:main")


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="evaluate the shipped base policy on franka-lift (the out-of-the-box check)")
    p.add_argument("--task", default="franka-lift")
    p.add_argument("--backbone", choices=["diffusion", "flow"], default="diffusion")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(handler="lpds_ros.evaluate:demo")


# One entry per sub-command, in the order `lpds --help` lists them.
COMMANDS = [_add_collect, _add_pretrain, _add_evaluate, _add_demo]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lpds", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = args.handler.split(":")
    try:
        handler = getattr(importlib.import_module(module_name), func_name)
        return int(handler(args) or 0)
    except LpdsError as exc:
        print(f"lpds {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lpds {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
