#!/bin/sh
# The test command (README.md, "Development"): sets up everything the tests need on a
# fresh machine that has python3 (>= 3.9, with venv), pip and node/npm, then runs the suite.
#   sh tests/run.sh            # all tests
#   sh tests/run.sh -k codex   # extra arguments go to pytest
#
# Nothing global is touched: the dev tools of requirements-dev.txt go into a virtual
# environment of their own and the pinned agents into a folder, both in a cache outside the
# repository ($FMAPI_DEV_CACHE, default ~/.cache/fmapi-dev), reused by every later run (the
# virtual environment while requirements-dev.txt and the Python stay the same). It works
# from inside another virtual environment and with a python3 that refuses global pip
# installs (PEP 668). FMAPI_TEST_PYTHON=/path/to/python3 picks the interpreter.
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
AGENT_PINS="@anthropic-ai/claude-code@$CLAUDE_CODE_VERSION
@openai/codex@$CODEX_VERSION
@google/gemini-cli@$GEMINI_CLI_VERSION
opencode-ai@$OPENCODE_VERSION
@github/copilot@$COPILOT_VERSION
@earendil-works/pi-coding-agent@$PI_VERSION
node@$PI_NODE_VERSION"
AGENT_NAMES="Claude Code $CLAUDE_CODE_VERSION, Codex $CODEX_VERSION, Gemini CLI $GEMINI_CLI_VERSION, OpenCode $OPENCODE_VERSION, Copilot CLI $COPILOT_VERSION, Pi $PI_VERSION, Node.js $PI_NODE_VERSION"
AGENTS_SIZE="about 1.8 GB"  # du -sh of the installed folder, for the line said before installing

say() { echo "tests/run.sh: $*"; }
die() {
    echo "tests/run.sh: $*" >&2
    exit 1
}

# Runs "$@" with its output in a log file; shows the log only when the command fails.
quietly() {
    log=$(mktemp "${TMPDIR:-/tmp}/fmapi-run.XXXXXX")
    if "$@" >"$log" 2>&1; then
        rm -f "$log"
    else
        status=$?
        cat "$log" >&2
        rm -f "$log"
        return "$status"
    fi
}

# lock DIR / unlock DIR: one installer at a time per folder (parallel runs share the cache).
# A lock whose owner process is gone is taken over.
lock() {
    waited=no
    while ! mkdir "$1" 2>/dev/null; do
        owner=$(cat "$1/pid" 2>/dev/null || true)
        if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
            rm -rf "$1"
            continue
        fi
        [ "$waited" = yes ] || say "waiting for another tests/run.sh to finish installing ($1)"
        waited=yes
        sleep 2
    done
    echo $$ >"$1/pid"
    locks="$locks $1"
}
unlock() {
    rm -rf "$1"
    locks=$(echo "$locks" | sed "s# $1##")
}
locks=
trap 'for l in $locks; do rm -rf "$l"; done' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

CACHE=${FMAPI_DEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fmapi-dev}
export FMAPI_DEV_CACHE="$CACHE"  # tests/test_run_sh.py installs from its wheelhouse offline
PY=${FMAPI_TEST_PYTHON:-python3}
command -v "$PY" >/dev/null 2>&1 || die "no $PY on PATH: install Python 3.9 or newer (or set FMAPI_TEST_PYTHON)"

# 1. The dev tools, in a virtual environment named after the Python and requirements-dev.txt.
#    (Kept to syntax every python parses, so an old one gets the message, not a SyntaxError.)
key=$("$PY" -c '
import hashlib, sys
if sys.version_info < (3, 9):
    sys.exit("tests/run.sh: needs Python 3.9 or newer (%s is %s)" % (sys.executable, sys.version.split()[0]))
base = getattr(sys, "_base_executable", None) or sys.executable
with open("requirements-dev.txt", "rb") as handle:
    digest = hashlib.sha256(handle.read() + sys.version.encode() + base.encode()).hexdigest()
print("py%d.%d-%s" % (sys.version_info[0], sys.version_info[1], digest[:12]))
') || exit 1
VENV=$CACHE/venv-$key
VPY=$VENV/bin/python
if [ ! -f "$VENV/.complete" ]; then
    mkdir -p "$CACHE"
    lock "$VENV.lock"
    if [ ! -f "$VENV/.complete" ]; then
        tools=$(sed -n 's/^\([A-Za-z0-9._-]*\)==.*/\1/p' requirements-dev.txt | paste -sd, - | sed 's/,/, /g')
        say "installing the dev tools ($tools; requirements-dev.txt) from PyPI into $VENV, about 80 MB, once"
        rm -rf "$VENV"
        "$PY" -m venv "$VENV" >/dev/null 2>&1 || {
            rm -rf "$VENV"
            die "$PY cannot create a virtual environment: install its venv module (Debian, Ubuntu: apt-get install python3-venv) and run again"
        }
        # Through a wheelhouse in the cache: a later requirements change downloads only what
        # changed, and the tests of this script install from it offline.
        quietly "$VPY" -m pip wheel --disable-pip-version-check --no-input --find-links "$CACHE/wheels" \
            --wheel-dir "$CACHE/wheels" -r requirements-dev.txt &&
            quietly "$VPY" -m pip install --disable-pip-version-check --no-input --no-index \
                --find-links "$CACHE/wheels" -r requirements-dev.txt ||
            die "pip could not install requirements-dev.txt into $VENV (its output is above)"
        touch "$VENV/.complete"
    fi
    unlock "$VENV.lock"
fi

# 2. Debian tools the packaging tests use (ruby -wc for the formula, man for the page, zsh
#    and fish for the completions).
missing=
for tool in ruby:ruby man:man-db groff:groff-base zsh:zsh fish:fish; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing="$missing ${tool#*:}"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing$missing (for the packaging tests) with apt-get, about 80 MB at most"
        quietly apt-get update -qq
        # shellcheck disable=SC2086  # one word per package
        quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
    else
        say "missing$missing: the tests that need them are skipped (apt-get install$missing)" >&2
    fi
fi

# 3. The real agents, exactly the pinned versions, in a folder outside the repository (they
#    run offline from there). What counts is what is installed there, so runs with other pins
#    (another branch) neither reinstall nor break each other.
FMAPI_AGENTS_DIR=${FMAPI_AGENTS_DIR:-$CACHE/agents}
missing_pins() {
    "$VPY" - "$FMAPI_AGENTS_DIR" $AGENT_PINS <<'EOF'
import json, os, sys

root = sys.argv[1]
for pin in sys.argv[2:]:
    name, _, version = pin.rpartition("@")
    try:
        with open(os.path.join(root, "node_modules", name, "package.json"), encoding="utf-8") as handle:
            installed = json.load(handle).get("version")
    except (OSError, ValueError):
        installed = None
    if installed != version:
        print(pin)
EOF
}
if [ -n "$(missing_pins)" ]; then
    if command -v npm >/dev/null 2>&1; then
        mkdir -p "$FMAPI_AGENTS_DIR"
        lock "$FMAPI_AGENTS_DIR/.install-lock"
        pins=$(missing_pins)
        if [ -n "$pins" ]; then
            say "installing the pinned agents ($AGENT_NAMES) from npm into $FMAPI_AGENTS_DIR, $AGENTS_SIZE, once"
            # shellcheck disable=SC2086  # one word per pin
            quietly npm install --prefix "$FMAPI_AGENTS_DIR" --save-exact --no-audit --no-fund \
                --no-update-notifier --no-progress --loglevel=error $pins ||
                die "npm could not install $pins into $FMAPI_AGENTS_DIR (its output is above)"
        fi
        unlock "$FMAPI_AGENTS_DIR/.install-lock"
    else
        say "npm not found: the end-to-end tests of the real agents are skipped (and fail under CI=true); install node and npm" >&2
    fi
fi
export FMAPI_AGENTS_DIR

# 4. The linter first: pyflakes, syntax errors and bugbear over the module and the tests (ruff.toml).
"$VPY" -m ruff check --quiet fmapi.py tests/

# 5. The suite: quiet (one line of dots, then the summary) unless the arguments choose a
#    verbosity themselves (a second -q would drop the closing summary line).
quiet=-q
for arg in "$@"; do
    case $arg in
        -q* | -v* | --quiet | --verbose | --verbosity=*) quiet= ;;
    esac
done
exec "$VPY" -m pytest $quiet "$@"
