import numpy as np
import pytest

from shared.cli import parse_list, parse_reproduce_args
from shared.io import atomic_write_json
from shared.metrics import accuracy, mean_std
from shared.seeding import seed_everything


def test_accuracy_and_mean_std_match_hand_values():
    assert accuracy(np.array([1, 2, 3, 4]), np.array([1, 0, 3, 0])) == 0.5
    assert mean_std([1.0, 3.0]) == (2.0, 1.0, 2)  # population std, as np.std and the papers
    with pytest.raises(ValueError, match="shapes differ"):
        accuracy(np.zeros(2), np.zeros(3))


def test_seeding_repeats_numpy_and_torch():
    torch = pytest.importorskip("torch")
    a = (seed_everything(3).random(3), np.random.rand(2), torch.rand(2))
    b = (seed_everything(3).random(3), np.random.rand(2), torch.rand(2))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and torch.equal(a[2], b[2])


def test_atomic_write_json(tmp_path):
    path = atomic_write_json(tmp_path / "sub" / "x.json", {"a": 1})
    assert path.read_text() == '{\n  "a": 1\n}\n' and [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_cli_parsing_and_errors(tmp_path, capsys):
    (tmp_path / "configs").mkdir()
    for name in ("mini", "smoke"):
        (tmp_path / "configs" / f"{name}.yaml").write_text("")
    args = parse_reproduce_args(tmp_path, ["a", "b"], ["--seeds", "0,1", "--stages", "b", "--set", "x=1"])
    assert args.scale == "mini" and args.seeds == [0, 1] and args.stages == ["b"] and args.overrides == ["x=1"]
    assert args.command.endswith("--scale mini --seeds 0,1 --stages b --set x=1")
    assert parse_list("1 2,3", int) == [1, 2, 3] and parse_list("") is None
    with pytest.raises(SystemExit):
        parse_reproduce_args(tmp_path, ["a"], ["--scale", "huge"])
    assert "unknown scale 'huge'; valid: mini, smoke" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_reproduce_args(tmp_path, ["a"], ["--stages", "zzz"])
    assert "unknown stage(s) zzz; valid: a" in capsys.readouterr().err


def test_machine_summary_names_the_gpu_even_before_torch_is_used(monkeypatch):
    import types

    from shared import environment

    cuda = types.SimpleNamespace(
        is_available=lambda: True, device_count=lambda: 1, get_device_name=lambda i: "Fake H200"
    )
    monkeypatch.setitem(__import__("sys").modules, "torch", types.SimpleNamespace(cuda=cuda))
    assert environment.gpu_names() == ["Fake H200"]
    assert environment.machine_summary().startswith("1x Fake H200, ")


def test_git_commit_can_be_named_by_the_environment(monkeypatch):
    from shared import environment

    monkeypatch.setenv("REPRO_GIT_COMMIT", "abc123")
    assert environment.git_commit() == "abc123"


def test_progress_bars_are_silent_when_disabled(monkeypatch, capsys):
    from shared.progress import bars_enabled, progress

    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not bars_enabled()
    assert list(progress(range(3), desc="x")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_numpy_global_seed_is_scoped():
    from shared.seeding import numpy_global_seed

    np.random.seed(1)
    outside = np.random.rand()
    np.random.seed(1)
    with numpy_global_seed(7):
        inside = np.random.rand()
    assert np.random.rand() == outside  # the outer stream continues as if nothing ran
    with numpy_global_seed(7):
        assert np.random.rand() == inside


def test_child_malloc_env_reaches_children_and_is_restored(monkeypatch):
    import os
    import subprocess
    import sys

    from shared.environment import MALLOC_ENV, child_malloc_env

    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.setenv("MALLOC_TOP_PAD_", "123")
    probe = [sys.executable, "-c", "import os; print(os.environ.get('MALLOC_TRIM_THRESHOLD_'))"]
    with child_malloc_env():
        seen = subprocess.run(probe, capture_output=True, text=True).stdout.strip()
    assert seen == MALLOC_ENV["MALLOC_TRIM_THRESHOLD_"]
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ and os.environ["MALLOC_TOP_PAD_"] == "123"


def test_atomic_dir_replaces_on_success_and_leaves_nothing_on_failure(tmp_path):
    import pytest

    from shared.io import atomic_dir

    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "b.txt").write_text("2")
        raise RuntimeError("crash while writing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"] and not (target / "b.txt").exists()
    with atomic_dir(target) as tmp:
        (tmp / "c.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["c.txt"]


def test_logging_follows_sys_stderr_when_it_is_replaced(monkeypatch):
    import io
    import logging

    from shared.progress import setup_logging

    setup_logging()
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr("sys.stderr", first)
    logging.getLogger("shared.test").info("one")
    first.close()  # as pytest's capture does between tests
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("shared.test").info("two")
    assert "two" in second.getvalue() and "one" not in second.getvalue()


def test_git_commit_is_dirty_for_code_changes_not_for_published_results(tmp_path, monkeypatch):
    import subprocess

    from shared.environment import git_commit

    monkeypatch.delenv("REPRO_GIT_COMMIT", raising=False)

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True).stdout

    git("init", "-q")
    files = {"papers/p/model.py": "x = 1\n", "papers/p/results/mini/results.json": "{}\n", "papers/p/README.md": "a\n"}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    git("add", "-A")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    head = git("rev-parse", "HEAD").strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "papers/p/results/mini/results.json").write_text('{"a": 1}\n')
    (tmp_path / "papers/p/README.md").write_text("b\n")
    assert git_commit(tmp_path) == head  # what publishing writes
    (tmp_path / "papers/p/model.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == head + "+dirty"


def test_package_dir_finds_a_package_without_importing_it_and_none_when_absent():
    from pathlib import Path

    import shared
    from shared.io import package_dir

    assert package_dir("shared") == Path(shared.__file__).parent
    assert package_dir("no_such_package_here") is None
