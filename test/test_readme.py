"""The README documents every parameter, and CI runs the README's test command."""

from pathlib import Path

from depthvlm_ros.core.config import field_specs

ROOT = Path(__file__).resolve().parents[1]


def test_every_parameter_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    missing = [s.name for s in field_specs() if f"| `{s.name}` |" not in readme]
    assert not missing, f"README parameter table lacks: {missing}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "bash scripts/setup.sh && bash scripts/test.sh" in readme
    assert "bash scripts/setup.sh" in ci and "bash scripts/test.sh" in ci
