#!/bin/sh
# Build fmapi's release artifacts (README.md, "Development notes"):
#
#   ./build.sh             dist/fmapi.pyz           the zipapp: `python3 fmapi.pyz`, Python >= 3.9
#                          man/fmapi.1              the man page, generated from fmapi.build_parser()
#                          dist/completions/        bash, zsh and fish completions, from the parser too
#                          dist/fmapi-X.Y.Z.tar.gz  the release tarball (pyz, man page, completions)
#   ./build.sh --release   the same, then points Formula/fmapi.rb (homepage, url, sha256) at
#                          that tarball
#
# Everything is derived from fmapi.py: the version (__version__), the public home
# (HOMEPAGE_REPO) and the oldest Python (MIN_PYTHON). Builds are reproducible: every
# timestamp is SOURCE_DATE_EPOCH, which defaults to the time of the commit that set the
# current __version__, so two builds of one commit are byte-identical, a release rebuilt
# from its tag reproduces the published sha256, and the committed man page stays what a
# fresh build generates until the parser or the version changes.
#
# Needs the pinned tools of requirements-dev.txt (shiv, argparse-manpage): python3 when it
# has them, else the virtual environment `sh tests/run.sh` made in its cache;
# PYTHON=/path/to/python3 picks another interpreter.
set -eu
cd "$(dirname "$0")"
umask 022

die() {
    echo "build.sh: $*" >&2
    exit 1
}

release=no
for arg in "$@"; do
    case $arg in
        --release) release=yes ;;
        -h | --help)
            sed -n '2,/^set -eu/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument '$arg' (usage: ./build.sh [--release])" ;;
    esac
done

has_tools() { "$1" -c 'import shiv, argparse_manpage' 2>/dev/null; }
if [ -z "${PYTHON:-}" ]; then
    # python3 when it has the tools, else the newest virtual environment tests/run.sh made.
    PYTHON=python3
    if ! has_tools "$PYTHON"; then
        for venv in $(ls -td "${FMAPI_DEV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/fmapi-dev}"/venv-*/ 2>/dev/null); do
            if [ -f "$venv.complete" ] && has_tools "${venv}bin/python"; then
                PYTHON=${venv}bin/python
                break
            fi
        done
    fi
fi
has_tools "$PYTHON" ||
    die "$PYTHON lacks shiv or argparse-manpage: run sh tests/run.sh once (it installs them in a virtual environment of its own), or PYTHON=/path/to/python3 ./build.sh"

# The one place of the version, the public home and the Python floor: fmapi.py itself.
meta=$("$PYTHON" -B -c '
import fmapi
print(fmapi.__version__)
print(fmapi.HOMEPAGE_REPO)
print("%d.%d" % tuple(fmapi.MIN_PYTHON[:2]))
')
VERSION=$(echo "$meta" | sed -n 1p)
REPO=$(echo "$meta" | sed -n 2p)
MIN_PYTHON=$(echo "$meta" | sed -n 3p)
echo "$VERSION" | grep -Eq '^[0-9]+\.[0-9]+\.[0-9]+$' || die "__version__ '$VERSION' is not X.Y.Z"
echo "$REPO" | grep -Eq '^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$' || die "HOMEPAGE_REPO '$REPO' is not OWNER/NAME"
HOMEPAGE="https://github.com/$REPO"
TARBALL="fmapi-$VERSION.tar.gz"
URL="$HOMEPAGE/releases/download/v$VERSION/$TARBALL"
# NAME line of the man page (what whatis and apropos show); Formula/fmapi.rb's desc says the same.
SUMMARY="set up coding agents to use Databricks Foundation Model API"

in_git=no
version_epoch=
if git rev-parse --git-dir >/dev/null 2>&1; then
    in_git=yes
    # The commit that set this version (empty while the bump is not committed).
    version_epoch=$(git log -1 --format=%ct -S "__version__ = \"$VERSION\"" -- fmapi.py 2>/dev/null || true)
fi
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
    SOURCE_DATE_EPOCH=$version_epoch
    if [ -z "$SOURCE_DATE_EPOCH" ] && [ "$in_git" = yes ]; then
        SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || true)
    fi
    [ -n "$SOURCE_DATE_EPOCH" ] || die "not a git checkout with commits: set SOURCE_DATE_EPOCH"
fi
echo "$SOURCE_DATE_EPOCH" | grep -Eq '^[0-9]+$' || die "SOURCE_DATE_EPOCH '$SOURCE_DATE_EPOCH' is not a number"
export SOURCE_DATE_EPOCH

stage=$(mktemp -d "${TMPDIR:-/tmp}/fmapi-build.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM
mkdir -p dist man "$stage/site-packages"
rm -f dist/fmapi.pyz dist/fmapi-*.tar.gz

# 1. The zipapp. shiv packs a clean folder holding only fmapi.py; its bootstrap extracts
#    that folder once per build into ~/.shiv. build.sh then swaps the archive's two-line
#    __main__.py for launcher.py below (same timestamp, nothing else changes), which refuses
#    Pythons older than MIN_PYTHON with a clear message, answers --version without unpacking
#    anything, and lets the bootstrap fall back to a
#    private per-user folder in the temporary directory when HOME is read-only.
cp fmapi.py "$stage/site-packages/fmapi.py"
chmod 644 "$stage/site-packages/fmapi.py"
"$PYTHON" -m shiv --site-packages "$stage/site-packages" --entry-point fmapi:main \
    --python "/usr/bin/env python3" --reproducible --output-file "$stage/shiv.pyz" >/dev/null

cat >"$stage/launcher.py" <<EOF
# -*- coding: utf-8 -*-
# fmapi's zipapp entry point, written by build.sh in place of shiv's two-line __main__.py.
# Kept to syntax every python3 (and python2) parses, so an old Python gets this message.
import sys

MIN_PYTHON = ($(echo "$MIN_PYTHON" | sed 's/\./, /'))
if sys.version_info < MIN_PYTHON:
    sys.stderr.write("fmapi: needs Python %d.%d or newer (this is %s).\\n" % (MIN_PYTHON + (sys.version.split()[0],)))
    sys.exit(1)
if sys.argv[1:] == ["--version"]:  # answered without unpacking the archive
    sys.stdout.write("fmapi $VERSION\\n")
    sys.exit(0)
EOF
cat >>"$stage/launcher.py" <<'EOF'

import os
import stat

import _bootstrap

_shiv_cache_path = _bootstrap.cache_path


def _takes_files(root):
    """True when shiv can extract into root: it exists or can be made, and takes a new file."""
    import tempfile

    try:
        os.makedirs(root, 0o700, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".fmapi-probe-", dir=root)
        os.close(fd)
        os.unlink(probe)
        return True
    except OSError:
        return False


def _private_temp_root():
    """<tempdir>/fmapi-shiv-UID: made 0700 by this user, never trusted otherwise."""
    import tempfile

    uid = os.getuid()
    root = os.path.join(tempfile.gettempdir(), "fmapi-shiv-%d" % uid)
    try:
        os.mkdir(root, 0o700)
    except OSError:
        pass
    try:
        st = os.lstat(root)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        return None
    return root


def cache_path(archive, root_dir, build_id):
    """shiv's choice of extraction folder, with a fallback for a read-only HOME.

    SHIV_ROOT, when set, is used as shiv uses it. Otherwise ~/.shiv as usual, unless this
    build is not extracted there and nothing can be written there; then a private folder
    in the temporary directory. Both keep one copy per build, reused by every run.
    """
    if not root_dir:
        for root in (os.path.expanduser("~/.shiv"), None):
            if root is None:
                root = _private_temp_root()
                if root is None:
                    break
            path = _shiv_cache_path(archive, root, build_id)
            if os.path.isdir(os.path.join(str(path), "site-packages")) or _takes_files(root):
                return path
    return _shiv_cache_path(archive, root_dir, build_id)


_bootstrap.cache_path = cache_path
_bootstrap.bootstrap()
EOF

"$PYTHON" - "$stage/shiv.pyz" "$stage/launcher.py" "$stage/fmapi.pyz" <<'EOF'
import sys
import zipfile

source, launcher, target = sys.argv[1:]
with open(source, "rb") as handle:
    data = handle.read()
prefix = data[: data.index(b"PK\x03\x04")]  # the shebang line
with open(launcher, "rb") as handle:
    main_py = handle.read()
with zipfile.ZipFile(source) as old, open(target, "wb") as out:
    out.write(prefix)
    with zipfile.ZipFile(out, "w") as new:
        swapped = 0
        for info in old.infolist():
            body = old.read(info.filename)
            if info.filename == "__main__.py":
                body, swapped = main_py, swapped + 1
            fresh = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            fresh.compress_type = info.compress_type
            fresh.external_attr = info.external_attr
            new.writestr(fresh, body)
if swapped != 1:
    sys.exit("build.sh: shiv's archive has %d __main__.py entries, expected 1" % swapped)
EOF
chmod 755 "$stage/fmapi.pyz"
mv "$stage/fmapi.pyz" dist/fmapi.pyz

# 2. The man page, from the real parser.
"$PYTHON" -B -c 'import sys; from argparse_manpage.cli import main; sys.argv[0] = "argparse-manpage"; main()' \
    --pyfile fmapi.py --function build_parser --prog fmapi \
    --project-name fmapi --version "$VERSION" --description "$SUMMARY" \
    --url "$HOMEPAGE" --manual-title "User Commands" --output "$stage/fmapi.1"
# The epilog (examples, aligned in columns) is kept as written rather than filled.
awk '/^\.SH COMMENTS$/ { print; print ".nf"; keep = 1; next }
     keep && /^\.SH / { print ".fi"; keep = 0 }
     { print }' "$stage/fmapi.1" >man/fmapi.1

# 3. Shell completions for bash, zsh and fish, from the same parser (completions/generate.py).
rm -rf dist/completions
"$PYTHON" -B completions/generate.py dist/completions
chmod 644 dist/completions/*

# 4. The release tarball: fmapi-X.Y.Z/{fmapi.pyz,man/fmapi.1,completions/*}, owners and times normalised.
"$PYTHON" - "dist/$TARBALL" "fmapi-$VERSION" "$SOURCE_DATE_EPOCH" <<'EOF'
import gzip
import io
import sys
import tarfile

target, top, epoch = sys.argv[1], sys.argv[2], int(sys.argv[3])
members = [  # (name in the tarball, file, mode); None is a directory
    (top, None, 0o755),
    (top + "/fmapi.pyz", "dist/fmapi.pyz", 0o755),
    (top + "/man", None, 0o755),
    (top + "/man/fmapi.1", "man/fmapi.1", 0o644),
    (top + "/completions", None, 0o755),
    (top + "/completions/fmapi.bash", "dist/completions/fmapi.bash", 0o644),
    (top + "/completions/_fmapi", "dist/completions/_fmapi", 0o644),
    (top + "/completions/fmapi.fish", "dist/completions/fmapi.fish", 0o644),
]
with open(target, "wb") as raw:
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=epoch) as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            for name, path, mode in members:
                info = tarfile.TarInfo(name)
                info.mtime, info.mode = epoch, mode
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                if path is None:
                    info.type = tarfile.DIRTYPE
                    tar.addfile(info)
                else:
                    with open(path, "rb") as handle:
                        body = handle.read()
                    info.size = len(body)
                    tar.addfile(info, io.BytesIO(body))
EOF

SHA256=$("$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())' "dist/$TARBALL")

# 5. --release: the formula installs exactly this tarball.
if [ "$release" = yes ]; then
    if [ "$in_git" = yes ] && { [ -z "$version_epoch" ] || ! git diff --quiet HEAD -- fmapi.py 2>/dev/null; }; then
        echo "build.sh: warning: fmapi.py or its version $VERSION is not committed, so the tag will not" >&2
        echo "  rebuild this tarball byte for byte: commit fmapi.py first, then run ./build.sh --release." >&2
    fi
    "$PYTHON" - Formula/fmapi.rb "$HOMEPAGE" "$URL" "$SHA256" <<'EOF'
import re
import sys

path, homepage, url, sha256 = sys.argv[1:]
with open(path, encoding="utf-8") as handle:
    text = handle.read()
for key, value in (("homepage", homepage), ("url", url), ("sha256", sha256)):
    # the first, top-level line of each (2-space indent), not the livecheck block's url
    text, count = re.subn(r'(?m)^(  %s )"[^"\n]*"$' % key, lambda m: m.group(1) + '"%s"' % value, text, count=1)
    if count != 1:
        sys.exit("build.sh: no top-level %s line in %s" % (key, path))
with open(path, "w", encoding="utf-8") as handle:
    handle.write(text)
EOF
    echo "Formula/fmapi.rb: $URL"
fi

echo "fmapi $VERSION (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH)"
echo "  dist/fmapi.pyz"
echo "  man/fmapi.1"
echo "  dist/completions/{fmapi.bash,_fmapi,fmapi.fish}"
echo "  dist/$TARBALL  sha256 $SHA256"
