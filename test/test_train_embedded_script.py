"""scripts/train_embedded.sh chains its phases as the README says (a dry run that prints the
commands instead of running them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from depthvlm_ros.core.bench.synthetic import write_benchmark
from depthvlm_ros.core.train.config import parse_stages

ROOT = Path(__file__).resolve().parents[1]


def _phase_commands(tmp_path, **env_vars) -> dict[str, str]:
    """The ``depthvlm train`` command of each phase, keyed by its output folder's name."""
    run = tmp_path / "run"
    env = dict(os.environ, PYTHON="echo", WORLD="robot", **env_vars)
    out = subprocess.run(["bash", str(ROOT / "scripts" / "train_embedded.sh"), str(run)],
                         env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    commands = {}
    for line in out.splitlines():
        if "depthvlm_ros.cli train" in line:
            args = line.split()
            commands[Path(args[args.index("--out") + 1]).name] = line
    return commands


def test_six_phases_chain_from_each_best_and_grow_once(tmp_path):
    cmds = _phase_commands(tmp_path, PHASES="6")
    assert list(cmds) == ["run", "phase2", "phase3", "phase4", "phase5", "phase6"]
    assert "--init scratch" in cmds["run"]
    assert f"--init {tmp_path}/run/phase5/best" in cmds["phase6"]
    assert [name for name, c in cmds.items() if "--grow" in c] == ["phase4"]
    # The shipped recipe has no grounding losses.
    assert not any("--select-weight" in c or "--locate-weight" in c for c in cmds.values())


def test_select_at_turns_the_grounding_losses_on_from_that_phase(tmp_path):
    cmds = _phase_commands(tmp_path, PHASES="6", SELECT_AT="6")
    assert "--select-weight 1 --select-layer -3 --locate-weight 4" in cmds["phase6"]
    assert "--stages 0:900:3e-4,1:50:1.5e-4,2:150:8e-5" in cmds["phase6"]
    assert "--select-weight" not in cmds["phase5"]
    # Empty arguments keep the schedule without the losses (the measured control).
    control = _phase_commands(tmp_path, PHASES="6", SELECT_AT="6", SELECT_ARGS=" ")["phase6"]
    assert "--select-weight" not in control and "0:900:3e-4" in control


def test_phases_from_short_at_run_the_half_length_schedule(tmp_path):
    cmds = _phase_commands(tmp_path, PHASES="7")
    assert f"--init {tmp_path}/run/phase6/best" in cmds["phase7"]
    assert "--stages 0:900:3e-4,1:50:1.5e-4,2:150:8e-5" in cmds["phase7"]
    assert all("--stages 0:1900:3e-4,1:100:1.5e-4,2:200:8e-5" in cmds[f"phase{k}"]
               for k in range(3, 7))
    later = _phase_commands(tmp_path, PHASES="7", SHORT_AT="8")["phase7"]
    assert "--stages 0:1900:3e-4" in later


def test_from_a_model_folder_skips_phase_one_and_sizes_the_run(tmp_path):
    cmds = _phase_commands(tmp_path, PHASES="2", FROM="depthvlm_ros/embedded", BATCH="64",
                           WORKERS="12", DEVICE="cuda", EVAL_EVERY2="700", EVAL_IMAGES="30",
                           STAGES2="0:1800:3e-4,1:100:1.5e-4,2:300:8e-5")
    assert list(cmds) == ["phase2"]
    phase2 = cmds["phase2"]
    for option in ("--init depthvlm_ros/embedded", "--batch-size 64", "--workers 12",
                   "--device cuda", "--eval-every 700", "--eval-images 30",
                   "--stages 0:1800:3e-4,1:100:1.5e-4,2:300:8e-5"):
        assert option in phase2
    # The recipe's own sizes when nothing is set.
    recipe = _phase_commands(tmp_path, PHASES="2")["phase2"]
    for option in ("--batch-size 8", "--workers 1", "--device auto", "--eval-every 550",
                   "--eval-images 60"):
        assert option in recipe
    # FROM replaces phase 1, so it needs a continuation to run.
    env = dict(os.environ, PYTHON="echo", WORLD="robot", FROM="depthvlm_ros/embedded")
    done = subprocess.run(["bash", str(ROOT / "scripts" / "train_embedded.sh"),
                           str(tmp_path / "run")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2 and "needs PHASES >= 2" in done.stderr


def test_gpu_script_probes_sizes_and_runs_a_continuation(tmp_path, tiny_model_dir):
    """scripts/train_embedded_gpu.sh end to end on the CPU (DEVICE=cpu), with a tiny model:
    the probe's pace sizes the run's stages in the recipe's proportions, and the run leaves a
    best checkpoint with its evaluation."""
    data = tmp_path / "data"
    for name, n, seed, world in (("train", 2, 1, "robot"), ("heldout", 1, 7001, "robot"),
                                 ("heldout_v1", 1, 7001, "v1"), ("more", 1, 2, "robot")):
        write_benchmark(data / name, n, n, seed=seed, progress=False, workers=1, world=world)
    env = dict(os.environ, DEVICE="cpu", PYTHON=sys.executable, DATA=str(data),
               FROM=str(tiny_model_dir), BATCH="2", WORKERS="0", THREADS="1", BUDGET_S="4",
               PROBE_STEPS="10", EVALS="2")
    run = tmp_path / "run"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "train_embedded_gpu.sh"), str(run)],
                          env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "s a step at batch 2 on cpu" in done.stdout
    stages = parse_stages(done.stdout.split("run: stages ")[1].split(";")[0])
    assert [(s.stage, s.lr) for s in stages] == [(0, 3e-4), (1, 1.5e-4), (2, 8e-5)]
    total = sum(s.steps for s in stages)
    meta = json.loads((run / "phase2" / "final" / "depthvlm_meta.json").read_text())
    assert meta["steps"] == total
    assert "best checkpoint: step" in done.stdout and "delta1" in done.stdout
    rows = [json.loads(line) for line in (run / "phase2" / "train_log.jsonl").open()]
    assert sum(r["type"] == "eval" for r in rows) >= 2
