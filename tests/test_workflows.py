"""The CI workflows run what the docs say: the CPU job runs .ci/run on pushes and pull requests;
the GPU job checks the kernels (the opt-in Hopper ones included) before timing the gate."""

from __future__ import annotations

from pathlib import Path

import yaml

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"


def _steps(name: str) -> tuple[dict, str]:
    workflow = yaml.safe_load((WORKFLOWS / name).read_text())
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    return workflow, "\n".join(str(step.get("run", "")) for step in steps)


def test_the_cpu_workflow_runs_ci_on_pushes_and_pull_requests() -> None:
    workflow, commands = _steps("ci.yml")
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads `on` as True
    assert {"push", "pull_request"} <= set(triggers)
    assert ".ci/run" in commands


def test_the_gpu_workflow_checks_both_kernel_paths_before_the_gate() -> None:
    _workflow, commands = _steps("gpu-bench.yml")
    assert "tools/gpu_kernel_check.py" in commands
    assert "SCFA_HOPPER=1 python tools/gpu_hopper_check.py" in commands
    assert commands.index("gpu_hopper_check") < commands.index("scfa-bench check")
