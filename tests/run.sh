#!/bin/sh
# The test command (README.md, "Development"): sets up everything the tests need on a
# fresh machine that has python3, pip and node/npm, then runs the whole suite.
#   sh tests/run.sh            # all tests
#   sh tests/run.sh -k codex   # extra arguments go to pytest
set -eu
cd "$(dirname "$0")/.."

# Pinned versions of the real coding agents the end-to-end tests drive.
CLAUDE_CODE_VERSION=2.1.331
CODEX_VERSION=0.169.0
GEMINI_CLI_VERSION=0.61.0
OPENCODE_VERSION=1.18.33
COPILOT_VERSION=1.0.102
PI_VERSION=1.6.0
PI_NODE_VERSION=22.23.3  # Pi 1.x needs Node.js >= 22.19 (package.json engines); npm's `node` package ships it

python3 -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt

# Debian tools the packaging tests use (ruby -wc for the formula, man for the page).
if ! command -v ruby >/dev/null 2>&1 || ! command -v man >/dev/null 2>&1 || ! command -v groff >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ruby man-db groff-base >/dev/null
    else
        echo "tests/run.sh: ruby, man or groff missing (install them: apt-get install ruby man-db groff-base)" >&2
    fi
fi

# The real agents, into a cache outside the repository (they run offline from there).
FMAPI_AGENTS_DIR=${FMAPI_AGENTS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/fmapi-dev/agents}
stamp="$FMAPI_AGENTS_DIR/.pinned-$CLAUDE_CODE_VERSION-$CODEX_VERSION-$GEMINI_CLI_VERSION-$OPENCODE_VERSION-$COPILOT_VERSION-$PI_VERSION-$PI_NODE_VERSION"
if [ ! -f "$stamp" ]; then
    mkdir -p "$FMAPI_AGENTS_DIR"
    npm install --prefix "$FMAPI_AGENTS_DIR" --no-audit --no-fund --loglevel=error \
        "@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION" \
        "@openai/codex@$CODEX_VERSION" \
        "@google/gemini-cli@$GEMINI_CLI_VERSION" \
        "opencode-ai@$OPENCODE_VERSION" \
        "@github/copilot@$COPILOT_VERSION" \
        "@earendil-works/pi-coding-agent@$PI_VERSION" \
        "node@$PI_NODE_VERSION"
    touch "$stamp"
fi
export FMAPI_AGENTS_DIR

# The linter first: pyflakes, syntax errors and bugbear over the module and the tests (ruff.toml).
python3 -m ruff check --quiet fmapi.py tests/

exec python3 -m pytest -q "$@"
