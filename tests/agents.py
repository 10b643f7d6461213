"""The real coding agents for the end-to-end tests (tests/test_*_e2e.py).

tests/run.sh (and so CI) npm-installs pinned agents into $FMAPI_AGENTS_DIR and exports it.
``agent_binary("claude" | "codex" | "gemini")`` returns the agent's executable there; when it
is missing the test is skipped on a developer machine and fails under CI=true, where a
missing agent means the suite would prove nothing.

    from agents import agent_binary
    claude = agent_binary("claude")
"""

import os
import shutil

import pytest

# run.sh's default, read when this module is imported, before fixtures move HOME.
DEFAULT_AGENTS_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                  "fmapi-dev", "agents")


def in_ci():
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def agent_binary(name):
    """Absolute path of the real ``name`` from $FMAPI_AGENTS_DIR/node_modules/.bin (skip or fail).

    ``agent_binary("node")`` is the pinned Node.js that agents needing a newer one than the
    system's (Pi) run on: link it into the test's bin directory on PATH."""
    agents_dir = os.environ.get("FMAPI_AGENTS_DIR") or DEFAULT_AGENTS_DIR
    path = os.path.join(agents_dir, "node_modules", ".bin", name)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        problem = "the real %s is not installed in %s" % (name, agents_dir)
    elif os.path.realpath(path).endswith((".js", ".mjs", ".cjs")) and not shutil.which("node"):
        problem = "the real %s needs node, which is not on PATH" % name
    else:
        return os.path.abspath(path)
    message = "%s (tests/run.sh installs the pinned agents and sets FMAPI_AGENTS_DIR)" % problem
    if in_ci():
        pytest.fail("CI=true: " + message, pytrace=False)
    pytest.skip(message)
