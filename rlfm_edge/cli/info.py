"""`rlfm-edge info`: what can run here (libraries, envs, agents, inference backends) and,
for what cannot, why. Never fails on a missing optional dependency: that is what it reports.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform

OPTIONAL_LIBRARIES = ("numpy", "torch", "onnxruntime", "tensorrt", "rclpy")


def library_version(module: str) -> tuple[str | None, str | None]:
    """(version, None) if ``module`` imports here, else (None, why not)."""
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any import failure is the answer
        return None, f"{type(exc).__name__}: {exc}"
    version = getattr(mod, "__version__", None)
    if version is None:
        from importlib import metadata

        dists = metadata.packages_distributions().get(module, [])
        try:
            version = metadata.version(dists[0]) if dists else "unknown version"
        except metadata.PackageNotFoundError:
            version = "unknown version"
    return str(version), None


def _section(fn) -> dict:
    """Run one probe; a failure becomes {"error": reason} so the rest still reports."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - info must report, not crash
        return {"error": f"{type(exc).__name__}: {exc}"}


def _envs() -> dict:
    from rlfm_edge import envs

    return {"names": envs.names()}


def _agents() -> dict:
    from rlfm_edge.agents import agent_names, unavailable_agents

    unavailable = unavailable_agents()
    return {"available": [a for a in agent_names() if a not in unavailable],
            "unavailable": unavailable}


def _backends() -> dict:
    try:
        from rlfm_edge.inference import available_backends
    except ImportError as exc:
        return {"error": f"rlfm_edge.inference not importable ({exc})"}
    return {"backends": available_backends()}


def collect() -> dict:
    """Everything `rlfm-edge info` reports, as a JSON-serialisable dict."""
    libraries = {"python": {"version": platform.python_version(), "unavailable": None}}
    for name in OPTIONAL_LIBRARIES:
        version, why = library_version(name)
        libraries[name] = {"version": version, "unavailable": why}
    return {"libraries": libraries, "envs": _section(_envs), "agents": _section(_agents),
            "inference": _section(_backends)}


def format_info(info: dict) -> str:
    lines = ["libraries:"]
    for name, lib in info["libraries"].items():
        lines.append(f"  {name:12s} {lib['version'] or 'unavailable: ' + lib['unavailable']}")
    envs = info["envs"]
    lines.append("envs: " + (", ".join(envs["names"]) if "names" in envs
                             else "unavailable: " + envs["error"]))
    agents = info["agents"]
    if "error" in agents:
        lines.append("agents: unavailable: " + agents["error"])
    else:
        lines.append("agents: " + ", ".join(agents["available"]))
        lines += [f"  {name}: unavailable: {why}" for name, why in agents["unavailable"].items()]
    inference = info["inference"]
    if "error" in inference:
        lines.append("inference backends: unavailable: " + inference["error"])
    else:
        from rlfm_edge.inference import format_backends

        lines += ["inference backends:", format_backends(inference["backends"])]
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    info = collect()
    print(json.dumps(info, indent=1) if args.json else format_info(info))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="what backends, envs and agents are available here",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)
