"""The wheel ships the product only: no stand-ins, no sandbox, nothing imported from the dev dependencies."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What only the demo and the tests use (pyproject's [dev] extra and the source tree's own test world).
DEV_ONLY = {"moto", "pytest", "hypothesis", "yaml", "mypy", "ruff", "sandbox", "tests", "benchmarks", "werkzeug"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a clean copy of the tracked files: a stale build/ folder in the checkout could slip old modules in.
    source = tmp_path_factory.mktemp("source") / "rollback-bot"
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True)
    for name in tracked.stdout.splitlines():
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    [built] = out.glob("rollback_bot-*.whl")
    return built


def test_the_wheel_holds_bot_and_handlers_and_no_stand_ins(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "bot",
        "handlers",
        f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info",
    }
    assert not [n for n in names if "sandbox" in n or "stand" in n.lower() or "/tests/" in n]
    assert "bot/store/migrations/versions/0001_release_0_1.py" in names  # the store's migrations do ship


def test_nothing_in_the_wheel_imports_a_dev_dependency(wheel: Path) -> None:
    offenders: dict[str, set[str]] = {}
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if not name.endswith(".py"):
                continue
            found = set()
            for node in ast.walk(ast.parse(archive.read(name))):
                if isinstance(node, ast.Import):
                    found |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found.add(node.module.split(".")[0])
            if found & DEV_ONLY:
                offenders[name] = found & DEV_ONLY
    assert offenders == {}


def test_the_installed_wheel_runs_and_says_where_the_demo_lives(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
    )
    # Only the installed copy and the runtime dependencies are importable: not this checkout's folders.
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONSAFEPATH": "1"}
    probe = "import bot, handlers; print(bot.__file__); print(handlers.__file__)"
    where = subprocess.run([sys.executable, "-P", "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(str(target)) for line in where.stdout.split()), where.stdout
    run = [sys.executable, "-P", "-c", "import sys; from bot.cli import main; sys.exit(main(sys.argv[1:]))"]
    helped = subprocess.run([*run, "--help"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert helped.returncode == 0 and "rollback-bot" in helped.stdout
    demo = subprocess.run([*run, "demo"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert demo.returncode == 2 and "make demo" in demo.stderr and "Traceback" not in demo.stderr
