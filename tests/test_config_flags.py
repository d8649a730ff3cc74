"""Boolean settings given on a real bundle command line reach the code as bools, for every workflow."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stbv_monai.config import boolean_ids, parse_flag
from stbv_monai.errors import InputError

from mlflow_utils import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = {
    "train": ["bundle/configs/train.yaml"],
    "multi_gpu_train": ["bundle/configs/train.yaml", "bundle/configs/multi_gpu_train.yaml"],
    "evaluate": ["bundle/configs/evaluate.yaml"],
    "inference": ["bundle/configs/inference.yaml"],
}
WORDS = ("true", "false", "1", "0", "True", "off")


def _ids_in(files: list[str]) -> list[str]:
    """Boolean ids that these config files define (the configs' own literals)."""
    import yaml

    from stbv_monai.config import _bool_leaves

    found: set[str] = set()
    for f in files:
        found.update(_bool_leaves(yaml.safe_load((REPO_ROOT / f).read_text())))
    return sorted(found)


def _bundle(files: list[str], *args: str) -> subprocess.CompletedProcess:
    config = "[" + ",".join(f"'{f}'" for f in files) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "probe", "--config_file", config, *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if any("multi_gpu" in f for f in files):  # one process of a torchrun group
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS))
def test_every_boolean_id_arrives_as_a_bool(workflow, tmp_path):
    files = WORKFLOWS[workflow]
    ids = _ids_in(files)
    assert ids and set(ids) <= boolean_ids()
    given = {name: WORDS[i % len(WORDS)] for i, name in enumerate(ids)}
    probe = "$print('PROBE ' + repr({%s}))" % ", ".join(f"'{n}': @{n}" for n in ids)
    args = [a for name, word in given.items() for a in (f"--{name}", word)]
    done = _bundle(files, *args, "--probe", probe, "--output_dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("PROBE "))
    seen = ast.literal_eval(line[len("PROBE "):])
    for name, word in given.items():
        assert seen[name.replace('#', '::')] is parse_flag(word, name), (name, word, seen[name.replace('#', '::')])


def test_a_value_that_is_not_a_boolean_is_one_line(tmp_path):
    done = _bundle(WORKFLOWS["train"], "--resume", "flase", "--probe", "$print(@resume)",
                   "--output_dir", str(tmp_path / "out"))
    assert done.returncode != 0
    assert "--resume: expected true or false (or 1/0), got 'flase'" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_parse_flag_words():
    assert parse_flag("TRUE", "x") is True and parse_flag(0, "x") is False and parse_flag("no", "x") is False
    with pytest.raises(InputError, match="--x: expected true or false"):
        parse_flag(2, "x")
