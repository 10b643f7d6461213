"""The test command itself (issue 15): `sh tests/run.sh` on a fresh machine.

Each test runs the real tests/run.sh of a copy of this work tree, with an empty cache, the way a
new contributor would: with a python3 that refuses global pip installs (PEP 668: an
EXTERNALLY-MANAGED marker in a scratch interpreter's stdlib dir), and from inside another
virtual environment. pip installs offline from the wheelhouse the outer run.sh keeps in its cache
(the tests never reach the network); npm is a stand-in, because the pinned agents are 1.8 GB.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from agents import in_ci
from conftest import REPO_ROOT

RUN_SH = REPO_ROOT / "tests" / "run.sh"
PINS = re.findall(r"(?m)^(?:AGENT_PINS=\")?([@a-z0-9/._-]+)@\$([A-Z_]+)\"?$", RUN_SH.read_text())
VERSIONS = dict(re.findall(r"(?m)^([A-Z_]+_VERSION)=(\S+)(?:\s+#.*)?$", RUN_SH.read_text()))

NPM_STANDIN = r"""#!/bin/sh
# npm stand-in: records its arguments, "installs" each pin, and talks like npm does.
echo "$*" >>"$NPM_LOG"
echo "npm warn deprecated inflight@1.0.6: This module is not supported" >&2
echo "npm notice New major version of npm available! 10.0.0 -> 11.0.0" >&2
prefix=
while [ $# -gt 0 ]; do
    case $1 in
        --prefix) prefix=$2; shift ;;
        -*) ;;
        *) name=${1%@*}; version=${1##*@}
           mkdir -p "$prefix/node_modules/$name"
           printf '{"name": "%s", "version": "%s"}\n' "$name" "$version" >"$prefix/node_modules/$name/package.json" ;;
    esac
    shift
done
echo "added 3 packages in 2s"
"""


def wheelhouse():
    cache = os.environ.get("FMAPI_DEV_CACHE")
    wheels = Path(cache) / "wheels" if cache else None
    if not wheels or not any(wheels.glob("pytest-*.whl")):
        message = "no wheelhouse of tests/run.sh (run the suite through sh tests/run.sh)"
        if in_ci():
            pytest.fail("CI=true: " + message, pytrace=False)
        pytest.skip(message)
    return wheels


def copy_of_work_tree(dest: Path) -> Path:
    """The work tree as a fresh clone has it (no caches, no build output, no git)."""
    shutil.copytree(REPO_ROOT, dest, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", ".pytest_cache", "dist", "build", ".venv", "*.pyc"))
    return dest


def scratch_python(root: Path) -> Path:
    """A python3 of its own prefix, whose stdlib dir has an EXTERNALLY-MANAGED marker.

    The interpreter binary is copied (a symlink would be resolved back to the real prefix);
    the stdlib is linked entry by entry; site-packages holds only pip, as on a distribution
    that ships pip but refuses global installs.
    """
    base = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    stdlib = sysconfig.get_paths()["stdlib"]
    purelib = sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})["purelib"]
    rel = os.path.relpath(stdlib, sys.base_prefix)
    if rel.startswith(".."):
        pytest.skip("this Python's stdlib is not under its prefix")
    (root / "bin").mkdir(parents=True)
    python = root / "bin" / "python3"
    shutil.copy2(base, python)
    lib = root / rel
    lib.mkdir(parents=True)
    for entry in os.listdir(stdlib):
        if entry not in ("site-packages", "dist-packages", "EXTERNALLY-MANAGED"):
            (lib / entry).symlink_to(os.path.join(stdlib, entry))
    (lib / "EXTERNALLY-MANAGED").write_text("[externally-managed]\nError=scratch interpreter of the tests: no global installs\n")
    site = lib / "site-packages"
    site.mkdir()
    if os.path.isdir(os.path.join(purelib, "pip")):
        (site / "pip").symlink_to(os.path.join(purelib, "pip"))
    r = subprocess.run([str(python), "-c", "import sys, venv; print(sys.prefix)"], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin"}, timeout=60)
    if r.returncode != 0 or r.stdout.strip() != str(root):
        pytest.skip("cannot make a scratch interpreter from %s: %s" % (base, r.stderr.strip()[-200:]))
    return python


def run(repo: Path, env: dict, *pytest_args, timeout=600):
    return subprocess.run(["sh", str(repo / "tests" / "run.sh"), "-p", "no:cacheprovider", *pytest_args],
                          cwd=str(repo), env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def fresh_env(tmp_path: Path, wheels: Path, path_dirs, **extra):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    keep = {k: v for k, v in os.environ.items()
            if k in ("LANG", "LC_ALL", "TMPDIR", "CI", "TERM", "PIP_CERT", "SSL_CERT_FILE")}
    env = dict(keep, HOME=str(home), PATH=os.pathsep.join([*map(str, path_dirs), "/usr/local/bin", "/usr/bin", "/bin"]),
               FMAPI_DEV_CACHE=str(tmp_path / "cache"), FMAPI_AGENTS_DIR=str(tmp_path / "cache" / "agents"),
               PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels), PIP_CONFIG_FILE=os.devnull,
               NPM_LOG=str(tmp_path / "npm.log"))
    env.update(extra)
    return env


@pytest.fixture
def npm_standin(tmp_path):
    d = tmp_path / "npm-bin"
    d.mkdir()
    npm = d / "npm"
    npm.write_text(NPM_STANDIN)
    npm.chmod(0o755)
    return d


def pins_of(npm_call):
    """The package@version words of an npm command line (not the options, not the prefix)."""
    words = npm_call.split()
    return [w for i, w in enumerate(words) if "@" in w[1:] and not w.startswith("-") and words[i - 1] != "--prefix"]


def tree_of(path: Path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_pins_are_read_from_run_sh():
    assert len(PINS) >= 3 and all(var in VERSIONS for _, var in PINS), (PINS, VERSIONS)


def test_fresh_machine_with_a_python_that_refuses_global_installs(tmp_path, npm_standin):
    wheels = wheelhouse()
    python = scratch_python(tmp_path / "scratch")
    refused = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "pytest"],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "externally-managed-environment" in refused.stderr, refused.stderr
    site_before = tree_of(tmp_path / "scratch")
    repo = copy_of_work_tree(tmp_path / "clone")
    env = fresh_env(tmp_path, wheels, [npm_standin, python.parent])
    cache, agents = tmp_path / "cache", tmp_path / "cache" / "agents"

    r = run(repo, env, "--basetemp=%s" % (tmp_path / "pt1"), "-q", "tests/test_packaging.py", "-k", "build_sh_is_posix")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    # What it installs, where and how big: one line each, before anything else.
    venvs = [p.name for p in cache.glob("venv-*") if p.is_dir()]
    assert len(venvs) == 1 and venvs[0].startswith("venv-py%d.%d-" % sys.version_info[:2])
    tools = [line.split("==")[0] for line in (REPO_ROOT / "requirements-dev.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert tools[:5] == ["pytest", "pytest-mock", "shiv", "argparse-manpage", "ruff"]
    assert re.fullmatch(r"tests/run\.sh: installing the dev tools \(%s; "
                        r"requirements-dev\.txt\) from PyPI into %s, about \d+ MB, once"
                        % (re.escape(", ".join(tools)), re.escape(str(cache / venvs[0]))),
                        lines[0]), lines[0]
    names = ", ".join("%s %s" % (label, VERSIONS[var]) for label, var in
                      zip(("Claude Code", "Codex", "Gemini CLI"), ("CLAUDE_CODE_VERSION", "CODEX_VERSION", "GEMINI_CLI_VERSION")))
    assert lines[1].startswith("tests/run.sh: installing the pinned agents (%s" % names), lines[1]
    assert re.search(r"from npm into %s, about [\d.]+ [MG]B, once$" % re.escape(str(agents)), lines[1]), lines[1]
    # npm's notices and pip's chatter stay out; pytest's closing line is the last.
    assert "npm" not in r.stderr and "notice" not in r.stdout + r.stderr and "added 3" not in r.stdout
    assert "WARNING" not in r.stdout + r.stderr and "Collecting" not in r.stdout
    assert re.fullmatch(r"1 passed, \d+ deselected in [\d.]+s", lines[-1]), lines[-1]
    # npm was asked for exactly the pins, saved exactly, quietly.
    calls = Path(env["NPM_LOG"]).read_text().splitlines()
    assert len(calls) == 1
    for flag in ("--save-exact", "--no-audit", "--no-fund", "--loglevel=error", "--prefix %s" % agents):
        assert flag in calls[0], calls[0]
    assert sorted(pins_of(calls[0])) == sorted("%s@%s" % (n, VERSIONS[v]) for n, v in PINS)
    # Nothing global: the scratch interpreter's prefix is as it was; the copy gained no venv.
    assert tree_of(tmp_path / "scratch") == site_before
    assert not (repo / ".venv").exists() and not any(repo.glob("venv*"))

    # The second run reuses everything and says nothing about installing.
    r = run(repo, env, "--basetemp=%s" % (tmp_path / "pt2"), "-q", "tests/test_packaging.py", "-k", "build_sh_is_posix")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "installing" not in r.stdout + r.stderr
    assert len(Path(env["NPM_LOG"]).read_text().splitlines()) == 1

    # An agent at another version than the pin: only that one is installed again.
    name, var = PINS[0]
    (agents / "node_modules" / name / "package.json").write_text('{"version": "0.0.1"}')
    # requirements-dev.txt changed: a new virtual environment, from the wheelhouse.
    with open(repo / "requirements-dev.txt", "a") as handle:
        handle.write("# changed\n")
    r = run(repo, env, "--basetemp=%s" % (tmp_path / "pt3"), "-q", "tests/test_packaging.py", "-k", "build_sh_is_posix")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "installing the dev tools" in r.stdout and "installing the pinned agents" in r.stdout
    assert len([p for p in cache.glob("venv-*") if p.is_dir()]) == 2
    calls = Path(env["NPM_LOG"]).read_text().splitlines()
    assert pins_of(calls[-1]) == ["%s@%s" % (name, VERSIONS[var])]


def test_from_inside_another_virtual_environment(tmp_path, npm_standin):
    wheels = wheelhouse()
    # Made from the scratch interpreter, whose site-packages lacks the dev tools, as a
    # fresh machine's python3 does.
    python = scratch_python(tmp_path / "scratch")
    outer = tmp_path / "outer-venv"
    r = subprocess.run([str(python), "-m", "venv", "--without-pip", str(outer)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    repo = copy_of_work_tree(tmp_path / "clone")
    env = fresh_env(tmp_path, wheels, [outer / "bin", npm_standin], VIRTUAL_ENV=str(outer))
    # The packaging tests build with the interpreter running them: the test command's own
    # virtual environment, never the base interpreter its python symlinks to.
    r = run(repo, env, "--basetemp=%s" % (tmp_path / "pt"), "-q", "tests/test_packaging.py",
            "-k", "two_builds_are_byte_identical or version_lives_in_fmapi_py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"(?m)^2 passed, \d+ deselected in [\d.]+s$", r.stdout), r.stdout
    assert not any((outer / "lib").rglob("pytest*")), "the outer virtual environment was installed into"


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    assert re.search(r"(?m)^sh tests/run\.sh +# runs the tests", readme)
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert commands[-1] == "exec sh tests/run.sh", commands
    assert "pytest" not in "\n".join(commands[:-1])
