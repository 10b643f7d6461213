#!/usr/bin/env python3
"""fmapi: run coding agents against Databricks Foundation Model API.

fmapi installs what is missing, signs the user in to Databricks, keeps a short-lived
credential fresh (a personal access token (PAT) it mints and rotates, or the Databricks
CLI's OAuth access token itself), writes each coding agent's configuration so
the agent fetches fresh credentials by itself, and undoes all of it with
``fmapi --uninstall``.

How this file reads, top to bottom:

   1. Constants and the version
   2. Messages and errors
   3. Files: atomic writes, JSON (also with comments), backups
   4. Time: RFC 3339 as Go prints it
   5. The token cache and the helper's hot path
   6. Databricks: 6a profiles, 6b the CLI, 6c REST, 6d credentials (PAT or OAuth)
   7. The install registry and the runtime copy used by helpers
  7b. The relay: a loopback forwarder for agents that read their key once
   8. Agents: what every agent section provides
   9. Claude Code
  10. OpenAI Codex
  11. Gemini CLI
  12. Pi
  13. GitHub Copilot CLI
  14. OpenCode
  15. Dependencies (installing agents and the Databricks CLI)
  16. The terminal: prompts and the arrow-key selector
  17. Commands: setup, token, uninstall, gemini, copilot; 17b: models, status, doctor
  18. Command line and main()

Standard library only. Only the modules the token helper's cache-hit path needs are
imported at the top; everything else is imported where it is used, so that an agent
start pays for one small import and nothing more. Even ``json`` (8 ms, with ``re`` and
``enum`` behind it) waits until something other than the cache-hit path needs it.
"""

import os
import sys
import time


class _OnFirstUse:
    """A module imported the first time one of its attributes is used."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        module = __import__(self._name)
        globals()[self._name] = module
        return getattr(module, attr)


json = _OnFirstUse("json")

# --------------------------------------------------------------------------------------
# 1. Constants and the version
# --------------------------------------------------------------------------------------

__version__ = "0.1.0"
PROG = "fmapi"
MIN_PYTHON = (3, 9)
HOMEPAGE_REPO = "OWNER/fmapi"  # the public home; publishing under the real name changes this line
HOMEPAGE = "https://github.com/" + HOMEPAGE_REPO

CACHE_NAME = ".fmapi-pat-cache"  # beside the agent's settings: the current PAT, 0600
LOCK_NAME = ".fmapi-pat-cache.lock"  # serialises renewals between concurrent helpers
HELPER_NAME = "fmapi-key-helper.sh"  # beside the agent's settings: the 0700 helper
TMP_SUFFIX = ".fmapi-tmp"  # every temporary file fmapi creates ends with this
HELPER_PROTOCOL = 1  # bump when the helper's argument changes shape

PAT_LIFETIMES = (1, 3, 5, 7)  # days, as offered by the seed
DEFAULT_PAT_DAYS = 1
INHERITED_UMASK = None  # main() records the umask fmapi started with; installers and gemini get it back
MIN_REMAINING = 300  # seconds: a cached PAT with less life left is never handed out (setup --min-remaining)
MAX_MIN_REMAINING = 12 * 3600  # the most --min-remaining may ask for: even 1-day PATs then last a while
AGENT_TTL_MAX = 3600  # seconds: how long an agent may keep a token before asking again
RENEW_LOCK_WAIT = 120  # seconds to wait for another process that is renewing
LEDGER_NAME = ".fmapi-pat-ledger"  # beside the cache: the PATs this install minted (survives a cache deletion)
SERVED_NAME = ".fmapi-pat-served"  # beside the cache, empty: its mtime is when the cached token was last handed out
CHECKED_NAME = ".fmapi-pat-checked"  # beside the cache, empty: its mtime is when that token was last checked live
TOKEN_FILES = (CACHE_NAME, LEDGER_NAME, SERVED_NAME, CHECKED_NAME, LOCK_NAME)  # what uninstall removes beside the helper
REASK_WINDOW = 30  # seconds: the cached token asked for again this soon after it was handed out is checked first
CHECK_INTERVAL = 180  # seconds: at most one such check per install in this time (a burst of agent starts: one)
CHECK_DEADLINE = 3.0  # seconds for that check; no answer in time means "alive" (the agent then says what it sees)

# Time budgets (seconds). The helper answers, with a token or a one-line cause, within
# HELPER_ANSWER however the workspace misbehaves: Claude Code warns when its helper takes
# over 10 s, and Codex kills its auth command after timeout_ms. Setup may wait longer.
# The renewal gets HELPER_DEADLINE of that; the rest is for what comes before and after it
# (the interpreter's start, the lock, the fallback to the cached token), measured at
# 0.15-0.2 s on a loaded 2-core machine when the whole 8 s went to the renewal.
HELPER_ANSWER = 8.0
HELPER_DEADLINE = 7.0
SETUP_DEADLINE = 60.0
CONNECT_TIMEOUT = 3.0  # one TCP connect + TLS handshake
READ_TIMEOUT = 10.0  # silence while waiting for (part of) an answer
RETRY_AFTER_MAX = 5.0  # never sleep longer than this on one Retry-After, whatever the server asks
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 2.0  # exponential back-off between tries, with jitter
CODING_AGENT_HEADER = ("x-databricks-use-coding-agent-mode", "true")


# --------------------------------------------------------------------------------------
# 2. Messages and errors
# --------------------------------------------------------------------------------------


class FmapiError(Exception):
    """A failure the user can act on: one line saying what happened, one saying what to do."""

    def __init__(self, message, fix=None, code=1):
        super().__init__(message)
        self.message = message
        self.fix = fix
        self.code = code

    def render(self):
        text = "fmapi: " + runnable(self.message)
        if self.fix:
            text += "\n  " + runnable(self.fix)
        return text


def _terminate(signum, frame):
    """SIGTERM/SIGHUP become SystemExit, so every `finally` (temp files, the terminal) runs."""
    raise SystemExit(128 + signum)


class UsageError(FmapiError):
    """Bad command-line input: exit status 2, like argparse."""

    def __init__(self, message, fix=None):
        super().__init__(message, fix, code=2)


class SessionExpired(FmapiError):
    """The Databricks OAuth session is missing or dead: the user must sign in again."""

    def __init__(self, host, profile, config_file=None):
        super().__init__(
            "your Databricks session for profile '%s' has expired or does not exist." % profile,
            fix="Sign in again with: %s (or fmapi reauth, for every install)" % login_command(host, profile, config_file),
        )
        self.host = host
        self.profile = profile


# Colour marks headings, warnings and errors, and only where a person sees it: the stream
# is a terminal, NO_COLOR (https://no-color.org) is unset or empty, and TERM is set and not
# "dumb". Everything else fmapi prints is plain text, so logs and pipes get no escape codes.
STYLES = {"heading": "1", "warning": "33", "error": "31"}  # SGR: bold, yellow, red


def fancy_terminal():
    """True when TERM names a terminal that takes escape sequences (not unset, not dumb)."""
    return os.environ.get("TERM", "") not in ("", "dumb")


def colour_on(stream):
    """True when ``stream`` should get colour: a terminal, no NO_COLOR, a TERM that is not dumb."""
    if os.environ.get("NO_COLOR") or not fancy_terminal():
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):
        return False


def paint(text, style, stream):
    """``text`` in ``style`` (a STYLES key) when ``stream`` takes colour, else unchanged."""
    if not text or not colour_on(stream):
        return text
    return "\x1b[%sm%s\x1b[0m" % (STYLES[style], text)


# Messages that tell the user to run fmapi say it the way that works for them: `fmapi` when
# that is on PATH (Homebrew, the launcher setup offers), else the launcher's full path, else
# the exact `python3 /path/fmapi.pyz` (or fmapi.py) this process was started as.
LAUNCHER_MARK = "# fmapi launcher, written by fmapi"  # the second line of every launcher
_FMAPI_COMMAND = []  # the answer of fmapi_command(), once worked out


def launcher_dirs():
    """Where a launcher may be: ~/.local/bin, then each PATH directory inside HOME (in order)."""
    home = os.path.realpath(os.path.expanduser("~"))
    found = [os.path.join(home, ".local", "bin")]
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isabs(os.path.expanduser(entry)):
            continue
        directory = os.path.realpath(os.path.expanduser(entry))
        if directory.startswith(home + os.sep) and directory not in found:
            found.append(directory)
    return found


def installed_launchers():
    """Paths of the `fmapi` launchers setup wrote (recognised by LAUNCHER_MARK)."""
    found = []
    for directory in launcher_dirs():
        path = os.path.join(directory, "fmapi")
        try:
            with open(path, "rb") as handle:
                head = handle.read(300)
        except OSError:
            continue
        if LAUNCHER_MARK.encode() in head:
            found.append(path)
    return found


def fmapi_command():
    """The words that start fmapi for this user: "fmapi", a launcher's path, or "python3 /path/fmapi.pyz"."""
    if not _FMAPI_COMMAND:
        import shlex
        import shutil

        command = "fmapi"
        if not shutil.which("fmapi"):
            launchers = installed_launchers()
            script = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
            if launchers:
                command = shlex.quote(launchers[0])
            elif script and os.path.isfile(script) and _started_as_fmapi(script):
                same = os.path.realpath(shutil.which("python3") or "") == os.path.realpath(sys.executable)
                command = "%s %s" % ("python3" if same else shlex.quote(sys.executable), shlex.quote(script))
        _FMAPI_COMMAND.append(command)
    return _FMAPI_COMMAND[0]


def _started_as_fmapi(script):
    """True when ``script`` (sys.argv[0]) is this fmapi.py or a zipapp (the .pyz), not a host program."""
    import zipfile

    here = globals().get("__file__") or ""
    return os.path.realpath(script) == os.path.realpath(here) or zipfile.is_zipfile(script)


def runnable(text):
    """``text`` with each `fmapi ...` command written the way that starts fmapi for this user."""
    if "fmapi" not in text or fmapi_command() == "fmapi":
        return text
    import re

    return re.sub(r"(?<![\w./~'-])fmapi(?=(?: (?:setup|token|status|uninstall|gemini|copilot|doctor|models|reauth|--?[a-z])"
                  r"|`| again|\.(?:\s|$)|\)|$))", lambda m: fmapi_command(), text)


def say(text=""):
    """A line on stdout. A reader that went away (`fmapi status | head -1`) ends the output,
    not the work: the rest goes to /dev/null and fmapi finishes what it was doing."""
    try:
        print(runnable(text), flush=True)
    except BrokenPipeError:
        quiet_stdout()


def quiet_stdout():
    """Point stdout at /dev/null, so a closed pipe is never reported again (not even at exit)."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    except (OSError, ValueError):
        pass


VERBOSE = False  # --verbose: every Databricks CLI call and HTTP request is logged on stderr


def trace_cli(argv, outcome, started):
    """--verbose: one Databricks CLI call (argv holds no token), its exit status and time."""
    if VERBOSE:
        import shlex

        trace("cli: %s -> %s (%.2f s)" % (" ".join(shlex.quote(a) for a in argv), outcome, time.monotonic() - started))


def trace(text):
    """The one --verbose hook: the CLI runner and api() call it. Never pass it a token:
    argv never holds one (fmapi's rule) and api() logs the method and path only."""
    if VERBOSE:
        print("fmapi: [verbose] " + text, file=sys.stderr, flush=True)


def warn(text):
    WARNINGS.append(text)
    print(paint("fmapi: warning:", "warning", sys.stderr) + " " + runnable(text), file=sys.stderr, flush=True)


WARNINGS = []  # every warning of this run, in order: setup repeats them in its closing message


def error_text(text):
    """An error's lines for stderr: the first ("fmapi: ...") in the error colour."""
    first, _, rest = text.partition("\n")
    return paint(first, "error", sys.stderr) + ("\n" + rest if rest else "")


def step(number, total, title):
    say("\n" + paint("[%d/%d] %s" % (number, total, title), "heading", sys.stdout))


def _free_space(path):
    """Free space of the file system holding ``path`` (or its nearest existing parent), for people."""
    probe = os.path.abspath(path)
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe) if os.path.dirname(probe) != probe else ""
    try:
        st = os.statvfs(probe or "/")
    except OSError:
        return "unknown"
    free = st.f_bavail * st.f_frsize
    for unit in ("bytes", "KB", "MB", "GB"):
        if free < 1024 or unit == "GB":
            return ("%d %s" % (free, unit)) if unit == "bytes" else ("%.1f %s" % (free, unit))
        free /= 1024.0
    return "unknown"


def os_error_text(exc, where=None, doing=None):
    """(message, fix) for an OSError on a file fmapi reads or writes: the file, the cause, what to do.

    A full disk (ENOSPC, EDQUOT) or a file-size limit (EFBIG) names the file and the free space;
    only a read-only file system (EROFS) says so; anything else asks for ownership and permissions.
    """
    import errno

    filename = exc.filename or where
    shown = tilde(filename) if filename else "a file"
    reason = exc.strerror or str(exc)
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG):
        return ("%s %s: %s (%s free there)." % (doing or "could not write", shown, reason, _free_space(filename or ".")),
                "Free some disk space (or raise the file-size/quota limit), then retry.")
    if code == errno.EROFS:
        return ("%s %s: the file system is read-only." % (doing or "could not write", shown),
                "Run fmapi where that directory is writable, then retry.")
    return ("%s: %s." % ((doing + " " if doing else "") + shown, reason), "Check that you own it and can write there, then retry.")


# --------------------------------------------------------------------------------------
# 3. Files: atomic writes, JSON (also with comments), backups
# --------------------------------------------------------------------------------------


def write_atomic(path, data, mode=0o600):
    """Replace ``path`` with ``data`` so that readers see the old or the new file, never a part.

    The temporary file lives in the same directory (so the rename is atomic), gets its
    final mode before any byte is written, is fsynced, and is removed on any failure,
    KeyboardInterrupt and SystemExit (SIGTERM) included. Its name carries the writer's pid,
    so that the next write of the same file removes what a writer killed with SIGKILL left.
    """
    import errno
    import tempfile

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    prefix = "." + os.path.basename(path) + "."
    clear_dead_temp_files(directory, prefix)
    fd, tmp = tempfile.mkstemp(prefix="%s%d." % (prefix, os.getpid()), suffix=TMP_SUFFIX, dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)  # buffered: loops over short writes, raises on ENOSPC/EFBIG
            handle.flush()
            os.fsync(handle.fileno())
        if os.stat(tmp).st_size != len(data):
            raise OSError(errno.ENOSPC, "written short (%d of %d bytes)" % (os.stat(tmp).st_size, len(data)), path)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(exc, OSError) and exc.filename in (None, tmp):  # name the file, not the temporary one
            raise OSError(exc.errno, exc.strerror or str(exc), path) from None
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def check_link_target(path):
    """The real path of a user's file; FmapiError when it is a symlink to what another user owns.

    A dotfile manager's link (to a file the user owns, or a missing file in the user's own
    directory) is followed; a link planted to someone else's file is not.
    """
    real = os.path.realpath(path)
    if real == os.path.abspath(path):
        return real
    euid = os.geteuid()
    try:
        owner = os.stat(real).st_uid
    except FileNotFoundError:
        try:
            owner = os.stat(os.path.dirname(real)).st_uid
        except OSError:
            owner = euid  # nothing there: writing fails with its own error
    except OSError:
        owner = euid
    if owner != euid:
        raise FmapiError("%s is a symlink to %s, which another user (uid %d) owns; fmapi left both untouched."
                         % (tilde(path), tilde(real), owner),
                         fix="Replace the link with your own file (or point it at a file you own), then retry.")
    return real


def clear_dead_temp_files(directory, prefix):
    """Remove ``directory``'s temporary files named ``prefix<pid>.…TMP_SUFFIX`` whose writer
    process no longer exists (killed mid-write)."""
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        pid = entry[len(prefix):].split(".", 1)[0]
        if not (entry.startswith(prefix) and entry.endswith(TMP_SUFFIX) and pid.isdigit()):
            continue
        try:
            os.kill(int(pid), 0)
            continue  # the writer is alive (or another user's): its file
        except ProcessLookupError:
            pass
        except (PermissionError, OverflowError):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
        except OSError:
            pass


def write_in_place(path, data, mode=None):
    """Rewrite a user's file atomically where it really lives, keeping its mode.

    A symlink (a dotfile manager's) stays a symlink: its target is replaced. ``mode`` is
    forced when given; otherwise the file's current mode is kept (0600 for a new file).
    """
    real = check_link_target(path)
    if mode is None:
        try:
            mode = os.stat(real).st_mode & 0o777
        except OSError:
            mode = 0o600
    write_atomic(real, data, mode)


def _unsafe_reason(st, euid, final):
    """Why a directory with stat ``st`` is not private to ``euid`` (None when it is)."""
    import stat

    if st.st_uid not in (euid, 0):
        return "it is owned by another user (uid %d)" % st.st_uid
    if not stat.S_ISDIR(st.st_mode):
        return None
    if st.st_mode & 0o002:
        # /tmp-like: sticky and root's, others may add names but not move ours; never for the final directory
        if final or not (st.st_mode & stat.S_ISVTX and st.st_uid == 0):
            return "other users can write to it (mode %04o)" % (st.st_mode & 0o7777)
    if st.st_mode & 0o020 and not _own_group(st.st_gid, euid):
        return "its group (gid %d) can write to it (mode %04o)" % (st.st_gid, st.st_mode & 0o7777)
    return None


def _own_group(gid, euid):
    """True when group ``gid`` is the user's private group (user-private-group systems: umask 002)."""
    import grp
    import pwd

    try:
        user = pwd.getpwuid(euid).pw_name
        group = grp.getgrgid(gid)
    except (KeyError, ImportError):
        return False
    return gid == 0 and euid == 0 or (group.gr_name == user and set(group.gr_mem) <= {user})


def check_private_dir(directory, what="the token helper, cache and lock"):
    """Refuse (FmapiError) to use ``directory`` when a user other than this one (or root) could write there.

    Every existing directory on the way to it, as given and as resolved through symlinks, must be
    owned by the effective user or root and not writable by others (a root-owned sticky directory
    such as /tmp is fine on the way, never as the directory itself). A missing directory is fine:
    fmapi creates it 0700 and checks again (ensure_private_dir), so one planted meanwhile is
    refused too. Costs a few stat calls; never on the token helper's cache-hit path.
    """
    euid = os.geteuid()
    given = os.path.abspath(directory)
    real = os.path.realpath(given)
    for path in (given, real):
        probe = path
        chain = []
        while True:
            chain.append(probe)
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        for entry in chain:
            try:
                st = os.stat(entry)
            except OSError:
                continue  # not there yet (fmapi creates it 0700)
            reason = _unsafe_reason(st, euid, entry in (given, real))
            if reason:
                raise FmapiError(
                    "refusing to put %s in %s: %s%s; nothing was written."
                    % (what, tilde(directory), tilde(entry) + ": " if entry != given else "", reason),
                    fix="Use a directory only you can write to (e.g. chmod go-w %s, or another location), then retry."
                        % tilde(entry))


def ensure_private_dir(directory, what="the token helper, cache and lock"):
    """check_private_dir, then create ``directory`` (0700) when missing and check it again."""
    check_private_dir(directory, what)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o700, exist_ok=True)
        check_private_dir(directory, what)  # another user's directory planted between the check and mkdir


def open_private(path):
    """The bytes of a file fmapi wrote for this user, or None when it is missing or not trustworthy.

    The final symlink is not followed (O_NOFOLLOW), and a file another user owns or that
    group/others may read is ignored: one fstat of the open file, cheap enough for the hot path.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077 or not (st.st_mode & 0o170000 == 0o100000):
            return None
        chunks = [os.read(fd, st.st_size + 1)]  # one read for a file that did not grow since the fstat
        while len(chunks) > 1 or len(chunks[0]) > st.st_size:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


MAX_FILE_BYTES = 16 * 1024 * 1024  # no config file fmapi reads is near this: a bigger one is not one


def read_bytes(path, limit=MAX_FILE_BYTES):
    """The bytes of the regular file ``path`` (a symlink to one is followed), or None when it
    does not exist. Raises UnreadableFile for anything else there (a device such as /dev/zero,
    a FIFO, a directory) and for a file over ``limit`` bytes: nothing is read without bound."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise UnreadableFile(path, "it is a directory, not a file") from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o170000 != 0o100000:  # not S_ISREG
            raise UnreadableFile(path, "it is not a regular file")
        if st.st_size > limit:
            raise UnreadableFile(path, "it is larger than %d MiB" % (limit // (1024 * 1024)))
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # it grew while being read
                raise UnreadableFile(path, "it is larger than %d MiB" % (limit // (1024 * 1024)))
    finally:
        os.close(fd)


class UnparsableFile(FmapiError):
    def __init__(self, path, reason):
        super().__init__(
            "%s is not valid %s (%s); fmapi left it untouched." % (path, _kind_of(path), reason),
            fix="Fix or move the file, then run fmapi again.",
        )
        self.path = path
        self.reason = reason


class UnreadableFile(UnparsableFile):
    """A path fmapi would read that is not a regular file of a sane size: never backed up or replaced."""

    def __init__(self, path, reason):
        FmapiError.__init__(
            self, "%s cannot be read as a config file (%s); fmapi left it untouched." % (path, reason),
            fix="Put a regular file there (or remove it), then run fmapi again.",
        )
        self.path = path
        self.reason = reason


def _kind_of(path):
    return "TOML" if str(path).endswith(".toml") else "JSON"


UTF8_BOM = b"\xef\xbb\xbf"


class TextStyle:
    """How a user's text file is laid out, so that fmapi writes it back the same way.

    ``bom``: it starts with a UTF-8 byte-order mark (Windows editors and PowerShell 5.1
    write one; Claude Code and Codex read such files, anthropics/claude-code#9906).
    ``newline``: "\\r\\n" or "\\n", from its first line. ``indent`` (a string, or None for
    a one-line JSON document), ``separators`` and ``final_newline`` describe a JSON file.
    One reader (read_text) and one writer (encode) serve every format fmapi edits.
    """

    def __init__(self, bom=False, newline="\n", indent="  ", separators=(",", ": "), final_newline=True):
        self.bom = bom
        self.newline = newline
        self.indent = indent
        self.separators = separators
        self.final_newline = final_newline

    @classmethod
    def of(cls, text, bom=False):
        """The style of ``text`` (already without its byte-order mark)."""
        import re

        style = cls(bom=bom)
        first = text.find("\n")
        if first > 0 and text[first - 1] == "\r":
            style.newline = "\r\n"
        body = text.strip()
        if body.startswith(("{", "[")):
            if "\n" not in body:
                style.indent = None
                style.separators = ("," if not re.search(r",\s", body) else ", ",
                                    ":" if not re.search(r"\":\s", body) else ": ")
            else:
                match = re.search(r"\n([ \t]+)\S", body)
                if match:
                    style.indent = match.group(1)
            style.final_newline = text.endswith("\n")
        return style

    def encode(self, text):
        """``text`` (written with "\\n" or already in this file's line ending) as the file's bytes."""
        if self.newline == "\r\n" and "\r\n" not in text:
            text = text.replace("\n", "\r\n")
        return (UTF8_BOM if self.bom else b"") + text.encode("utf-8")


def read_text(path, name=None):
    """(text without a leading byte-order mark or None when the file does not exist, its TextStyle).

    Raises UnparsableFile when the bytes are not UTF-8, UnreadableFile (read_bytes) when it is
    not a regular file of a sane size; either names ``name`` (the user's path) when given.
    """
    try:
        raw = read_bytes(path)
    except UnreadableFile as exc:
        raise UnreadableFile(name or path, exc.reason) from None
    if raw is None:
        return None, TextStyle()
    bom = raw.startswith(UTF8_BOM)
    try:
        text = raw[len(UTF8_BOM) if bom else 0:].decode("utf-8")
    except UnicodeDecodeError:
        raise UnparsableFile(name or path, "it is not UTF-8") from None
    return text, TextStyle.of(text, bom)


def load_json_document(path):
    """(the JSON object in ``path``, its TextStyle); ({}, default style) when the file is missing
    or empty. A leading byte-order mark is accepted and remembered. UnparsableFile otherwise."""
    text, style = read_text(path)
    if text is None or not text.strip():
        return {}, style
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise UnparsableFile(path, str(exc).split("\n")[0]) from None
    except (RecursionError, MemoryError):
        raise UnparsableFile(path, "it is nested too deeply to read") from None
    if not isinstance(value, dict):
        raise UnparsableFile(path, "the top level is a JSON %s, not an object" % json_type_name(value))
    return value, style


def json_type_name(value):
    """JSON's name for the type of a parsed ``value``: "array", "string", "number", ..."""
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return "null" if value is None else "object"


def load_json_object(path):
    """The JSON object in ``path``; {} when the file is missing; UnparsableFile otherwise."""
    return load_json_document(path)[0]


def dump_json(value, style=None):
    """``value`` as JSON text (fmapi's own files), or as bytes laid out like a user's file (``style``)."""
    if style is None:
        return json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    text = json.dumps(value, indent=style.indent, separators=style.separators, ensure_ascii=False)
    return style.encode(text + ("\n" if style.final_newline else ""))


def backup_aside(path):
    """Move ``path`` to a timestamped sibling and return the new name (the bytes are kept)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = "%s.fmapi-backup-%s" % (path, stamp)
    n = 1
    while os.path.exists(target):
        n += 1
        target = "%s.fmapi-backup-%s-%d" % (path, stamp, n)
    os.rename(path, target)
    return target


def remove_file(path):
    """Delete ``path``; True when something was deleted."""
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


def owner_name(uid):
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        return "uid %d" % uid


def _nearest_existing(path):
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _read_only_fs(path):
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


def write_problem(path, directory=False):
    """Why fmapi could not write ``path`` (a file it replaces atomically, or with ``directory``
    a directory it creates files in), or None. Follows symlinks to the real file.

    Returns (the real path, the reason in words). Checked before anything is minted or written.
    """
    real = os.path.realpath(path)
    target = real if directory else os.path.dirname(real)
    if os.path.exists(real) and not directory:
        info = os.stat(real)
        if info.st_uid != os.geteuid():
            return real, "belongs to %s" % owner_name(info.st_uid)
        if _read_only_fs(real):
            return real, "is on a read-only file system"
    existing = _nearest_existing(target)
    if _read_only_fs(existing):
        return real, "is on a read-only file system"
    if os.path.isdir(existing) and not os.access(existing, os.W_OK | os.X_OK):
        return real, "is in a directory you cannot write (%s)" % tilde(existing)
    return None


def running_as_root_for(paths):
    """The owner's name when fmapi runs as root and a path (or its nearest existing parent)
    belongs to another user, else None: root-owned files in a user's home lock them out."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    for path in paths:
        existing = _nearest_existing(os.path.abspath(path))
        try:
            uid = os.stat(existing).st_uid
        except OSError:
            continue
        if uid != 0:
            return owner_name(uid), existing
    return None


def git_work_tree(path):
    """(the work tree's top directory, its repository's info/exclude file) when ``path`` is inside
    a git work tree (a clone, a linked worktree or a submodule), else None. Reads .git itself: no
    git binary is needed. Facts from gitrepository-layout(5): a ``.git`` file says ``gitdir: X``;
    a linked worktree's gitdir names the shared repository in its ``commondir`` file."""
    current = os.path.abspath(path)
    while True:
        dotgit = os.path.join(current, ".git")
        gitdir = None
        if os.path.isdir(dotgit):
            gitdir = dotgit
        elif os.path.isfile(dotgit):
            text = (read_bytes(dotgit) or b"").decode("utf-8", "replace").strip()
            if text.startswith("gitdir:"):
                gitdir = os.path.normpath(os.path.join(current, text[len("gitdir:"):].strip()))
        if gitdir and os.path.isdir(gitdir):
            common = gitdir
            pointer = read_bytes(os.path.join(gitdir, "commondir"))
            if pointer:
                common = os.path.normpath(os.path.join(gitdir, pointer.decode("utf-8", "replace").strip()))
            return current, os.path.join(common, "info", "exclude")
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def exclude_add(path, lines):
    """Add ``lines`` (those not there yet) to a git exclude file; what uninstall needs to take
    exactly them out again: {"path", "added", "created", "newline_added"}."""
    raw = read_bytes(path)
    text = raw.decode("utf-8", "surrogateescape") if raw is not None else ""
    present = set(text.splitlines())
    added = [line for line in lines if line not in present]
    undo = {"path": path, "added": added, "created": raw is None, "newline_added": bool(text) and not text.endswith("\n")}
    if added:
        if undo["newline_added"]:
            text += "\n"
        text += "".join(line + "\n" for line in added)
        mode = os.stat(path).st_mode & 0o777 if raw is not None else 0o644
        write_atomic(path, text.encode("utf-8", "surrogateescape"), mode)
    return undo


def exclude_remove(undo):
    """Take out exactly the lines exclude_add added (the first match of each); True when changed."""
    path = undo.get("path")
    raw = read_bytes(path) if path else None
    if raw is None or not undo.get("added"):
        return False
    lines = raw.decode("utf-8", "surrogateescape").splitlines(keepends=True)
    for line in undo["added"]:
        for index, existing in enumerate(lines):
            if existing.rstrip("\r\n") == line:
                del lines[index]
                break
    text = "".join(lines)
    if undo.get("newline_added") and text.endswith("\n"):
        text = text[:-1]
    if not text and undo.get("created"):
        remove_file(path)
    else:
        write_atomic(path, text.encode("utf-8", "surrogateescape"), os.stat(path).st_mode & 0o777)
    return True


def leftover_temp_files(directory, names):
    """Temporary files fmapi may have left beside ``names`` in ``directory``."""
    found = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return found
    for entry in entries:
        if entry.endswith(TMP_SUFFIX) and any(entry.startswith("." + name + ".") for name in names):
            found.append(os.path.join(directory, entry))
    return sorted(found)


# JSON with comments (OpenCode's opencode.jsonc, Pi's models.json): fmapi edits such a file
# in place, one member at a time, so the user's comments, order and layout stay byte for
# byte; only the members fmapi sets or removes change. Trailing commas are accepted.


class JsoncError(ValueError):
    """The text is not JSON with comments; the message names the line."""


class _JsoncScanner:
    """Parses JSON with // and /* */ comments into nodes that remember where they are.

    A node is a dict: ``kind`` ("object", "array" or "scalar"), ``start`` and ``end``
    (offsets into the text), ``value`` (the Python value) and, for objects, ``members``:
    [{"key", "start" (of the key), "node", "comma" (offset of the comma after it, or None)}].
    """

    def __init__(self, text):
        import re

        self.text = text
        self.pos = 0
        self.string_re = re.compile(r'"(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"')
        self.literal_re = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null")

    def fail(self, message):
        raise JsoncError("line %d: %s" % (self.text.count("\n", 0, self.pos) + 1, message))

    def skip(self):
        text, size = self.text, len(self.text)
        while self.pos < size:
            if text[self.pos] in " \t\r\n\ufeff":
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = size if end < 0 else end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    self.fail("unclosed /* comment")
                self.pos = end + 2
            else:
                return

    def string(self):
        match = self.string_re.match(self.text, self.pos)
        if not match:
            self.fail("expected a string")
        self.pos = match.end()
        return json.loads(match.group())

    def value(self, depth=0):
        self.skip()
        start = self.pos
        if depth > 200:
            self.fail("nested too deeply")
        char = self.text[start:start + 1]
        if char == "{":
            return self.container(start, depth, "}")
        if char == "[":
            return self.container(start, depth, "]")
        if char == '"':
            value = self.string()
        else:
            match = self.literal_re.match(self.text, start)
            if not match:
                self.fail("expected a value")
            self.pos = match.end()
            value = json.loads(match.group())
        return {"kind": "scalar", "start": start, "end": self.pos, "value": value}

    def container(self, start, depth, close):
        self.pos += 1
        entries, separated = [], True
        while True:
            self.skip()
            if self.text.startswith(close, self.pos):
                self.pos += 1
                break
            if not separated:
                self.fail("expected ',' or '%s'" % close)
            entry_start = self.pos
            key = None
            if close == "}":
                key = self.string()
                self.skip()
                if not self.text.startswith(":", self.pos):
                    self.fail("expected ':'")
                self.pos += 1
            entry = {"key": key, "start": entry_start, "node": self.value(depth + 1), "comma": None}
            entries.append(entry)
            self.skip()
            separated = self.text.startswith(",", self.pos)
            if separated:
                entry["comma"] = self.pos
                self.pos += 1
        if close == "}":
            return {"kind": "object", "start": start, "end": self.pos, "members": entries,
                    "value": {e["key"]: e["node"]["value"] for e in entries}}
        return {"kind": "array", "start": start, "end": self.pos, "value": [e["node"]["value"] for e in entries]}


def jsonc_parse(text):
    """The root node of ``text`` (see _JsoncScanner); JsoncError when it is not JSON with comments."""
    scanner = _JsoncScanner(text)
    root = scanner.value()
    scanner.skip()
    if scanner.pos != len(text):
        scanner.fail("unexpected text after the end")
    return root


def jsonc_load(text):
    """The top-level object of ``text`` as a dict ({} for an empty text); JsoncError otherwise."""
    if not text.strip():
        return {}
    root = jsonc_parse(text)
    if root["kind"] != "object":
        raise JsoncError("the top level is a JSON %s, not an object" % json_type_name(root["value"]))
    return root["value"]


def _jsonc_member(node, key):
    """The last member ``key`` of an object node (the one JSON.parse keeps), or None."""
    found = [m for m in node["members"] if m["key"] == key]
    return found[-1] if found else None


def jsonc_find(text, path):
    """The node at ``path`` (a tuple of keys) in ``text``, or None when a key is missing."""
    node = jsonc_parse(text)
    for key in path:
        member = _jsonc_member(node, key) if node["kind"] == "object" else None
        if member is None:
            return None
        node = member["node"]
    return node


def _line_indent(text, pos):
    start = text.rfind("\n", 0, pos) + 1
    line = text[start:pos]
    return line if not line.strip() else line[:len(line) - len(line.lstrip())]


def _jsonc_dump(value, indent, newline):
    """``value`` as indented JSON whose lines after the first start with ``indent``."""
    lines = json.dumps(value, indent=2, ensure_ascii=False).split("\n")
    return (newline + indent).join(lines)


def jsonc_set(text, path, value=None, raw=None):
    """``text`` with the member at ``path`` set to ``value`` (or to the JSON text ``raw``).

    An existing value is replaced where it is; a missing member is added at the end of its
    object (missing objects on the way are created). Nothing else in the text changes.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    if not text.strip():
        nested = value
        for key in reversed(path):
            nested = {key: nested}
        return dump_json(nested).replace("\n", newline) if raw is None else text
    node = jsonc_parse(text)
    for depth, key in enumerate(path):
        if node["kind"] != "object":
            raise JsoncError("%s is not an object" % ".".join(path[:depth]))
        member = _jsonc_member(node, key)
        if member is None:
            return _jsonc_insert(text, node, key, path[depth + 1:], value, raw, newline)
        node = member["node"]
    outer = _line_indent(text, node["start"])
    written = raw if raw is not None else _jsonc_dump(value, outer, newline)
    return text[:node["start"]] + written + text[node["end"]:]


def _jsonc_insert(text, node, key, rest, value, raw, newline):
    outer = _line_indent(text, node["start"])
    members = node["members"]
    inner = _line_indent(text, members[0]["start"]) if members else outer + "  "
    for name in reversed(rest):
        value = {name: value}
    written = raw if raw is not None and not rest else _jsonc_dump(value, inner, newline)
    entry = json.dumps(key, ensure_ascii=False) + ": " + written
    if not members:
        at = node["start"] + 1
        return text[:at] + newline + inner + entry + newline + outer + text[at:]
    last = members[-1]
    if last["comma"] is not None:  # the user's style has a trailing comma: keep it
        eol = _end_of_line(text, last["comma"] + 1)
        return text[:eol] + newline + inner + entry + "," + text[eol:]
    at = last["node"]["end"]
    text = text[:at] + "," + text[at:]
    eol = _end_of_line(text, at + 1)
    return text[:eol] + newline + inner + entry + text[eol:]


def _end_of_line(text, pos):
    """Where to put a new line after ``pos``: the line's end when only blanks or a // comment follow."""
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    if end > 0 and text[end - 1] == "\r":
        end -= 1
    rest = text[pos:end].strip()
    return end if not rest or rest.startswith("//") else pos


def jsonc_remove(text, path):
    """``text`` without the member at ``path`` (its line and separating comma); unchanged when missing."""
    if not path:
        return text
    parent = jsonc_find(text, path[:-1])
    if parent is None or parent["kind"] != "object":
        return text
    member = _jsonc_member(parent, path[-1])
    if member is None:
        return text
    index = parent["members"].index(member)
    start = member["start"]
    line_start = text.rfind("\n", 0, start) + 1
    if not text[line_start:start].strip():  # the member starts its line: take the line break before it too
        start = line_start - 1 if line_start > 0 else line_start
        if start > 0 and text[start - 1] == "\r":
            start -= 1
    end = member["node"]["end"] if member["comma"] is None else member["comma"] + 1
    cut = [(start, end)]
    if member["comma"] is None and index > 0:  # the last member: the comma before it goes too
        comma = parent["members"][index - 1]["comma"]
        cut.insert(0, (comma, comma + 1))
    for begin, finish in reversed(cut):
        text = text[:begin] + text[finish:]
    return text


def read_jsonc_file(path):
    """(text, object) of a JSON-with-comments file: (None, {}) when missing; UnparsableFile otherwise."""
    text, style = read_text(os.path.realpath(path), name=path)
    if text is None:
        return None, {}
    if style.bom:  # not known to be read by the agents using JSONC here: say it is the cause, change nothing
        raise UnparsableFile(path, "it starts with a UTF-8 byte-order mark; save it as UTF-8 without one")
    try:
        return text, jsonc_load(text)
    except JsoncError as exc:
        raise UnparsableFile(path, str(exc)) from None
    except (RecursionError, MemoryError):
        raise UnparsableFile(path, "it is nested too deeply to read") from None


def apply_json_edits(path, edits, previous=None):
    """Set members of the JSON(C) file ``path`` in place and return how to undo it.

    ``edits``: [(key path tuple, value, owned)]; an *owned* member (fmapi's own namespace,
    e.g. its provider) is removed on undo whatever it holds, another one only while it still
    holds fmapi's value. ``previous`` is the undo record of an earlier run on this file: a
    member that still holds fmapi's value keeps the user's original from then. The undo
    record: {"file", "created", "members": [{"path", "written", "original" (JSON text or
    None), "owned", "parents" (containers fmapi created)}]}.
    """
    text, _ = read_jsonc_file(path)
    before = {}
    if previous and previous.get("file") == path:
        before = {tuple(m["path"]): m for m in previous.get("members") or []}
    new, members = text or "", []
    for keys, value, owned in edits:
        node = jsonc_find(new, keys) if new.strip() else None
        old = before.get(tuple(keys))
        if node is not None and old is not None and (owned or node["value"] == old["written"]):
            original, parents = old.get("original"), old.get("parents") or []
        else:
            original = new[node["start"]:node["end"]] if node is not None else None
            parents = [list(keys[:n]) for n in range(1, len(keys))
                       if not new.strip() or jsonc_find(new, keys[:n]) is None]
        members.append({"path": list(keys), "written": value, "original": original, "owned": owned, "parents": parents})
        try:
            new = jsonc_set(new, keys, value)
        except JsoncError as exc:
            raise FmapiError("%s: %s, where fmapi must add %s; fmapi left the file untouched."
                             % (tilde(path), exc, ".".join(keys)),
                             fix="Fix the file (it must be an object there), then re-run fmapi.") from None
    merged = jsonc_load(new)
    for keys, value, _ in edits:
        found = merged
        for key in keys:
            found = found.get(key) if isinstance(found, dict) else None
        if found != value:
            raise FmapiError("fmapi could not merge its settings into %s; the file is untouched." % tilde(path),
                             fix="Move the file aside and run fmapi again, or report this at %s/issues" % HOMEPAGE)
    if new != text:
        write_in_place(path, new)
    created = text is None or bool(previous and previous.get("file") == path and previous.get("created"))
    return {"file": path, "created": created, "members": members}


def undo_json_edits(undo, report):
    """Put back what ``apply_json_edits`` changed, keeping what the user changed since.

    False (with the reason in ``report.failed``) when the file could not be read as JSON.
    """
    path = undo["file"]
    try:
        text, _ = read_jsonc_file(path)
    except UnparsableFile as exc:
        names = ", ".join(".".join(m["path"]) for m in undo.get("members") or [])
        report.failed.append("%s; remove %s by hand, then run fmapi --uninstall again" % (exc.message.rstrip("."), names))
        return False
    if text is None:
        return True
    new = text
    for member in reversed(undo.get("members") or []):
        keys = tuple(member["path"])
        node = jsonc_find(new, keys) if new.strip() else None
        if node is None:
            continue
        if not member.get("owned") and node["value"] != member.get("written"):
            report.kept.append("%s: %s = %s (you changed it)" % (tilde(path), ".".join(keys), json.dumps(node["value"])))
            continue
        original = member.get("original")
        new = jsonc_set(new, keys, raw=original) if original is not None else jsonc_remove(new, keys)
        for parent in sorted(member.get("parents") or [], key=len, reverse=True):
            found = jsonc_find(new, tuple(parent))
            if found is not None and found["value"] == {}:
                new = jsonc_remove(new, tuple(parent))
    if new == text:
        return True
    if undo.get("created") and jsonc_load(new) == {}:
        remove_file(os.path.realpath(path))
        report.removed.append(tilde(path) + " (fmapi created it)")
    else:
        write_in_place(path, new)
        report.removed.append("fmapi's settings from %s (earlier values restored)" % tilde(path))
    return True


# --------------------------------------------------------------------------------------
# 4. Time: RFC 3339 as Go prints it
# --------------------------------------------------------------------------------------


def parse_rfc3339(text):
    """Seconds since the epoch for an RFC 3339 time as Go's RFC3339Nano prints it.

    Handles ``Z`` and ``+hh:mm`` offsets and 0 to 9 fractional digits, which
    ``datetime.fromisoformat`` does not on Python 3.9/3.10.
    """
    import calendar
    import re

    match = re.match(
        r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:?\d\d)$",
        text.strip(),
    )
    if not match:
        raise ValueError("not an RFC 3339 time: %r" % text)
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    fraction = float("0." + match.group(7)) if match.group(7) else 0.0
    zone = match.group(8)
    offset = 0
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)) - offset + fraction


# --------------------------------------------------------------------------------------
# 5. The token cache and the helper's hot path
#
# Every agent start runs the helper; almost always the cached PAT is still good, and
# that answer must cost one file read: no network, no subprocess, no heavy import.
# --------------------------------------------------------------------------------------


def read_cache(path):
    """The cache's JSON object, or None when it is missing, unreadable or not trustworthy (open_private)."""
    raw = open_private(path)
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def peek_cache(raw):
    """The cache fields the hot path needs, read without the json module.

    fmapi writes the cache with one ``"key": value`` per line (``dump_json``); anything
    else (escapes, another layout) returns None and the caller parses real JSON instead.
    """
    found = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        key, sep, value = line.strip().rstrip(",").partition(": ")
        if sep and key in ('"token"', '"expiry"', '"host"'):
            found[key[1:-1]] = value
    try:
        token, host, expiry = found["token"], found["host"], int(found["expiry"])
    except (KeyError, ValueError):
        return None
    for text in (token, host):
        if len(text) < 2 or text[0] != '"' or text[-1] != '"' or "\\" in text:
            return None
    return {"token": token[1:-1], "host": host[1:-1], "expiry": expiry}


def usable_token(cache, host, min_left, now=None):
    """The cached PAT when it belongs to ``host`` and has ``min_left`` seconds left."""
    if not cache or cache.get("host") != host:
        return None
    token, expiry = cache.get("token"), cache.get("expiry")
    if not isinstance(token, str) or not token or not isinstance(expiry, (int, float)):
        return None
    if expiry - (time.time() if now is None else now) < min_left:
        return None
    return token


def handed_out_again(directory, now=None):
    """Record that the cached token is handed out now; True when it was handed out less than
    REASK_WINDOW seconds ago and no liveness check ran in the last CHECK_INTERVAL seconds.

    An agent whose request was refused asks again at once (Claude Code 2.1.331 on 401 and
    403, Codex on 401), which the helper cannot tell from a new agent starting: a re-ask this
    soon is the cue to check the token (serve_token). The cost on the hot path: a stat and a
    utime of the empty marker SERVED_NAME (a second stat on a re-ask); no file is read.
    """
    served = os.path.join(directory, SERVED_NAME)
    now = time.time() if now is None else now
    try:
        last = os.stat(served).st_mtime
        touch(served)
    except OSError:
        last = 0.0
        touch(served)
    if not 0 <= now - last < REASK_WINDOW:
        return False
    try:
        st = os.stat(os.path.join(directory, CHECKED_NAME))
        checked = st.st_mtime if st.st_size else 0.0  # empty: created, never checked
    except OSError:
        checked = 0.0
    return not 0 <= now - checked < CHECK_INTERVAL


def claim_check(directory, deadline):
    """The right to check the cached token now: an open, flock-ed CHECKED_NAME marker (close
    it when the check and any replacement are done), or None when another helper checked it
    within CHECK_INTERVAL (waiting for one that is checking, up to ``deadline``)."""
    import fcntl

    path = os.path.join(directory, CHECKED_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    except OSError:
        return None
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if deadline.left() <= 0:
                    raise
                time.sleep(0.05)
        st = os.fstat(fd)
        if st.st_size and 0 <= time.time() - st.st_mtime < CHECK_INTERVAL:
            raise BlockingIOError  # checked meanwhile
        os.ftruncate(fd, 1)  # not empty: checked (the mtime says when)
        os.utime(fd)
        return fd
    except OSError:
        os.close(fd)
        return None


def touch(path):
    """Set ``path``'s mtime to now, creating it empty (0600) when missing; never follows a symlink."""
    try:
        os.utime(path, follow_symlinks=False)
    except FileNotFoundError:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        except OSError:
            pass
    except (OSError, NotImplementedError):
        pass


def helper_main(argv):
    """Entry point of every generated helper script: print a valid PAT, nothing else.

    ``argv`` is ``[dir, host, min_left, spec_json]``: the first three answer a cache hit;
    the TokenSpec (as JSON) is only parsed when a PAT must be minted, or when the cached
    token is asked for again right after it was handed out (handed_out_again), so the
    helper keeps working when the cache is deleted.
    """
    try:
        directory, host, min_left, spec_json = argv
        raw = open_private(os.path.join(directory, CACHE_NAME)) or b""
        cache = peek_cache(raw) or (read_cache(os.path.join(directory, CACHE_NAME)) if raw else None)
        token = usable_token(cache, host, int(min_left))
        if token and not handed_out_again(directory):
            os.write(1, (token + "\n").encode())
            return 0
        return serve_token(TokenSpec(**json.loads(spec_json)), background_revoke=True, suspect=token)
    except Exception as exc:  # the agent shows stderr: one line, never a traceback
        return report_crash(exc)


def report_crash(exc):
    """One line on stderr for an exception nobody expected on the helper's path; exit status 1.

    Only the exception's type and where it happened are shown (its text may hold a URL or a
    value from a user's file), with the command that reproduces it for a bug report.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = " at line %d" % tb.tb_lineno if tb is not None else ""
    sys.stderr.write("fmapi: the token helper failed (%s%s in fmapi %s). Run `fmapi token` to retry, and report "
                     "it with `fmapi --version` at %s/issues\n" % (type(exc).__name__, where, __version__, HOMEPAGE))
    sys.stderr.flush()
    return 1


def serve_token(spec, background_revoke=False, suspect=None):
    """The slow path of the helper and of ``fmapi token``: renew under the lock and print.

    ``suspect`` is the cached token, asked for again right after it was handed out: one
    read-only call checks it first (token_alive). A live one is printed as it is (no CLI,
    no mint); a refused one is replaced under the lock and revoked like any replaced PAT
    (the refusal may be spurious: it stays in the ledger until token/delete confirms it gone).
    When renewing fails but the cached PAT still has a few minutes (even the refused one),
    that PAT is printed with the reason on stderr, so an agent keeps working until the user can act.
    """
    import signal

    os.umask(0o077)
    signal.signal(signal.SIGTERM, _terminate)  # an agent that gives up on us: no temp file left
    deadline = Deadline(HELPER_DEADLINE)
    claim = []  # the CHECKED_NAME marker's fd while this helper checks and replaces the token

    def release():
        while claim:
            os.close(claim.pop())

    if suspect is not None:
        fd = claim_check(spec.dir, deadline)  # marked before the call: one check per interval, even if killed
        if fd is None:  # another helper checked it just now (and replaced it if it was dead)
            current = usable_token(read_cache(spec.cache_path), spec.host, spec.min_left) or suspect
            sys.stdout.write(current + "\n")
            sys.stdout.flush()
            return 0
        claim.append(fd)
        if token_alive(spec.host, suspect, Deadline(CHECK_DEADLINE)) is not False:
            release()
            sys.stdout.write(suspect + "\n")
            sys.stdout.flush()
            return 0
        print("fmapi: the workspace refuses the cached token (revoked or expired there); getting a new one.",
              file=sys.stderr, flush=True)
    try:
        return _renew_and_print(spec, background_revoke, suspect, deadline, release)
    finally:
        release()


def _renew_and_print(spec, background_revoke, suspect, deadline, release):
    """serve_token's renewal: a token from obtain_token printed, or the fallback; ``release``
    runs once the token is out (before a background revocation, which must not inherit it)."""
    try:
        token, replaced = obtain_token(spec, deadline=deadline, dead=suspect)
    except (FmapiError, OSError) as exc:
        if not isinstance(exc, FmapiError):
            exc = FmapiError(*os_error_text(exc, spec.dir))
        print(exc.render(), file=sys.stderr, flush=True)
        cache = read_cache(spec.cache_path)
        stale = usable_token(cache, spec.host, MIN_REMAINING)
        if stale:  # even the one the check judged dead: a 401 there is no proof it fails here
            print("fmapi: using the cached token meanwhile; it expires in %d minutes."
                  % ((cache["expiry"] - time.time()) // 60), file=sys.stderr, flush=True)
            sys.stdout.write(stale + "\n")
            sys.stdout.flush()
            return 0
        return exc.code
    except KeyboardInterrupt:
        return 130
    sys.stdout.write(token + "\n")
    sys.stdout.flush()
    release()
    if replaced:
        if background_revoke:
            revoke_in_background(*replaced)
        else:
            revoke_quietly(*replaced)
    return 0


# --------------------------------------------------------------------------------------
# 6. Databricks
#
# Nothing else in fmapi talks to Databricks, and no agent reaches around this section.
#   6a profiles: ~/.databrickscfg as the CLI reads it (every profile kind, DEFAULT included)
#   6b the CLI: the one function that runs `databricks`
#   6c REST: the one function that calls the workspace, and the PAT calls
#   6d credentials: PAT or OAuth, chosen by the install record, behind one small interface
# --------------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------
# 6a. Profiles
#
# One reader for `.databrickscfg` (or $DATABRICKS_CONFIG_FILE). `[DEFAULT]` is an ordinary
# profile here (Python's configparser would hide it, databricks/databricks-cli#107);
# `[__settings__]` is not a profile. fmapi signs in (`databricks auth login`) only on a
# browser-login (U2M) profile: a login over a PAT or service-principal profile rewrites it
# and drops its keys (databricks/cli#484).
# --------------------------------------------------------------------------------------

PROFILE_U2M, PROFILE_PAT, PROFILE_M2M, PROFILE_OTHER = "u2m", "pat", "m2m", "other"
SETTINGS_SECTION = "__settings__"
OTHER_CREDENTIAL_KEYS = ("password", "azure_client_secret", "google_credentials", "metadata_service_url")


def databricks_config_file(recorded=None):
    """The CLI's config file: ``recorded`` (setup's DATABRICKS_CONFIG_FILE), else the
    environment's DATABRICKS_CONFIG_FILE, else ~/.databrickscfg. An absolute path."""
    path = recorded or os.environ.get("DATABRICKS_CONFIG_FILE") or os.path.join("~", ".databrickscfg")
    return os.path.abspath(os.path.expanduser(path))


def read_databrickscfg(config_file=None):
    """``(profiles, settings)`` from the CLI's config file.

    ``profiles`` is ``{name: {key: value}}`` in file order (keys lower-case), DEFAULT
    included; ``settings`` is the ``[__settings__]`` section (e.g. ``default_profile``).
    A missing or unreadable file gives ``({}, {})``.
    """
    import configparser

    parser = configparser.ConfigParser(interpolation=None, strict=False, default_section="\0no-default")
    try:
        parser.read(databricks_config_file(config_file), encoding="utf-8-sig")
    except (configparser.Error, UnicodeDecodeError, OSError):
        return {}, {}
    profiles, settings = {}, {}
    for section in parser.sections():
        keys = {key: value.strip() for key, value in parser.items(section)}
        if section == SETTINGS_SECTION:
            settings = keys
        else:
            profiles[section] = keys
    return profiles, settings


def profile_kind(keys):
    """How a profile signs in: PROFILE_U2M (browser login through the CLI: ``auth_type =
    databricks-cli``, or no ``token``, ``client_id`` or ``client_secret``), PROFILE_PAT
    (``token``), PROFILE_M2M (``client_id``/``client_secret``: a service principal) or
    PROFILE_OTHER (another ``auth_type``, e.g. azure-cli, or other credential keys)."""
    auth_type = (keys.get("auth_type") or "").strip().lower()
    if auth_type == "databricks-cli":
        return PROFILE_U2M
    if keys.get("token") or auth_type == "pat":
        return PROFILE_PAT
    if keys.get("client_id") or keys.get("client_secret") or auth_type == "oauth-m2m":
        return PROFILE_M2M
    if auth_type or any(keys.get(key) for key in OTHER_CREDENTIAL_KEYS):
        return PROFILE_OTHER
    return PROFILE_U2M


def describe_profile_kind(keys):
    kind = profile_kind(keys)
    if kind == PROFILE_PAT:
        return "a personal access token profile (it holds `token`)"
    if kind == PROFILE_M2M:
        return "a service-principal (M2M) profile (it holds client_id/client_secret)"
    return "a profile that signs in with auth_type = %s" % (keys.get("auth_type") or "another method")


def same_workspace(url, host):
    """True when the profile's ``url`` names the workspace ``host`` (scheme://host[:port])."""
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit((url or "").strip())
        netloc = parts.hostname or ""
        if parts.port is not None:
            netloc += ":%d" % parts.port
    except ValueError:
        return False
    netloc = ("[%s]" % netloc) if netloc.count(":") > 1 else netloc
    return bool(parts.scheme) and "%s://%s" % (parts.scheme.lower(), netloc) == host


def validate_profile(name):
    """``name`` stripped, when `.databrickscfg` can hold it as a section; UsageError otherwise.

    Any name the CLI accepts works (``acme.prod``, ``my workspace``, ``DEFAULT``); only what
    cannot be a section header is refused.
    """
    name = name.strip()
    bad = not name or name[0] in "-#;" or name == SETTINGS_SECTION \
        or any(c in "[]" or ord(c) < 32 or ord(c) == 127 for c in name)
    if bad:
        raise UsageError("'%s' cannot be a Databricks CLI profile name." % name,
                         fix="Choose another name, e.g. my-workspace (no brackets, no leading '-', '#' or ';').")
    return name


def free_profile_name(host, profiles):
    """A profile name derived from ``host`` that no profile in ``profiles`` uses yet."""
    import re
    import urllib.parse

    parts = urllib.parse.urlsplit(host)
    hostname = parts.hostname or "workspace"
    label = hostname if _is_loopback(hostname) else hostname.split(".")[0]
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", label).strip("-") or "workspace"
    if parts.port:
        base += "-%d" % parts.port
    name, n = base, 1
    while name in profiles or name == SETTINGS_SECTION:
        n += 1
        name = "%s-%d" % (base, n)
    return name


def default_profile(host, config_file=None):
    """The profile setup uses for ``host`` when none is named.

    A browser-login (U2M) profile for that workspace, ``[__settings__] default_profile``
    first, else the first by name (DEFAULT included); PAT and M2M profiles are never
    chosen. Without one, a free name derived from the host (the sign-in creates it).
    """
    profiles, settings = read_databrickscfg(config_file)
    ours = sorted(name for name, keys in profiles.items()
                  if same_workspace(keys.get("host"), host) and profile_kind(keys) == PROFILE_U2M)
    if settings.get("default_profile") in ours:
        return settings["default_profile"]
    if ours:
        return ours[0]
    return free_profile_name(host, profiles)


def profile_for_host(name, host, config_file=None):
    """``name`` when fmapi may use it for ``host``: free, or a U2M profile of that workspace.

    UsageError for a profile of another workspace (signing in would repoint it) and for a
    PAT, M2M or other profile (signing in over it would drop its keys, databricks/cli#484);
    the fix names a free profile to use instead.
    """
    name = validate_profile(name)
    profiles, _ = read_databrickscfg(config_file)
    keys = profiles.get(name)
    if keys is None:
        return name
    instead = "Use another profile name, e.g. --profile %s" % default_profile(host, config_file)
    if not same_workspace(keys.get("host"), host):
        raise UsageError("CLI profile '%s' belongs to %s, not %s; fmapi will not repoint it."
                         % (name, keys.get("host") or "no workspace", host), fix=instead)
    if profile_kind(keys) != PROFILE_U2M:
        raise UsageError("CLI profile '%s' is %s; fmapi signs in only through browser-login profiles and will "
                         "not sign in over it (that would drop its keys)." % (name, describe_profile_kind(keys)),
                         fix=instead)
    return name


def profile_host(name, config_file=None):
    """The workspace URL the profile ``name`` points at, or None."""
    keys = read_databrickscfg(config_file)[0].get(name) or {}
    return keys.get("host") or None


# --------------------------------------------------------------------------------------
# 6b. The CLI
#
# `run_cli` is the only place that starts `databricks`. Every call that signs in or asks
# for a token names `--profile` and runs without the ambient DATABRICKS_* variables that
# would pick another credential; the install's recorded DATABRICKS_CONFIG_FILE is passed
# (an agent started from an IDE may not have it, databricks/cli#1971). The CLI's own
# token-cache lock race (databricks/cli#6051) is retried with short jittered waits.
# --------------------------------------------------------------------------------------

CLI_AMBIENT = ("DATABRICKS_HOST", "DATABRICKS_TOKEN", "DATABRICKS_CONFIG_PROFILE", "DATABRICKS_AUTH_TYPE",
               "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET", "DATABRICKS_USERNAME", "DATABRICKS_PASSWORD")
CLI_TIMEOUT = 120  # seconds for one CLI call that needs no person (a browser sign-in has none)
CLI_RACE_TRIES = 4  # `auth token` attempts when the CLI's token-cache lock is taken
CLI_RACE_MARKERS = ("cache update", "exit status 45")  # databricks/cli#6051
CLI_FORCE_REFRESH = (0, 296, 0)  # `databricks auth token --force-refresh` exists since this version
CLI_UPGRADE = "brew upgrade databricks (or: curl -fsSL https://raw.githubusercontent.com/databricks/setup-cli/main/install.sh | sh)"


class CliError(FmapiError):
    """The Databricks CLI ran and failed; ``stderr`` is its text, ``returncode`` its status."""

    def __init__(self, message, fix=None, stderr="", returncode=1):
        super().__init__(message, fix)
        self.stderr = stderr
        self.returncode = returncode


def databricks_cli(cli=None):
    """The `databricks` executable: the one recorded at setup if it still exists, else PATH."""
    import shutil

    if cli and os.access(cli, os.X_OK):
        return cli
    found = shutil.which("databricks")
    if not found:
        raise FmapiError(
            "the Databricks CLI (databricks) is not installed or not on PATH.",
            fix="Run fmapi setup again to install it, or see https://docs.databricks.com/dev-tools/cli/install.html",
        )
    return found


def cli_env(config_file=None):
    """The environment every `databricks` call runs in: ours minus CLI_AMBIENT, with
    DATABRICKS_CONFIG_FILE set to ``config_file`` (or removed when there is none)."""
    env = {key: value for key, value in os.environ.items() if key not in CLI_AMBIENT}
    env.pop("DATABRICKS_CONFIG_FILE", None)
    if config_file:
        env["DATABRICKS_CONFIG_FILE"] = config_file
    return env


def is_lock_race(stderr):
    """True when the CLI failed on its token-cache lock (transient: retry)."""
    text = (stderr or "").lower()
    return any(marker in text for marker in CLI_RACE_MARKERS)


def run_cli(args, profile=None, cli=None, config_file=None, timeout=CLI_TIMEOUT, deadline=None, interactive=False):
    """Run `databricks ARGS [--profile PROFILE]` and return the finished process.

    ``args``: the words after `databricks`; ``profile`` is appended as ``--profile`` (pass
    it for everything that signs in or uses a credential). ``timeout``: seconds for one
    attempt; ``deadline``: a ``time.monotonic()`` instant no attempt may pass. Not
    ``interactive``: stdin is /dev/null and the result has text ``stdout``/``stderr``;
    a failure on the CLI's token-cache lock race is retried up to CLI_RACE_TRIES times
    with 0.1-0.5 s jittered waits. ``interactive`` (a browser sign-in): the terminal is
    the CLI's, nothing is captured or retried. Raises FmapiError when the CLI is missing,
    cannot start or does not finish in time; a non-zero exit is the caller's to read.
    """
    import random
    import subprocess

    argv = [databricks_cli(cli)] + list(args) + (["--profile", profile] if profile is not None else [])
    env = cli_env(config_file)
    shown = "databricks " + " ".join(list(args)[:2])
    for attempt in range(1 if interactive else CLI_RACE_TRIES):
        budget = timeout
        if deadline is not None:
            budget = min(budget, deadline - time.monotonic()) if budget else deadline - time.monotonic()
            if budget <= 0:
                raise FmapiError("`%s` could not run in the time left." % shown,
                                 fix="Check your network and retry.")
        started = time.monotonic()
        try:
            if interactive:
                proc = subprocess.run(argv, env=env, timeout=budget)
            else:
                proc = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      timeout=budget)
            trace_cli(argv, proc.returncode, started)
        except subprocess.TimeoutExpired:
            trace_cli(argv, "timeout", started)
            raise FmapiError("`%s` did not answer within %d seconds." % (shown, budget),
                             fix="Check your network, then retry.") from None
        except OSError as exc:
            raise FmapiError("could not start %s: %s." % (argv[0], exc.strerror or exc),
                             fix="Reinstall the Databricks CLI, then re-run fmapi setup.") from None
        if interactive or proc.returncode == 0 or not is_lock_race(proc.stderr) or attempt == CLI_RACE_TRIES - 1:
            return proc
        pause = random.uniform(0.1, 0.5)
        if deadline is not None and time.monotonic() + pause >= deadline:
            return proc
        time.sleep(pause)
    return proc


def cli_version(cli=None):
    """The CLI's version as a tuple, e.g. (0, 296, 0), or None when it cannot tell."""
    import re

    try:
        proc = run_cli(["--version"], cli=cli, timeout=60)
    except FmapiError:
        return None
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", proc.stdout or "")
    return tuple(int(x) for x in match.groups()) if match else None


def require_force_refresh(cli=None):
    """Stop with an upgrade line when the CLI cannot `auth token --force-refresh` (< 0.296.0).

    OAuth mode needs it: without it the CLI hands back its cached token until only five
    minutes are left, shorter than an agent keeps a key.
    """
    found = cli_version(cli)
    if found is not None and found < CLI_FORCE_REFRESH:
        raise FmapiError("OAuth mode needs Databricks CLI %s or newer (for `auth token --force-refresh`); this is %s."
                         % (".".join(map(str, CLI_FORCE_REFRESH)), ".".join(map(str, found))),
                         fix="Upgrade it: %s, then re-run fmapi setup." % CLI_UPGRADE)


def needs_sign_in(stderr):
    """True when the CLI's error means the user has to run `databricks auth login`."""
    text = stderr.lower()
    return (
        "databricks auth login" in text
        or "not configured" in text
        or "no such profile" in text
        or ("profile" in text and "not found" in text)
        or ("has no" in text and "profile" in text)
        or "refresh token is invalid" in text
        or "cannot load databricks config" in text
    )


def _jwt_expiry(token):
    """The ``exp`` claim (epoch seconds) of a JWT access token, or None."""
    import base64

    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        exp = claims.get("exp")
    except (ValueError, AttributeError, TypeError):
        return None
    return float(exp) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def cli_auth_token(host, profile, cli=None, config_file=None, force_refresh=False, deadline=None):
    """``(access_token, expiry)`` of ``profile`` from `databricks auth token --profile P -o json`.

    ``expiry`` is epoch seconds: the JWT's ``exp`` when the token carries one (the truth),
    else the printed ``expiry`` (RFC 3339), else ``expires_in``. ``force_refresh`` adds
    ``--force-refresh`` (CLI >= 0.296.0): a fresh token rather than the CLI's cached one.
    Raises SessionExpired (sign in again), CliError (an M2M profile, a CLI too old for
    --force-refresh, a busy token cache after retries, anything else), FmapiError.
    """
    args = ["auth", "token", "-o", "json"] + (["--force-refresh"] if force_refresh else [])
    proc = run_cli(args, profile, cli, config_file, deadline=deadline)
    stderr = proc.stderr or ""
    shown = "databricks auth token --profile %s" % profile
    if proc.returncode != 0:
        first = (stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[0]
        if "uses m2m authentication" in stderr.lower():
            raise CliError("CLI profile '%s' is a service-principal (M2M) profile; `databricks auth token` cannot "
                           "serve it." % profile,
                           fix="Set up with a browser-login profile: fmapi setup --profile NEW-NAME", stderr=stderr)
        if force_refresh and "unknown flag" in stderr.lower() and "force-refresh" in stderr:
            raise CliError("the Databricks CLI is too old for OAuth mode (no `auth token --force-refresh`).",
                           fix="Upgrade it to %s or newer: %s" % (".".join(map(str, CLI_FORCE_REFRESH)), CLI_UPGRADE),
                           stderr=stderr)
        if is_lock_race(stderr):
            raise CliError("`%s` kept failing on the CLI's busy token cache: %s" % (shown, first),
                           fix="Another program was renewing the same sign-in; retry in a moment.", stderr=stderr)
        if needs_sign_in(stderr):
            raise SessionExpired(host, profile, config_file)
        raise CliError("`%s` failed: %s" % (shown, first),
                       fix="Run: databricks auth login --host %s --profile %s" % (host, profile), stderr=stderr)
    try:
        answer = json.loads(proc.stdout)
        token = answer["access_token"]
        expiry = _jwt_expiry(token)
        if expiry is None and answer.get("expiry"):
            expiry = parse_rfc3339(answer["expiry"])
        if expiry is None and answer.get("expires_in") is not None:
            expiry = time.time() + float(answer["expires_in"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise FmapiError("`databricks auth token` printed something fmapi does not understand.",
                         fix="Update the Databricks CLI (%s), then retry." % CLI_UPGRADE) from None
    if not isinstance(token, str) or not token or (expiry is not None and expiry <= time.time()):
        raise SessionExpired(host, profile, config_file)
    return token, expiry if expiry is not None else time.time() + OAUTH_LIFETIME


def oauth_token(host, profile, cli=None, config_file=None, deadline=None):
    """A current OAuth access token for ``profile`` (the CLI's cached one when it still has
    five minutes): the bearer for fmapi's own REST calls. Errors as ``cli_auth_token``."""
    return cli_auth_token(host, profile, cli, config_file, deadline=deadline)[0]


def sign_in(host, profile, cli=None, config_file=None):
    """Run the browser sign-in, `databricks auth login --host H --profile P`, in the terminal."""
    say("Signing in to %s as profile '%s' (a browser window opens)..." % (host, profile))
    proc = run_cli(["auth", "login", "--host", host], profile, cli, config_file, timeout=None, interactive=True)
    if proc.returncode != 0:
        raise FmapiError("Databricks sign-in did not complete.",
                         fix="Run it yourself and retry: %s" % login_command(host, profile, config_file))


def login_command(host, profile, config_file=None):
    """The `databricks auth login` line a person can paste to sign ``profile`` in again."""
    import shlex

    prefix = ""
    if config_file and os.path.abspath(os.path.expanduser(os.environ.get("DATABRICKS_CONFIG_FILE") or "~/.databrickscfg")) != config_file:
        prefix = "DATABRICKS_CONFIG_FILE=%s " % shlex.quote(tilde(config_file))
    return "%sdatabricks auth login --host %s --profile %s" % (prefix, host, shlex.quote(profile))


def ensure_session(host, profile, cli=None, config_file=None):
    """An OAuth access token for ``profile``, signing in first when there is no valid session."""
    try:
        return oauth_token(host, profile, cli, config_file)
    except SessionExpired:
        sign_in(host, profile, cli, config_file)
        return oauth_token(host, profile, cli, config_file)


# --------------------------------------------------------------------------------------
# 6c. REST: one caller, with a deadline, retries and short timeouts
#
# Every REST call goes through api() (urllib, no process start); the PAT calls below use
# it, and token-API refusals are turned into what the user can do about them. Transient failures (429, 5xx, a reset, refused or
# silent connection) are retried with exponential back-off and jitter, honouring
# Retry-After up to RETRY_AFTER_MAX, but never past the caller's Deadline: the helper
# must answer within HELPER_DEADLINE. Permanent answers (400, 401, 403, 404, ...) are
# raised at once. Error bodies that are HTML or plain text become one line of text.
# --------------------------------------------------------------------------------------


class Deadline:
    """A total time budget shared by every step of one operation (monotonic seconds).

    ``notify``, when given, is called with a one-line progress message before each wait
    (setup shows it; the helper, whose stdout is the token, passes nothing).
    """

    def __init__(self, seconds, notify=None):
        self.seconds = float(seconds)
        self.end = time.monotonic() + self.seconds
        self.notify = notify

    def left(self):
        """Seconds left (0 when spent)."""
        return max(0.0, self.end - time.monotonic())

    def __repr__(self):
        return "Deadline(%.1f s left)" % self.left()


class ApiError(FmapiError):
    """The workspace answered with an HTTP error; ``transient`` when a retry may succeed."""

    def __init__(self, status, error_code, message, path, tries=1):
        note = " (after %d tries)" % tries if tries > 1 else ""
        super().__init__("the workspace answered %s %s to %s%s: %s" % (status, error_code or "", path, note, message))
        self.status = status
        self.error_code = error_code
        self.api_message = message

    @property
    def transient(self):
        return is_transient_status(self.status)


class Unreachable(FmapiError):
    """No answer at all: the connection was refused, reset or stayed silent."""


def is_transient_status(status):
    """True for answers worth retrying: 408, 429 and 5xx except 501 (not implemented)."""
    return status in (408, 429) or (500 <= status <= 599 and status != 501)


def one_line(raw, limit=200):
    """An error body (JSON text, HTML page or plain text) as one line without markup.

    An HTML page gives its <title>, else its visible text (a proxy's 502 page, the
    workspace's "Error 403 Invalid access token." page). Returns "" for an empty body.
    """
    import html
    import re

    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    if re.search(r"<\s*(html|head|body|title|h\d|p|div|pre|center)\b", text, re.I):
        title = re.search(r"<title[^>]*>(.*?)</title>", text, re.I | re.S)
        if title and title.group(1).strip():
            text = title.group(1)
        else:
            text = re.sub(r"<(script|style)\b.*?</\1\s*>", " ", text, flags=re.I | re.S)
            text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
        text = html.unescape(re.sub(r"<[^>]*>", " ", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "\u2026"


def retry_after(value, now=None):
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def backoff(attempt):
    """Seconds before try ``attempt + 1``: exponential, capped, with jitter (50-100 %)."""
    import random

    return min(BACKOFF_MAX, BACKOFF_FIRST * (2 ** attempt)) * random.uniform(0.5, 1.0)


def _opener(host, read_timeout):
    """A urllib opener whose connections connect within CONNECT_TIMEOUT and then read with
    ``read_timeout`` (urllib alone has one timeout for both)."""
    import http.client
    import urllib.parse
    import urllib.request

    class Connection(http.client.HTTPConnection):
        def connect(self):
            super().connect()  # self.timeout (CONNECT_TIMEOUT) bounds the connect
            self.sock.settimeout(read_timeout)

    class SecureConnection(http.client.HTTPSConnection):
        def connect(self):
            super().connect()  # connect and TLS handshake, within CONNECT_TIMEOUT
            self.sock.settimeout(read_timeout)

    class Plain(urllib.request.HTTPHandler):
        def http_open(self, req):
            return self.do_open(Connection, req)

    class Secure(urllib.request.HTTPSHandler):
        def https_open(self, req):
            return self.do_open(SecureConnection, req, context=self._context)

    handlers = [Plain(), Secure(context=ssl_context())]
    if _is_loopback(urllib.parse.urlsplit(host).hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))  # never send loopback traffic to a proxy
    return urllib.request.build_opener(*handlers)


def _is_loopback(hostname):
    """localhost or a loopback IP address (127.0.0.0/8, ::1); never a name that merely starts with 127."""
    if hostname.lower() == "localhost":
        return True
    import ipaddress

    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def ssl_context():
    """The TLS settings of every REST call fmapi makes.

    The system's trust store, which Python's ssl module reads from SSL_CERT_FILE and
    SSL_CERT_DIR when they are set, plus REQUESTS_CA_BUNDLE (a PEM file or a directory),
    which the Databricks SDK and every `requests` user honour: behind a TLS-inspecting
    proxy one variable then serves fmapi, the SDK and pip alike. Raises FmapiError when
    REQUESTS_CA_BUNDLE cannot be loaded.
    """
    import ssl

    context = ssl.create_default_context()
    bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    if bundle:
        try:
            if os.path.isdir(bundle):
                context.load_verify_locations(capath=bundle)
            else:
                context.load_verify_locations(cafile=bundle)
        except (OSError, ssl.SSLError) as exc:
            raise FmapiError("REQUESTS_CA_BUNDLE=%s is not a readable PEM certificate bundle (%s)." % (bundle, exc),
                             fix="Point it at your company's CA certificates (PEM), or unset it.") from None
    return context


def network_problem(exc):
    """(stage, words) for a failed connection: stage is "dns", "connect", "tls" or "timeout"."""
    import socket
    import ssl

    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return "tls", "the workspace's TLS certificate is not trusted (%s)" % (reason.verify_message or reason)
    if isinstance(reason, ssl.SSLError):
        return "tls", "the TLS handshake failed (%s)" % reason
    if isinstance(reason, socket.gaierror):
        return "dns", "the workspace's name does not resolve (%s)" % (reason.strerror or reason)
    if isinstance(reason, (socket.timeout, TimeoutError)):
        return "timeout", "no answer in time"
    return "connect", str(getattr(reason, "strerror", None) or reason)


UNTRUSTED_FIX = ("Behind a TLS-inspecting proxy? Point REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) at your company's "
                 "CA certificates; `fmapi doctor` shows what each agent needs.")


def _attempt(host, bearer, method, path, data, deadline):
    """One HTTP exchange: (status, headers, body bytes); raises OSError-family on no answer."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(host + path, data=data, method=method, headers={
        "Authorization": "Bearer " + bearer,
        "Content-Type": "application/json",
        "User-Agent": "fmapi/" + __version__,
    })
    left = deadline.left()
    opener = _opener(host, max(0.05, min(READ_TIMEOUT, left)))
    try:
        with opener.open(request, timeout=max(0.05, min(CONNECT_TIMEOUT, left))) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read() or b""
        except OSError:
            body = b""
        return exc.code, exc.headers, body


def api(host, bearer, method, path, body=None, deadline=None):
    """One REST call to the workspace, retried while it fails transiently and time is left.

    ``host`` is the workspace URL, ``path`` starts with /api/; ``body`` (a dict) is sent as
    JSON. ``deadline`` is a Deadline (default: SETUP_DEADLINE from now). Returns the decoded
    JSON object ({} for an empty answer). Raises ApiError for an HTTP error (the last one
    when retries ran out), Unreachable when the workspace never answered, FmapiError for an
    answer that is not JSON.
    """
    import http.client
    import socket
    import urllib.error

    deadline = deadline or Deadline(SETUP_DEADLINE)
    data = None if body is None else json.dumps(body).encode()
    tries = 0
    while True:
        tries += 1
        wait = None
        started = time.monotonic()
        try:
            status, headers, raw = _attempt(host, bearer, method, path, data, deadline)
            trace("http: %s %s -> %s (%.2f s)" % (method, path, status, time.monotonic() - started))
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, OSError) as exc:
            stage, words = network_problem(exc)
            trace("http: %s %s -> %s: %s (%.2f s)" % (method, path, stage, words, time.monotonic() - started))
            if stage == "tls":  # a certificate is not trusted on the next try either
                raise Unreachable("cannot reach %s: %s." % (host, words), fix=UNTRUSTED_FIX) from None
            reason = getattr(exc, "reason", None) or exc
            if isinstance(reason, (socket.timeout, TimeoutError)) or "timed out" in str(reason):
                reason = "no answer within %.0f s" % min(READ_TIMEOUT, deadline.seconds)
            elif isinstance(exc, http.client.RemoteDisconnected):
                reason = "the connection closed without an answer"
            elif stage == "dns":
                reason = words
            failure = Unreachable("cannot reach %s (%s)%s." % (host, one_line(str(reason)),
                                                               " after %d tries" % tries if tries > 1 else ""),
                                  fix="Check the workspace URL and your network connection, then retry.")
            what = "no answer (%s)" % one_line(str(reason), 80)
        else:
            if status < 400:
                if not raw.strip():
                    return {}
                try:
                    return json.loads(raw)
                except ValueError:
                    raise FmapiError("the workspace sent a reply to %s that is not JSON: %s" % (path, one_line(raw, 80)),
                                     fix="Check that %s is a Databricks workspace URL." % host) from None
            code, message = None, one_line(raw)
            try:
                parsed = json.loads(raw)
                if isinstance(parsed, dict):
                    code = parsed.get("error_code")
                    message = one_line(str(parsed.get("message") or parsed.get("error_description") or message))
            except ValueError:
                pass
            failure = ApiError(status, code, message or "HTTP %d" % status, path, tries)
            if not failure.transient:
                raise failure
            wait = retry_after(headers.get("Retry-After") if headers else None)
            what = "%d %s" % (status, code or "")
        pause = backoff(tries - 1) if wait is None else min(wait, RETRY_AFTER_MAX)
        if pause >= deadline.left():
            raise failure
        if deadline.notify:
            deadline.notify("the workspace gave %s to %s; trying again in %.1f s" % (what.strip(), path, pause))
        time.sleep(pause)


class PatRefused(FmapiError):
    """The workspace will not create PATs for this user: tokens are disabled for the workspace,
    or the user may not use them (403 PERMISSION_DENIED from the token API; the exact text is
    not documented, so the code and the call decide, not the words)."""

    def __init__(self, host, api_message, agent=None):
        flag = "" if agent in (None, "claude") else " --agent " + agent
        super().__init__("%s does not let you create personal access tokens (%s)." % (host, api_message),
                         fix="Use OAuth tokens instead, which need no PAT: fmapi setup%s --auth oauth" % flag)
        self.api_message = api_message


class LifetimeRefused(FmapiError):
    """The workspace refused the PAT's lifetime (400 INVALID_PARAMETER_VALUE on token/create:
    above the admin's maxTokenLifetimeDays)."""


def token_alive(host, token, deadline):
    """Whether the workspace accepts ``token``: one read-only GET of the caller's own user
    (/api/2.0/preview/scim/v2/Me). True when it answers, False when it refuses the token
    (401, or 403 "Invalid access token.", as the REST API answers a revoked or expired PAT:
    databricks/databricks-sdk-go#873), None when it cannot tell (no answer in ``deadline``,
    another error)."""
    try:
        api(host, token, "GET", "/api/2.0/preview/scim/v2/Me", deadline=deadline)
        return True
    except ApiError as exc:
        text = (exc.api_message or "").lower()
        if exc.status == 401 or (exc.status == 403 and any(word in text for word in ("invalid access token",
                                                                                      "expired", "revoked"))):
            return False
        return None
    except FmapiError:
        return None


def _explain_token_api_error(exc, host, profile, agent=None, creating=False):
    """Turn a token-API failure into what the user should do about it."""
    text = (exc.api_message or "").lower()
    if exc.status in (401, 403) and ("invalid access token" in text or exc.status == 401):
        return SessionExpired(host, profile)
    if exc.error_code == "PERMISSION_DENIED" or (exc.status == 403 and "permission" in text and "token" in text):
        return PatRefused(host, exc.api_message, agent)
    if exc.error_code == "QUOTA_EXCEEDED" or "quota" in text:
        return FmapiError("you have too many personal access tokens on this workspace.",
                          fix="Revoke unused ones in User Settings > Developer > Access tokens, then retry.")
    if creating and (exc.error_code == "INVALID_PARAMETER_VALUE" or "lifetime" in text):
        return LifetimeRefused("the workspace refused the PAT lifetime (%s)." % exc.api_message,
                               fix="Choose a shorter lifetime (fmapi setup --pat-lifetime 1) or use OAuth tokens (--auth oauth).")
    return exc


def create_pat(host, profile, bearer, comment, lifetime_days, agent=None, deadline=None):
    """Mint a PAT; returns (token_value, token_id, expiry in epoch seconds).

    Raises SessionExpired, PatRefused, LifetimeRefused, ApiError, Unreachable or FmapiError.
    """
    try:
        answer = api(host, bearer, "POST", "/api/2.0/token/create",
                     {"comment": comment, "lifetime_seconds": int(lifetime_days) * 86400}, deadline)
    except ApiError as exc:
        raise _explain_token_api_error(exc, host, profile, agent, creating=True) from None
    info = answer.get("token_info") or {}
    value = answer.get("token_value")
    if not value:
        raise FmapiError("the workspace did not return a token.", fix="Retry; if it persists, check the workspace's token settings.")
    expiry_ms = info.get("expiry_time")
    if not isinstance(expiry_ms, (int, float)) or expiry_ms <= 0:
        expiry = time.time() + int(lifetime_days) * 86400
    else:
        expiry = expiry_ms / 1000.0
    return value, str(info.get("token_id", "")), expiry


def workspace_token_conf(host, bearer):
    """``{"enableTokensConfig": str, "maxTokenLifetimeDays": int or None}`` from workspace-conf
    (string values, e.g. "730"); ``{}`` when it cannot be read (non-admins may not read it)."""
    try:
        answer = api(host, bearer, "GET", "/api/2.0/workspace-conf?keys=maxTokenLifetimeDays,enableTokensConfig",
                     deadline=Deadline(15))
    except FmapiError:
        return {}
    if not isinstance(answer, dict):
        return {}
    try:
        days = int(str(answer.get("maxTokenLifetimeDays") or "0").strip() or 0)
    except ValueError:
        days = 0
    return {"enableTokensConfig": str(answer.get("enableTokensConfig") or ""), "maxTokenLifetimeDays": days if days > 0 else None}


def list_pats(host, profile, bearer, deadline=None):
    """The user's live PATs on ``host``: a list of token_info dicts (token_id, comment, expiry_time ms, ...)."""
    try:
        return api(host, bearer, "GET", "/api/2.0/token/list", deadline=deadline).get("token_infos") or []
    except ApiError as exc:
        raise _explain_token_api_error(exc, host, profile) from None


def cached_pat_revoked(spec, cache, bearer):
    """True when the cache holds a still-fresh PAT that the workspace no longer lists.

    Someone revoked it (an admin, or `fmapi --uninstall --revoke` on another machine): it
    would be rejected until it expires, so setup replaces it. Not on the helper's hot path.
    """
    token_id = (cache or {}).get("token_id")
    if not token_id or not usable_token(cache, spec.host, spec.min_left):
        return False
    try:
        listed = list_pats(spec.host, spec.profile, bearer)
    except FmapiError:
        return False  # cannot tell: keep it, as before
    return not any(info.get("token_id") == token_id for info in listed if isinstance(info, dict))


def delete_pat(host, bearer, token_id, deadline=None):
    """Revoke one PAT; an id the workspace no longer knows counts as revoked."""
    try:
        api(host, bearer, "POST", "/api/2.0/token/delete", {"token_id": token_id}, deadline)
    except ApiError as exc:
        if exc.status != 404 and exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


# The wire APIs a serving endpoint can answer, as fmapi names them. Each agent lists the
# ones it speaks (Agent.apis) and can take any endpoint that serves one of them.
# Endpoints list them in config.served_entities[].foundation_model.api_types (see
# /work/shared/spec/databricks.md); when a workspace does not say, the name tells.
API_TYPES = {
    "anthropic/v1/messages": "anthropic",
    "openai/v1/responses": "responses",
    "openai/v1/chat/completions": "chat",
    "mlflow/v1/chat/completions": "chat",
}
NAME_APIS = (  # (word in the endpoint name, APIs it serves) when api_types is absent
    ("claude", ("anthropic", "chat")),
    ("gemini", ("gemini", "chat")),
    ("gpt", ("responses", "chat")),
    ("codex", ("responses", "chat")),
)
CHAT_TASK = "llm/v1/chat"


def classify_endpoint(endpoint):
    """What fmapi needs to know about one serving endpoint (an item of GET serving-endpoints).

    Returns ``{"name": str, "task": str or None, "ready": bool, "state": "READY" |
    "NOT_READY" | ..., "config_update": str or None, "apis": [str], "source":
    "api_types" | "name" | None}``. ``apis`` are the wire APIs it answers ("anthropic",
    "responses", "gemini", "chat"), taken from the endpoint's api_types when the workspace
    lists them, else guessed from a chat endpoint's name; empty for anything that is not a
    chat model (embeddings, custom models). See endpoint_suits for an agent.
    """
    state = endpoint.get("state") or {}
    ready = state.get("ready") or "READY"
    entities = ((endpoint.get("config") or endpoint.get("pending_config") or {}).get("served_entities")) or []
    listed = []
    for entity in entities:
        for source in ("foundation_model", "external_model"):
            info = entity.get(source) if isinstance(entity, dict) else None
            if isinstance(info, dict) and isinstance(info.get("api_types"), list):
                listed.extend(str(t) for t in info["api_types"])
    task = endpoint.get("task")
    name = str(endpoint.get("name") or "")
    apis, source = [], None
    if listed:
        source = "api_types"
        for api_type in listed:
            lowered = api_type.lower()
            found = API_TYPES.get(lowered) or ("gemini" if "gemini" in lowered or "generatecontent" in lowered else None)
            if found and found not in apis:
                apis.append(found)
    elif task in (None, CHAT_TASK):
        source = "name"
        for word, serves in NAME_APIS:
            if word in name.lower():
                apis = list(serves)
                break
        else:
            apis = ["chat"] if task == CHAT_TASK else []
    return {"name": name, "task": task, "ready": ready == "READY", "state": ready,
            "config_update": state.get("config_update") or state.get("update_state"),
            "apis": apis, "source": source}


def endpoint_suits(agent, info):
    """True when a classified endpoint serves one of the APIs ``agent`` (an Agent) speaks."""
    return bool(set(agent.apis) & set(info["apis"]))


def serving_endpoints(host, bearer):
    """Every serving endpoint of the workspace, classified (see classify_endpoint)."""
    endpoints = api(host, bearer, "GET", "/api/2.0/serving-endpoints", deadline=Deadline(15)).get("endpoints") or []
    return [classify_endpoint(e) for e in endpoints if isinstance(e, dict) and e.get("name")]


def close_names(name, names, count=3):
    """Up to ``count`` of ``names`` that look like ``name`` (for "did you mean")."""
    import difflib

    return difflib.get_close_matches(name, list(names), n=count, cutoff=0.5)


# --------------------------------------------------------------------------------------
# 6d. Credentials
#
# What an agent gets as its key, behind one small interface with two strategies: a PAT
# minted with the OAuth session (PatCredential) or the OAuth access token itself
# (OAuthCredential). The install record's "auth" chooses; agents know only the lifetime
# (and so their TTL). Both keep the install's current token in the same 0600 cache file,
# renewed under the same lock: one renewal for many concurrent callers.
# --------------------------------------------------------------------------------------

AUTH_MODES = ("pat", "oauth")
AUTH_LABELS = ("Personal access token (PAT)",
               "OAuth token (no PAT; 1-hour tokens renewed through the Databricks CLI)")
OAUTH_LIFETIME = 3600  # seconds: a U2M OAuth access token's life, unless setup saw another


class TokenSpec:
    """What it takes to serve a token for one install: where its cache is, whom to ask, how.

    ``auth`` is "pat" or "oauth"; ``min_left`` seconds a handed-out token must still have;
    ``config_file`` the DATABRICKS_CONFIG_FILE recorded at setup (or None).
    """

    FIELDS = ("agent", "dir", "host", "profile", "lifetime_days", "min_left", "comment", "revoke_replaced", "cli",
              "auth", "config_file")

    def __init__(self, agent, dir, host, profile, lifetime_days, min_left, comment, revoke_replaced=True, cli=None,
                 auth="pat", config_file=None, v=HELPER_PROTOCOL):
        self.agent = agent
        self.dir = dir
        self.host = host
        self.profile = profile
        self.lifetime_days = int(lifetime_days)
        self.min_left = int(min_left)
        self.comment = comment
        self.revoke_replaced = bool(revoke_replaced)
        self.cli = cli
        self.auth = auth if auth in AUTH_MODES else "pat"
        self.config_file = config_file

    def to_json(self):
        data = {name: getattr(self, name) for name in self.FIELDS}
        data["v"] = HELPER_PROTOCOL
        return json.dumps(data, sort_keys=True)

    @property
    def cache_path(self):
        return os.path.join(self.dir, CACHE_NAME)


def credential_lifetime(record):
    """Seconds one token of this install lives: the PAT lifetime, or the OAuth token's."""
    if record.get("auth") == "oauth":
        return int(record.get("token_lifetime") or OAUTH_LIFETIME)
    return int(record.get("lifetime_days") or DEFAULT_PAT_DAYS) * 86400


def _lock(path, wait=RENEW_LOCK_WAIT):
    """An exclusive lock on ``path`` (a file descriptor to close), waiting up to ``wait`` s.

    flock(2): the kernel releases it when the holder exits, however it dies (kill -9 too).
    """
    import fcntl

    try:  # a planted symlink is never followed: no file is created where it points
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as exc:
        import errno

        if exc.errno != errno.ELOOP:
            raise
        raise FmapiError("%s is a symbolic link, not fmapi's lock file; fmapi did not follow it." % tilde(path),
                         fix="Remove the link (rm %s), then retry." % tilde(path)) from None
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise FmapiError("another fmapi process has been renewing the token for over %d s." % wait,
                                 fix="Wait for it to finish (or end it), then retry.") from None
            time.sleep(0.05)


def _save_cache(spec, entry, on_failure=None):
    """Write the install's cache (0600, atomically); ``on_failure`` runs before the error."""
    try:
        write_atomic(spec.cache_path, dump_json(entry))
    except OSError as exc:
        if on_failure:
            on_failure()
        raise FmapiError(*os_error_text(exc, spec.cache_path, "could not save the token cache")) from None


# The ledger: every PAT this install mints is written down, beside the cache but in its own
# file (LEDGER_NAME), before it exists: first as a nonce that is also in the PAT's comment
# (so a PAT whose creation a kill or a lost answer hid can be found by listing), then with
# its id. An entry leaves the ledger when its PAT is revoked, found never to have been
# created, or expired. So deleting the cache, or a kill at any instant, never leaves a live
# PAT that nothing records: the next renewal (or setup) revokes what is not the cached one.

LEDGER_KEEP = 8 * 86400  # seconds: an unresolved entry older than the longest PAT is dropped
MINT_SETTLE = 600  # seconds: a token/create this old that no list shows never created a PAT


def read_ledger(directory):
    """The install's ledger entries: dicts with ``nonce``, ``host``, ``at`` (epoch s), and once
    known ``token_id``, ``expiry`` (epoch s) and ``state`` ("minting", "minted", "cached")."""
    data = read_cache(os.path.join(directory, LEDGER_NAME)) or {}
    pats = data.get("pats")
    return [entry for entry in pats if isinstance(entry, dict)] if isinstance(pats, list) else []


def write_ledger(directory, pats):
    """Replace the ledger atomically (0600); an empty ledger is removed."""
    path = os.path.join(directory, LEDGER_NAME)
    if pats:
        write_atomic(path, dump_json({"version": 1, "pats": pats}))
    else:
        remove_file(path)


def ledger_plan(spec, pats, current_id, now=None):
    """What to do about the ledger's PATs, given the id of the PAT now cached.

    Returns ``{"revoke": [token_id, ...], "resolve": [[nonce, at], ...], "current": current_id}``
    and drops from ``pats`` (in place) the entries that need nothing more: expired ones. A PAT
    the liveness check judged dead is not dropped: that verdict may be a spurious 401, so it
    stays until token/delete confirms it gone (an id already gone counts as revoked). A replaced PAT
    that was handed out is revoked only when ``spec.revoke_replaced`` (Gemini CLI sessions
    keep theirs until it expires); one that was never cached is always revoked. Entries of
    another workspace wait until they expire.
    """
    now = time.time() if now is None else now
    plan = {"revoke": [], "resolve": [], "current": current_id}
    for entry in list(pats):
        token_id, expiry = entry.get("token_id"), entry.get("expiry")
        if token_id and token_id == current_id:
            entry["state"] = "cached"
            continue
        gone = isinstance(expiry, (int, float)) and expiry <= now
        if gone or (not token_id and now - (entry.get("at") or 0) > LEDGER_KEEP):
            pats.remove(entry)
        elif entry.get("host") != spec.host:
            continue
        elif not token_id:
            plan["resolve"].append([entry.get("nonce"), entry.get("at") or 0])
        elif entry.get("state") != "cached" or spec.revoke_replaced:
            plan["revoke"].append(token_id)
    return plan if plan["revoke"] or plan["resolve"] else None


def settle_ledger(spec, bearer, plan, deadline=None):
    """Carry out a ledger_plan: find PATs by nonce, revoke what must go, then strike what was
    done from the ledger (under the lock). Returns the problems as one-line strings."""
    deadline = deadline or Deadline(SETUP_DEADLINE)
    revoke, done, problems = list(plan["revoke"]), set(), []
    found = {}  # nonce -> ids of the PATs created with it (a retried token/create may have made two)
    listed = None
    if plan["resolve"]:
        try:
            listed = list_pats(spec.host, spec.profile, bearer, deadline)
        except FmapiError as exc:
            problems.append(exc.message)
        for nonce, _ in plan["resolve"]:
            found[nonce] = [str(info.get("token_id")) for info in listed or []
                            if str(info.get("comment", "")).endswith("#%s)" % nonce)]
            revoke += [token_id for token_id in found[nonce] if token_id != plan["current"]]
    for token_id in revoke:
        try:
            delete_pat(spec.host, bearer, token_id, deadline)
            done.add(token_id)
        except FmapiError as exc:
            problems.append(exc.message)
    adopted, resolved = {}, set()
    for nonce, at in plan["resolve"]:
        ids = found.get(nonce) or []
        if plan["current"] in ids:
            adopted[nonce] = plan["current"]  # the cached PAT, whose id the ledger had not caught
        if all(token_id in done or token_id == plan["current"] for token_id in ids) and (
                ids or (listed is not None and time.time() - at > MINT_SETTLE)):
            resolved.add(nonce)  # else its token/create may still be on its way: look again next time
    if done or resolved:
        lock = _lock(os.path.join(spec.dir, LOCK_NAME), max(1.0, deadline.left()))
        try:
            pats = []
            for entry in read_ledger(spec.dir):
                nonce = entry.get("nonce")
                if not entry.get("token_id") and nonce in adopted:
                    entry.update(token_id=adopted[nonce], state="cached")
                elif entry.get("token_id") in done or (not entry.get("token_id") and nonce in resolved):
                    continue
                pats.append(entry)
            write_ledger(spec.dir, pats)
        finally:
            os.close(lock)
    return problems


def revoke_quietly(spec, bearer, plan):
    """settle_ledger now, warning about what could not be done (it is retried next time).
    Returns those problems (one-line strings); prints nothing on stdout."""
    problems = settle_ledger(spec, bearer, plan)
    for problem in problems:
        warn("could not revoke a replaced token (fmapi retries at the next renewal): " + problem)
    return problems


def revoke_in_background(spec, bearer, plan):
    """settle_ledger after the new token has been handed out, in a detached child."""
    try:
        sys.stdout.flush()
        pid = os.fork()
    except (OSError, AttributeError):
        return revoke_quietly(spec, bearer, plan)
    if pid:
        return None
    try:  # the child: detach from the agent's pipes so it is not waited for
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        settle_ledger(spec, bearer, plan)
    except BaseException:
        pass
    os._exit(0)


class PatCredential:
    """A PAT minted with the profile's OAuth session, rotated before it runs out."""

    kind = "pat"
    title = "personal access token (PAT)"

    def obtain(self, spec, force=False, bearer=None, deadline=None, dead=None):
        """See ``obtain_token``; a lifetime the workspace refuses is lowered a day at a time.

        Every mint is written in the ledger first (see read_ledger), so the ``replaced``
        this returns is ``(spec, bearer, plan)`` for settle_ledger: the previous PAT and any
        PAT an earlier, interrupted run left behind. With a ``bearer`` (setup) the ledger is
        settled even when the cached PAT is kept.
        """
        deadline = deadline or Deadline(SETUP_DEADLINE)
        os.makedirs(spec.dir, mode=0o700, exist_ok=True)
        lock = _lock(os.path.join(spec.dir, LOCK_NAME), deadline.left())
        try:
            cache = read_cache(spec.cache_path)
            mine = cache if cache and cache.get("auth", "pat") == "pat" else None
            token = None if force else usable_token(mine, spec.host, spec.min_left)
            if token and token != dead:
                if bearer is None or not os.path.exists(os.path.join(spec.dir, LEDGER_NAME)):
                    return token, None
                pats = read_ledger(spec.dir)
                plan = ledger_plan(spec, pats, mine.get("token_id"))
                write_ledger(spec.dir, pats)
                return token, plan and (spec, bearer, plan)
            if bearer is None:
                bearer = oauth_token(spec.host, spec.profile, spec.cli, spec.config_file, deadline=deadline.end)
            pats = read_ledger(spec.dir)
            old_id = (mine or {}).get("token_id")
            if old_id and not any(entry.get("token_id") == old_id for entry in pats):  # cached before the ledger existed
                pats.append({"token_id": old_id, "host": mine.get("host"), "expiry": mine.get("expiry"),
                             "state": "cached", "at": mine.get("created") or int(time.time())})
            entry = {"nonce": os.urandom(4).hex(), "host": spec.host, "at": int(time.time()), "state": "minting"}
            pats.append(entry)
            write_ledger(spec.dir, pats)  # before the PAT exists: a kill from here on leaves a trace
            comment = "%s (created %s, #%s)" % (spec.comment, time.strftime("%Y-%m-%d"), entry["nonce"])
            days = spec.lifetime_days
            try:
                while True:
                    try:
                        value, token_id, expiry = create_pat(spec.host, spec.profile, bearer, comment, days, spec.agent,
                                                             deadline)
                        break
                    except LifetimeRefused:
                        if days <= 1:
                            raise
                        days -= 1
            except FmapiError as exc:
                if not (isinstance(exc, Unreachable) or getattr(exc, "transient", False)):
                    pats.remove(entry)  # refused: no PAT was created
                    try:
                        write_ledger(spec.dir, pats)
                    except OSError:
                        pass
                raise
            entry.update(token_id=token_id, expiry=int(expiry), state="minted")

            def take_back():  # an uncached PAT would be minted again on every call
                try:
                    delete_pat(spec.host, bearer, token_id, Deadline(HELPER_DEADLINE))
                    pats.remove(entry)
                    write_ledger(spec.dir, pats)
                except (FmapiError, OSError):
                    pass

            _save_cache(spec, {
                "token": value,
                "token_id": token_id,
                "expiry": int(expiry),
                "host": spec.host,
                "profile": spec.profile,
                "auth": "pat",
                "lifetime_days": days,
                "comment": comment,
                "created": int(time.time()),
            }, take_back)
            plan = ledger_plan(spec, pats, token_id)
            write_ledger(spec.dir, pats)
        finally:
            os.close(lock)
        return value, plan and (spec, bearer, plan)


class OAuthCredential:
    """The profile's OAuth access token itself (no PAT): 1 hour, renewed by the CLI."""

    kind = "oauth"
    title = "OAuth access token"

    def obtain(self, spec, force=False, bearer=None, deadline=None, dead=None):
        """See ``obtain_token``: the cached token when it has ``spec.min_left`` seconds, else
        one `databricks auth token --force-refresh` (the CLI alone would return its cached
        token until five minutes are left). ``bearer`` is not used. Never replaces anything."""
        deadline = deadline or Deadline(SETUP_DEADLINE)
        os.makedirs(spec.dir, mode=0o700, exist_ok=True)
        lock = _lock(os.path.join(spec.dir, LOCK_NAME), deadline.left())
        try:
            cache = read_cache(spec.cache_path)
            mine = cache if cache and cache.get("auth") == "oauth" and cache.get("profile") == spec.profile else None
            token = None if force else usable_token(mine, spec.host, spec.min_left)
            if token and token != dead:
                return token, None
            token, expiry = cli_auth_token(spec.host, spec.profile, spec.cli, spec.config_file, force_refresh=True,
                                           deadline=deadline.end)
            _save_cache(spec, {
                "token": token,
                "expiry": int(expiry),
                "host": spec.host,
                "profile": spec.profile,
                "auth": "oauth",
                "created": int(time.time()),
            })
        finally:
            os.close(lock)
        return token, None


CREDENTIALS = {"pat": PatCredential(), "oauth": OAuthCredential()}


def obtain_token(spec, force=False, bearer=None, deadline=None, dead=None):
    """A token for ``spec`` with at least ``spec.min_left`` seconds of life, renewing if needed.

    PAT mode mints a PAT with the OAuth ``bearer`` (asked from the CLI when None); OAuth
    mode serves the profile's OAuth access token. Returns ``(token, replaced)``:
    ``replaced`` is ``(spec, bearer, plan)`` when PATs are to be revoked (this install's
    previous PAT, or one an interrupted run left behind; the caller passes it to
    revoke_quietly or revoke_in_background), else None. ``dead`` is a token the workspace
    refused: it is replaced even if the cache still calls it fresh (unless another process
    already did), and never revoked. Concurrent callers serialise on
    the install's lock file: one renews, the others find its token in the cache. ``force``
    renews even when the cached token is still good. Waiting for the lock, the CLI and the
    workspace all fit in ``deadline`` (a Deadline; default SETUP_DEADLINE from now). Raises
    FmapiError (SessionExpired, PatRefused, CliError, Unreachable, ...).
    """
    ensure_private_dir(spec.dir)  # never a cache or lock where another user can write
    return CREDENTIALS[spec.auth].obtain(spec, force, bearer, deadline, dead)


def fresh_token(spec, min_left=None):
    """The install's current token (in OAuth mode an OAuth access token) with at least
    ``min_left`` seconds left (default ``spec.min_left``), renewed when needed. For
    launchers and relays that hand a token on by themselves. Raises FmapiError."""
    if min_left is not None and int(min_left) != spec.min_left:
        spec = TokenSpec(**dict(json.loads(spec.to_json()), min_left=int(min_left)))
    token, replaced = obtain_token(spec)
    if replaced:
        revoke_quietly(*replaced)
    return token


# --------------------------------------------------------------------------------------
# 7. The install registry and the runtime copy used by helpers
#
# fmapi remembers each install (agent, where, which workspace, what it wrote) in one
# small file, so that `fmapi token`, re-runs and `fmapi --uninstall` find custom
# locations again. Helpers import a private copy of this module, compiled once, so
# they keep working after the .pyz they came from is deleted or brew upgrades fmapi.
# --------------------------------------------------------------------------------------


def data_home():
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "fmapi")


def registry_path():
    return os.path.join(data_home(), "installs.json")


def load_registry():
    """{install dir: record}; a damaged registry is set aside rather than trusted.

    An entry that is not a record of the right shape (a dict whose ``dir`` and ``agent`` are
    strings, ``agent`` one fmapi knows) is dropped: the file's bytes are moved aside, the good
    records written back, and one warning names what was dropped (so it is said once).
    """
    path = registry_path()
    try:
        data = load_json_object(path)
    except UnparsableFile:
        warn("the install record %s was damaged; moved it to %s" % (path, backup_aside(path)))
        return {}
    installs = data.get("installs")
    if installs is None:
        return {}
    if not isinstance(installs, dict):
        installs = {}
    good = {key: record for key, record in installs.items()
            if isinstance(record, dict) and isinstance(record.get("dir"), str)
            and isinstance(record.get("agent"), str) and record.get("agent") in AGENTS}
    if len(good) != len(installs) or not isinstance(data.get("installs"), dict):
        bad = sorted(str(key) for key in installs if key not in good) or ["its \"installs\" table"]
        try:
            aside = backup_aside(path)
            if good:
                write_atomic(path, dump_json({"version": 1, "installs": good}))
        except OSError:
            aside = None
        warn("the install record %s had entries fmapi cannot read (%s); dropped them%s" % (
            tilde(path), ", ".join(bad), "; its bytes are kept in %s" % tilde(aside) if aside else ""))
    return good


def save_registry(installs):
    if installs:
        write_atomic(registry_path(), dump_json({"version": 1, "installs": installs}))
        return
    remove_runtime()


def remove_runtime(report=None):
    """Delete the runtime copy, then the record, then the data directory if fmapi left it empty.

    The record goes last: an uninstall killed half-way still has it, and the next one finishes.
    Temporary files a killed write left behind go too.
    """
    def gone(path):
        if remove_file(path) and report is not None:
            report.removed.append(tilde(path))

    runtime = runtime_dir()
    cache_dir = os.path.join(runtime, "__pycache__")
    for name in _listdir(cache_dir):
        if name.startswith("fmapi.") and (name.endswith(".pyc") or name.endswith(TMP_SUFFIX)):
            gone(os.path.join(cache_dir, name))
    for leftover in leftover_temp_files(runtime, ("fmapi.py",)):
        gone(leftover)
    gone(os.path.join(runtime, "fmapi.py"))
    for path in (cache_dir, runtime):
        try:
            os.rmdir(path)
            if report is not None:
                report.removed.append(tilde(path) + os.sep)
        except OSError:
            pass
    for leftover in leftover_temp_files(data_home(), ("installs.json",)):
        gone(leftover)
    gone(registry_path())
    try:
        os.rmdir(data_home())
    except OSError:
        pass


def runtime_leftovers():
    """fmapi's own files in its data directory (runtime copy, record, temporary files), if any remain."""
    runtime = runtime_dir()
    cache_dir = os.path.join(runtime, "__pycache__")
    found = [os.path.join(cache_dir, n) for n in _listdir(cache_dir) if n.startswith("fmapi.")]
    found += leftover_temp_files(runtime, ("fmapi.py",)) + leftover_temp_files(data_home(), ("installs.json",))
    found += [p for p in (os.path.join(runtime, "fmapi.py"), registry_path()) if os.path.lexists(p)]
    found += [p for p in (cache_dir, runtime) if os.path.isdir(p) and not os.path.islink(p)]  # emptied, not yet removed
    if os.path.isdir(data_home()) and not _listdir(data_home()):
        found.append(data_home())
    return sorted(found)


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def runtime_dir():
    return os.path.join(data_home(), "runtime")


def own_source():
    """This module's source text, whether it runs from a clone, a .pyz or a brew install."""
    loader = globals().get("__loader__")
    try:
        source = loader.get_source(__name__) if loader else None
    except (ImportError, OSError):
        source = None
    if source is None:
        with open(__file__, encoding="utf-8") as handle:
            source = handle.read()
    return source.encode("utf-8")


def runtime_paths():
    """(runtime fmapi.py, its compiled copy for this interpreter)."""
    import importlib.util

    target = os.path.join(runtime_dir(), "fmapi.py")
    return target, importlib.util.cache_from_source(target)


def _compiled(source, target, st):
    """The .pyc bytes Python's import system accepts for ``source`` at ``target`` (PEP 552 timestamp form)."""
    import importlib.util
    import marshal

    code = compile(source, target, "exec", dont_inherit=True, optimize=0)
    header = importlib.util.MAGIC_NUMBER + b"\0\0\0\0"
    header += (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    return header + marshal.dumps(code)


def runtime_problem():
    """Why the helpers' runtime copy would fail or run slow (one line), or None when it is sound.

    Checks that the source is there and compiles, and that the compiled copy matches it and
    loads (a .pyc cut short on a full disk makes every helper fail with
    ``EOFError: marshal data too short``, issue 17).
    """
    import marshal

    target, cfile = runtime_paths()
    try:
        source = read_bytes(target)
        st = os.stat(target) if source is not None else None
        data = read_bytes(cfile)
    except OSError as exc:
        return "cannot be read (%s)" % (exc.strerror or exc)
    if source is None:
        return "%s is missing" % tilde(target)
    fresh = data is not None and len(data) > 16 and data[8:16] == (
        (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") + (st.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
    if fresh and data[:4] == _magic():
        try:
            marshal.loads(data[16:])
            return None
        except (EOFError, ValueError, TypeError) as exc:
            return "its compiled copy %s is damaged (%s)" % (tilde(cfile), exc)
    try:
        compile(source, target, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as exc:
        return "%s is damaged (%s)" % (tilde(target), type(exc).__name__)
    return "its compiled copy %s is missing or out of date (helpers start slower)" % tilde(cfile)


def _magic():
    import importlib.util

    return importlib.util.MAGIC_NUMBER


def install_runtime():
    """Copy fmapi.py to the data directory and write its compiled copy, both verified.

    Both go through write_atomic (a short write is an error, never a truncated file) and are
    read back: FmapiError (naming the file and the free space) unless helpers can load them.
    Returns the runtime copy's path.
    """
    target, cfile = runtime_paths()
    if target in _RUNTIME_VERIFIED and _RUNTIME_VERIFIED[target] == _stamps(target, cfile):
        return target  # setup installs it before minting, then again for each helper it writes
    ensure_private_dir(runtime_dir(), "the token helpers' runtime copy")
    source = own_source()
    if read_bytes(target) != source:
        write_atomic(target, source, 0o600)
    compile_runtime(source)
    _RUNTIME_VERIFIED[target] = _stamps(target, cfile)
    return target


_RUNTIME_VERIFIED = {}  # runtime copy -> (inode, size, mtime) of it and its compiled copy as this process verified them


def _stamps(*paths):
    try:
        return tuple((st.st_ino, st.st_size, st.st_mtime_ns) for st in map(os.stat, paths))
    except OSError:
        return None


def launcher_text():
    """The `fmapi` launcher: /bin/sh running the runtime copy with the interpreter of this setup."""
    import shlex

    return ("#!/bin/sh\n%s %s: runs fmapi's private copy in %s.\n"
            "# Do not edit: re-run `fmapi setup --link` to renew it, `fmapi --uninstall` removes it.\n"
            "exec %s %s \"$@\"\n" % (LAUNCHER_MARK, __version__, tilde(runtime_dir()),
                                      shlex.quote(interpreter()), shlex.quote(runtime_paths()[0])))


def write_launcher():
    """Write the `fmapi` launcher (after the runtime copy it runs); returns (path, on PATH).

    It goes into the first of launcher_dirs() that is on PATH and writable, else into
    ~/.local/bin. FmapiError when a file that is not a launcher has that name there.
    """
    path_dirs = {os.path.realpath(os.path.expanduser(d)) for d in os.environ.get("PATH", "").split(os.pathsep) if d}
    candidates = launcher_dirs()
    directory = next((d for d in candidates if d in path_dirs and os.path.isdir(d) and os.access(d, os.W_OK)),
                     candidates[0])
    path = os.path.join(directory, "fmapi")
    existing = read_bytes(path)
    if existing is not None and LAUNCHER_MARK.encode() not in existing[:300]:
        raise FmapiError("%s exists and is not fmapi's launcher; left it alone." % tilde(path),
                         fix="Move it aside and run setup --link again, or keep starting fmapi as before.")
    install_runtime()
    os.makedirs(directory, 0o700, exist_ok=True)
    write_atomic(path, launcher_text(), 0o700)
    del _FMAPI_COMMAND[:]  # messages from here on use the launcher
    return path, directory in path_dirs


def compile_runtime(source=None):
    """(Re)write the compiled copy of the runtime fmapi.py; FmapiError when it cannot be verified."""
    target, cfile = runtime_paths()
    if source is None:
        source = read_bytes(target)
    st = os.stat(target)
    data = _compiled(source, target, st)
    if read_bytes(cfile) != data:
        os.makedirs(os.path.dirname(cfile), mode=0o700, exist_ok=True)
        write_atomic(cfile, data, 0o600)
    problem = runtime_problem()
    if problem or read_bytes(cfile) != data or read_bytes(target) != source:
        raise FmapiError("the token helpers' runtime copy did not verify after writing it: %s (%s free there)."
                         % (problem or "it reads back different", _free_space(cfile)),
                         fix="Free some disk space, then run fmapi setup again.")


def runtime_fallback(exc):
    """Called by a helper whose compiled runtime copy failed to load (it now runs from the source).

    Rewrites the compiled copy; when that fails too, says on stderr, once per helper run, what to
    run. The token is still served.
    """
    try:
        compile_runtime()
    except (FmapiError, OSError):
        sys.stderr.write("fmapi: the helpers' compiled runtime copy is damaged (%s); running from the source, "
                         "slower. Free some disk space, then run: fmapi setup\n" % type(exc).__name__)
        sys.stderr.flush()


def interpreter():
    """The absolute path of the running Python, never a shim; stable across brew upgrades."""
    exe = sys.executable or "/usr/bin/python3"
    marker = "/Cellar/"
    if marker in exe:  # /opt/homebrew/Cellar/python@3.13/3.13.1/bin/... -> /opt/homebrew/opt/python@3.13/bin/...
        prefix, rest = exe.split(marker, 1)
        parts = rest.split("/", 2)
        if len(parts) == 3:
            candidate = "%s/opt/%s/%s" % (prefix, parts[0], parts[2])
            if os.path.exists(candidate):
                return candidate
    return exe


# What a helper runs: import the compiled runtime copy; when that fails (a damaged .pyc),
# run the source instead and let runtime_fallback repair the compiled copy or say what to run.
HELPER_BOOT = """import sys
sys.path.insert(0, sys.argv[1])
try:
    import fmapi
except Exception as exc:
    sys.modules.pop("fmapi", None)
    try:
        import types
        fmapi = types.ModuleType("fmapi")
        fmapi.__file__ = sys.argv[1] + "/fmapi.py"
        sys.modules["fmapi"] = fmapi
        with open(fmapi.__file__, "rb") as f:
            exec(compile(f.read(), fmapi.__file__, "exec"), fmapi.__dict__)
    except Exception as second:
        sys.stderr.write("fmapi: the token helpers' runtime copy in %s is missing or damaged (%s); repair it with: fmapi setup\\n" % (sys.argv[1], type(second).__name__))
        sys.exit(1)
    fmapi.runtime_fallback(exc)
sys.exit(fmapi.helper_main(sys.argv[2:]))"""


def helper_script(spec, title):
    """The text of a helper: /bin/sh starting the real interpreter on the compiled runtime."""
    import shlex

    code = "exec(%r)" % HELPER_BOOT  # one line, so the exec line stays one line
    words = [interpreter(), "-I", "-S", "-B", "-c", code, runtime_dir(), spec.dir, spec.host, str(spec.min_left), spec.to_json()]
    return (
        "#!/bin/sh\n"
        "# %s token helper, written by fmapi %s. Do not edit: re-run `fmapi` to change it,\n"
        "# `fmapi --uninstall` to remove it. It prints a valid Databricks PAT and nothing else.\n"
        "exec %s\n" % (title, __version__, " ".join(shlex.quote(word) for word in words))
    )


def write_helper(path, spec, title):
    install_runtime()
    write_atomic(path, helper_script(spec, title), 0o700)


def spec_from_helper(path):
    """The TokenSpec a helper was generated with (for installs the registry lost)."""
    import shlex

    raw = read_bytes(path)
    if not raw:
        return None
    text = "\n" + raw.decode("utf-8", "replace")
    if "\nexec " not in text:
        return None
    try:  # the exec command may span lines (the boot code is quoted across them)
        data = json.loads(shlex.split(text.split("\nexec ", 1)[1])[-1])
        return TokenSpec(**data)
    except (ValueError, TypeError, IndexError):
        return None


# --------------------------------------------------------------------------------------
# 7b. The relay: a loopback forwarder for agents that read their key once
#
# An agent that reads its key once, at start (Gemini CLI), cannot outlive a 1-hour OAuth
# access token. A launcher starts such an agent behind a Relay instead: the relay listens
# on 127.0.0.1 only (an ephemeral port), answers only requests that carry the random key
# of this launch, and forwards each one to the workspace with a bearer its token source
# gives it afresh for that request. Responses, streamed ones (SSE) included, pass through
# as they arrive. It knows nothing about any agent beyond the upstream base URL it is
# given. It never prints (the agent owns the terminal) and never puts a token in an
# answer; a loopback upstream is never reached through a proxy.
# --------------------------------------------------------------------------------------

# RFC 9110 section 7.6.1: meaningful for one connection only, never forwarded.
RELAY_HOP_BY_HOP = frozenset(("connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
                              "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"))
RELAY_KEY_HEADERS = ("authorization", "x-goog-api-key", "x-api-key")  # where agents put their key; never forwarded
RELAY_CONNECT_TIMEOUT = 30  # seconds to reach the workspace
RELAY_READ_TIMEOUT = 900  # seconds the workspace (or an idle agent connection) may stay silent
RELAY_POOL = 4  # idle connections to the workspace kept for reuse (each saves a TLS handshake)
RELAY_STALE_MIN = 60  # seconds: when renewing fails, a cached token with this much left still serves


class Relay:
    """A loopback HTTP forwarder that puts a fresh bearer on every request it passes on.

    ``upstream``: the base URL requests go to, e.g. ``https://host/serving-endpoints/gemini``;
    a request for ``/v1beta/models/m:streamGenerateContent?alt=sse`` is forwarded to
    upstream + that path and query. ``token_source``: a callable () -> str, called once for
    each forwarded request, returning the bearer (a SessionExpired it raises answers the
    agent 401, another FmapiError 502, with fmapi's message). ``headers``: (name, value)
    pairs set on every forwarded request, replacing the agent's own of those names.

    ``start()`` binds 127.0.0.1 on an ephemeral port; then ``url`` (``http://127.0.0.1:PORT``)
    and ``key`` (random, per relay) are what the agent is started with. The agent may send
    the key as ``Authorization: Bearer KEY``, ``x-goog-api-key: KEY`` or ``x-api-key: KEY``;
    a request without it gets 401 and reaches nothing. The workspace's answers, errors
    included, come back unchanged; when it cannot be reached the agent gets 502 with a
    short JSON body ``{"error_code": "TEMPORARILY_UNAVAILABLE", "message": ...}``.
    ``stop()`` (or leaving a ``with`` block) closes it. Raises ValueError for an upstream
    that is not an http(s) URL.
    """

    def __init__(self, upstream, token_source, headers=()):
        import secrets
        import threading
        import urllib.parse

        split = urllib.parse.urlsplit(upstream)
        if split.scheme not in ("http", "https") or not split.hostname:
            raise ValueError("the relay's upstream must be an http(s) URL, not %r" % upstream)
        self.upstream = upstream.rstrip("/")
        self.token_source = token_source
        self.headers = [(str(name), str(value)) for name, value in headers]
        self.key = secrets.token_urlsafe(32)
        self._https = split.scheme == "https"
        self._host = split.hostname
        self._port = split.port or (443 if self._https else 80)
        self._base_path = split.path.rstrip("/")
        self._origin = "%s://%s" % (split.scheme, split.netloc)
        self._proxy = self._find_proxy()
        self._tls = None
        self._pool = []
        self._lock = threading.Lock()
        self._server = None
        self._thread = None
        self._listening = None

    # ---- lifecycle
    def start(self):
        """Listen on 127.0.0.1 (an ephemeral port) and serve in background threads; returns self."""
        import threading

        server_class, handler_class = _relay_classes()
        self._server = server_class(("127.0.0.1", 0), handler_class)
        self._server.relay = self
        self._listening = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="fmapi-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop listening and close idle connections; requests still streaming end with the process."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        with self._lock:
            pool, self._pool = self._pool, []
        for conn in pool:
            conn.close()

    def __enter__(self):
        return self.start() if self._server is None else self

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self):
        """The port it listens on (kept after stop(), when that port refuses connections)."""
        return self._listening

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    # ---- the way to the workspace
    def _find_proxy(self):
        """(host, port, Proxy-Authorization or None) when the environment says to use a proxy, else None."""
        import urllib.parse
        import urllib.request

        if _is_loopback(self._host):
            return None  # loopback traffic never goes through a proxy
        proxy = urllib.request.getproxies().get("https" if self._https else "http")
        if not proxy or urllib.request.proxy_bypass(self._host):
            return None
        split = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        if not split.hostname:
            return None
        auth = None
        if split.username is not None:
            import base64

            pair = "%s:%s" % (urllib.parse.unquote(split.username), urllib.parse.unquote(split.password or ""))
            auth = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
        return split.hostname, split.port or 80, auth

    def _connect(self):
        import http.client

        host, port = (self._proxy[0], self._proxy[1]) if self._proxy else (self._host, self._port)
        if self._https:
            if self._tls is None:
                import ssl

                self._tls = ssl.create_default_context()  # honours SSL_CERT_FILE, like urllib
            conn = http.client.HTTPSConnection(host, port, timeout=RELAY_CONNECT_TIMEOUT, context=self._tls)
            if self._proxy:
                conn.set_tunnel(self._host, self._port,
                                headers={"Proxy-Authorization": self._proxy[2]} if self._proxy[2] else None)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=RELAY_CONNECT_TIMEOUT)
        conn.connect()
        conn.sock.settimeout(RELAY_READ_TIMEOUT)
        return conn

    def _take_connection(self):
        """(connection, reused): an idle one from the pool, else a new one (OSError when unreachable)."""
        with self._lock:
            if self._pool:
                return self._pool.pop(), True
        return self._connect(), False

    def _give_back(self, conn):
        with self._lock:
            if self._server is not None and len(self._pool) < RELAY_POOL:
                self._pool.append(conn)
                return
        conn.close()

    # ---- one request
    def _admits(self, headers):
        """True when the request carries this relay's key in one of RELAY_KEY_HEADERS."""
        import hmac

        wanted = self.key.encode("ascii")
        for name in RELAY_KEY_HEADERS:
            for value in headers.get_all(name) or []:
                value = value.strip()
                if name == "authorization":
                    scheme, _, value = value.partition(" ")
                    if scheme.lower() != "bearer":
                        continue
                    value = value.strip()
                if hmac.compare_digest(value.encode("utf-8", "surrogateescape"), wanted):
                    return True
        return False

    def _upstream_headers(self, incoming, bearer, length):
        """The agent's headers minus hop-by-hop ones and its key, plus the bearer and ours."""
        listed = {token.strip().lower() for value in incoming.get_all("connection") or [] for token in value.split(",")}
        ours = {name.lower() for name, _ in self.headers}
        drop = RELAY_HOP_BY_HOP | listed | ours | set(RELAY_KEY_HEADERS) | {"host", "content-length"}
        headers = [(name, value) for name, value in incoming.items() if name.lower() not in drop]
        headers += self.headers
        headers.append(("Authorization", "Bearer " + bearer))
        if length is not None:
            headers.append(("Content-Length", str(length)))
        if self._proxy and not self._https and self._proxy[2]:
            headers.append(("Proxy-Authorization", self._proxy[2]))
        return headers

    def serve(self, handler):
        """Answer one request of ``handler`` (an http.server request handler)."""
        import http.client

        if not handler.path.startswith("/"):
            return _relay_answer(handler, 400, "BAD_REQUEST", "fmapi relay: not a proxy; send requests to its own URL.")
        host = (handler.headers.get("Host") or "127.0.0.1").strip()
        name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
        if not _is_loopback(name):  # a web page that renamed itself to 127.0.0.1 (DNS rebinding)
            return _relay_answer(handler, 403, "PERMISSION_DENIED", "fmapi relay: requests must be addressed to 127.0.0.1.")
        if not self._admits(handler.headers):
            return _relay_answer(handler, 401, "UNAUTHENTICATED",
                                 "fmapi relay: this request does not carry the key of this launch.")
        words = (handler.requestline or "").split()  # as sent: http.server (3.11+) collapses a leading "//"
        path = relay_request_path(words[1] if len(words) == 3 and words[1] != handler.path else handler.path)
        if path is None:  # it could reach beyond the serving endpoint once a front end normalises it
            return _relay_answer(handler, 400, "BAD_REQUEST",
                                 "fmapi relay: refused a request path with dot segments, encoded slashes or backslashes.")
        try:
            body = _relay_read_body(handler)
        except ValueError as exc:
            return _relay_answer(handler, 400, "BAD_REQUEST", "fmapi relay: %s." % exc)
        try:
            bearer = self.token_source()
        except SessionExpired as exc:
            return _relay_answer(handler, 401, "UNAUTHENTICATED", exc.render(), close=False)
        except FmapiError as exc:
            return _relay_answer(handler, 502, "TEMPORARILY_UNAVAILABLE", exc.render(), close=False)
        except Exception as exc:  # noqa: BLE001 - whatever failed, the agent gets an answer
            return _relay_answer(handler, 502, "TEMPORARILY_UNAVAILABLE",
                                 "fmapi: could not get a Databricks token (%s)." % type(exc).__name__, close=False)
        headers = self._upstream_headers(handler.headers, bearer, None if body is None else len(body))
        target = self._base_path + path
        if self._proxy and not self._https:
            target = self._origin + target  # a plain-http proxy gets the absolute URL
        for attempt in (1, 2):
            conn = reused = None
            try:
                conn, reused = self._take_connection()
                conn.putrequest(handler.command, target, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                conn.endheaders(body)
                response = conn.getresponse()
                break
            except (OSError, http.client.HTTPException) as exc:
                if conn is not None:
                    conn.close()
                if attempt == 1 and reused and isinstance(exc, (ConnectionError, http.client.BadStatusLine)):
                    continue  # the workspace had closed that idle connection: once more on a new one
                reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
                return _relay_answer(handler, 502, "TEMPORARILY_UNAVAILABLE",
                                     "fmapi relay: cannot reach %s (%s)." % (self._origin, reason), close=False)
        self._pass_back(handler, conn, response)

    def _pass_back(self, handler, conn, response):
        """Send the workspace's answer to the agent as it arrives: status, headers, then each piece of the body."""
        import http.client

        listed = {token.strip().lower() for value in response.msg.get_all("connection") or [] for token in value.split(",")}
        bodiless = handler.command == "HEAD" or response.status in (204, 304) or response.status < 200
        drop = RELAY_HOP_BY_HOP | listed | ({"content-length"} if response.chunked else set())
        chunked = not bodiless and (response.chunked or response.getheader("Content-Length") is None)
        complete = False
        try:
            handler.send_response_only(response.status, response.reason)
            for name, value in response.getheaders():
                if name.lower() not in drop:
                    handler.send_header(name, value)
            if chunked and handler.request_version != "HTTP/1.1":
                chunked = False
                handler.close_connection = True  # an HTTP/1.0 agent: the body ends when the connection does
                handler.send_header("Connection", "close")
            elif chunked:
                handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            while not bodiless:
                data = response.read1(65536)  # what has arrived, without waiting for more
                if not data:
                    break
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                handler.wfile.write(b"0\r\n\r\n")
            complete = True
        except (OSError, http.client.HTTPException):
            handler.close_connection = True  # the agent left, or the workspace broke off: end both
        finally:
            response.close()
            if complete and not response.will_close:
                self._give_back(conn)
            else:
                conn.close()


def relay_request_path(target):
    """The request target ``target`` ("/path?query") when its path stays below the relay's
    upstream base path whatever normalises it on the way (RFC 3986 section 5.2.4 dot-segment
    removal, percent-decoding, backslash-as-slash, a proxy's ";" parameters), else None.

    Refused: a path not starting with one "/", "//" anywhere, a "\\", a segment that is "." or
    ".." once percent-decoded (any number of times, any case, with ";..." dropped), a decoded
    "/" or "\\" inside a segment, control characters, a fragment. The query is kept as sent.
    """
    import urllib.parse

    path, mark, query = target.partition("?")
    if not path.startswith("/") or "//" in path or "\\" in path or "#" in path:
        return None
    for segment in path.split("/")[1:]:
        decoded = segment
        for _ in range(4):  # an upstream may decode more than once: %252e -> %2e -> .
            try:
                once = urllib.parse.unquote(decoded, errors="strict") if "%" in decoded else decoded
            except UnicodeDecodeError:
                return None
            if once == decoded:
                break
            decoded = once
        else:
            return None
        if any(ch in decoded for ch in "/\\") or any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in decoded):
            return None
        if decoded.split(";")[0].strip() in (".", ".."):
            return None
    return path + mark + query


def _relay_classes():
    """The relay's server and request-handler classes (http.server is imported only when a relay starts)."""
    import http.server
    import socketserver

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def server_bind(self):
            socketserver.TCPServer.server_bind(self)  # no reverse DNS lookup of 127.0.0.1
            self.server_name, self.server_port = self.server_address[:2]

        def verify_request(self, request, client_address):
            return _is_loopback(str(client_address[0]))  # never a connection from another address

        def handle_error(self, request, client_address):
            pass  # never print: the agent owns the terminal

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fmapi-relay"
        sys_version = ""
        timeout = RELAY_READ_TIMEOUT  # an idle keep-alive connection from the agent

        def log_message(self, format, *args):  # noqa: A002 - never print, never log a header
            pass

        def forward(self):
            self.server.relay.serve(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = forward

    return Server, Handler


def _relay_answer(handler, status, code, message, close=True):
    """The relay's own answer: a short JSON body in the workspace's error shape."""
    body = json.dumps({"error_code": code, "message": message}).encode("utf-8")
    try:
        handler.send_response_only(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        if close:  # the request body was not read: this connection cannot carry another request
            handler.close_connection = True
            handler.send_header("Connection", "close")
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
    except OSError:
        handler.close_connection = True


def _relay_read_body(handler):
    """The request body as bytes (a chunked one decoded), or None when the request has none."""
    encoding = (handler.headers.get("Transfer-Encoding") or "").strip().lower()
    if encoding:
        if encoding != "chunked":
            raise ValueError("unsupported Transfer-Encoding %r" % encoding)
        parts = []
        while True:
            line = handler.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise ValueError("malformed chunked body") from None
            if size == 0:
                while handler.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields: dropped
                return b"".join(parts)
            data = handler.rfile.read(size)
            if len(data) < size:
                raise ValueError("the request body ended early")
            parts.append(data)
            handler.rfile.readline(65537)
    length = handler.headers.get("Content-Length")
    if length is None:
        return None
    try:
        size = int(length)
    except ValueError:
        size = -1
    if size < 0:
        raise ValueError("bad Content-Length %r" % length)
    data = handler.rfile.read(size)
    if len(data) < size:
        raise ValueError("the request body ended early")
    return data


def relay_token_source(spec):
    """A Relay's token source for an install: () -> its token, asked afresh for each request.

    The install's cache answers while its token has ``spec.min_left`` seconds left; then it
    is renewed under the install's lock (OAuth mode: one `databricks auth token
    --force-refresh` for all concurrent requests). When renewing fails, a cached token
    with RELAY_STALE_MIN seconds left still serves, so the agent works on while the user
    signs in again; otherwise the FmapiError (SessionExpired, ...) goes to the relay,
    which answers the agent with fmapi's message.
    """
    def token():
        try:
            return obtain_token(spec)[0]
        except FmapiError:
            stale = usable_token(read_cache(spec.cache_path), spec.host, RELAY_STALE_MIN)
            if stale:
                return stale
            raise

    return token


def _terminal_sends_signals_to_us():
    """True when fmapi's process group is the foreground of its terminal: then Ctrl-C reaches the agent directly."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def run_behind_relay(path, argv, env, relay):
    """Run the agent ``path`` (``argv[0]`` is the name it sees) with ``env`` while ``relay`` serves it.

    The agent shares fmapi's terminal and process group, so Ctrl-C, Ctrl-\\, Ctrl-Z and
    window resizes reach it straight from the terminal; fmapi ignores those meanwhile and
    passes on what only it receives: SIGTERM, SIGHUP, and SIGINT/SIGQUIT sent to fmapi
    alone (no terminal). When the agent ends, the relay stops. Returns the agent's exit
    status; an agent killed by a signal makes fmapi end by the same signal, so a shell
    sees what it would have seen without fmapi. ``env`` gets 127.0.0.1 added to NO_PROXY,
    so that an agent told to use a proxy still reaches the relay directly. Raises
    FmapiError when the agent cannot start.
    """
    import signal
    import subprocess

    env = dict(os.environ if env is None else env)
    for name in ("NO_PROXY", "no_proxy"):
        listed = [item.strip() for item in (env.get(name) or "").split(",") if item.strip()]
        env[name] = ",".join(listed + [h for h in ("127.0.0.1",) if h not in listed])

    state = {"child": None, "pending": []}

    def pass_on(signum, frame):
        child = state["child"]
        if child is None:
            state["pending"].append(signum)
        else:
            try:
                child.send_signal(signum)
            except OSError:
                pass

    def from_terminal(signum, frame):
        pass  # the terminal sent it to the agent too

    terminal = _terminal_sends_signals_to_us()
    handlers = {"SIGTERM": pass_on, "SIGHUP": pass_on,
                "SIGINT": from_terminal if terminal else pass_on, "SIGQUIT": from_terminal if terminal else pass_on}
    saved = {}
    for name, handler in handlers.items():
        if hasattr(signal, name):
            number = getattr(signal, name)
            saved[number] = signal.signal(number, handler)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        try:
            child = subprocess.Popen(list(argv), executable=path, env=env,
                                     umask=-1 if INHERITED_UMASK is None else INHERITED_UMASK)
        except OSError as exc:
            raise FmapiError("could not start %s: %s." % (path, exc.strerror or exc),
                             fix="Reinstall it, then retry.") from None
        state["child"] = child
        for signum in state["pending"]:
            child.send_signal(signum)
        status = child.wait()
    finally:
        relay.stop()
        for number, previous in saved.items():
            signal.signal(number, previous)
    if status < 0:  # killed by a signal: end the same way
        try:
            signal.signal(-status, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # SIGKILL and SIGSTOP have no handler to reset
        os.kill(os.getpid(), -status)
        return 128 - status
    return status


# --------------------------------------------------------------------------------------
# 8. Agents: what every agent section provides
# --------------------------------------------------------------------------------------


class Agent:
    """One coding agent: where its configuration lives, what fmapi writes there and removes.

    Setup, `fmapi token` and uninstall work through this interface only. A *record* is
    the dict fmapi keeps in the registry for one install: at least ``agent``, ``dir``
    (where the helper, cache and lock live), ``host``, ``profile``, ``lifetime_days``,
    ``model`` and whatever the agent needs to undo its changes exactly.
    """

    name = ""  # --agent value
    title = ""  # for people
    command = ""  # the executable on PATH
    npm_package = ""
    pat_comment = ""  # PAT comments start with this (uninstall revokes by it)
    default_model = ""
    family = ""  # endpoint names of this agent's models contain this
    apis = ()  # the wire APIs it can talk to its models with (see classify_endpoint): anthropic, responses, gemini, chat
    min_version = None  # oldest agent version fmapi can configure
    node_version = None  # oldest Node.js the agent runs on, when it says nothing useful on an older one
    revoke_replaced = True  # the agent re-asks for a key on 401, so a replaced PAT may go
    headless = ""  # how to run the agent without a terminal, for setup's closing message
    uses_helper = True  # runs fmapi's helper (and so the runtime copy) on its own
    config_env = ""  # the variable that moves the agent's user directory (CLAUDE_CONFIG_DIR, CODEX_HOME, …)

    def ttl(self, lifetime):
        """How long the agent keeps a token before asking the helper again (seconds), for
        tokens that live ``lifetime`` seconds: a quarter of it, at most AGENT_TTL_MAX (PATs:
        1 hour; 1-hour OAuth tokens: 15 minutes)."""
        return max(1, min(int(lifetime) // 4, AGENT_TTL_MAX))

    def min_left(self, lifetime, margin=MIN_REMAINING):
        """A token handed out must outlive the agent's TTL by the safety margin (seconds);
        the margin is capped at half the lifetime, so a fresh token always qualifies."""
        return self.ttl(lifetime) + min(int(margin), int(lifetime) // 2)

    def token_spec(self, record):
        return TokenSpec(
            agent=self.name, dir=self.cache_dir(record), host=record["host"], profile=record["profile"],
            lifetime_days=record.get("lifetime_days") or DEFAULT_PAT_DAYS,
            min_left=self.min_left(credential_lifetime(record), int(record.get("min_remaining") or MIN_REMAINING)),
            comment=self.pat_comment, revoke_replaced=self.revoke_replaced, cli=record.get("cli"),
            auth=record.get("auth") or "pat", config_file=record.get("config_file"),
        )

    def helper_path(self, record):
        return os.path.join(record["dir"], HELPER_NAME)

    def cache_dir(self, record):
        """Where the install's PAT cache and lock live: ``record["cache_dir"]`` when set (a project
        install in a git work tree keeps them out of the tree), else the install dir."""
        return record.get("cache_dir") or record["dir"]

    # The rest is agent-specific.
    def install_dir(self, location=None):
        raise NotImplementedError

    def prompts(self, previous):
        """Extra questions after the profile: list of (key, label, default)."""
        return [("model", "Model", self.models_in_file(previous or {}).get("model")
                 or (previous or {}).get("model") or self.default_model)]

    def models_in_file(self, previous):
        """{answer key: model} as the agent's file of ``previous`` says now: a model the user chose
        there since setup is what a re-run keeps (ollama/ollama#16348). {} when unknown."""
        return {}

    def env_dir_installs(self, registry):
        """This agent's installs made with its config_env variable set, when that variable is not set now."""
        if not self.config_env or os.environ.get(self.config_env):
            return []
        return [r for r in registry.values() if r.get("agent") == self.name and r.get("config_env") == self.config_env]

    def place(self, record):
        """The record with where this install's files go (settings file, cache dir), decided once
        at setup before anything is checked or written; most agents have nothing to decide."""
        return record

    def check(self, record):
        """Refuse before anything is minted or written when the agent's files are unusable."""

    def check_writable(self, files, directories, fix):
        """FmapiError naming the real file (and where a link points) that fmapi could not write."""
        for path, is_dir in [(f, False) for f in files] + [(d, True) for d in directories]:
            problem = write_problem(path, directory=is_dir)
            if not problem:
                continue
            real, why = problem
            if real != os.path.abspath(path):
                hint = " (a Nix/home-manager store?)" if "read-only" in why else ""
                what = "%s links to %s, which %s%s" % (tilde(path), real, why, hint)
            else:
                what = "%s %s" % (tilde(path), why)
            raise FmapiError("%s; fmapi changed nothing and minted no token." % what, fix=fix)

    def configure(self, record, previous):
        """Write the agent's configuration; returns the record with what was written."""
        raise NotImplementedError

    def discover(self):
        """Installs present on disk that the registry may not know: list of records."""
        return []

    def unconfigure(self, record, report):
        """Remove what fmapi wrote for ``record``; append to ``report``. False when something that
        still names fmapi's helper could not be cleaned: the helper and the record then stay."""
        raise NotImplementedError

    def verify(self, record):
        """What is wrong with the install's configuration today, for `fmapi doctor`: a list of
        (problem, fix) pairs, empty when the files parse and still carry fmapi's keys."""
        return []

    def finish_message(self, record):
        return "Run: %s" % self.command


AGENTS = {}  # --agent name -> Agent; each agent's section registers itself


def register(agent):
    AGENTS[agent.name] = agent
    return agent


class Report:
    """What uninstall (and setup's migration) did, for the summary at the end."""

    def __init__(self):
        self.removed, self.kept, self.failed, self.notes = [], [], [], []

    def print(self):
        for title, items in (("Removed", self.removed), ("Kept", self.kept), ("Failed", self.failed)):
            if items:
                say("%s:" % title)
                for item in items:
                    say("  - " + item)
        for note in self.notes:
            say(note)


MISSING = object()  # "this key is not in the file", distinct from any JSON value


def header_name(line):
    return line.split(":", 1)[0].strip().lower()


def merge_headers(theirs, separator):
    """The user's ``Name: value`` headers (``separator``-joined) with fmapi's coding-agent header
    added as one more; a header of the same name the user had is replaced. Returns the text."""
    ours = "%s: %s" % CODING_AGENT_HEADER
    kept = [part.strip() for part in (theirs or "").split(separator.strip() or separator)
            if part.strip() and header_name(part) != CODING_AGENT_HEADER[0]]
    return separator.join(kept + [ours])


def strip_header(value, separator):
    """``value`` without fmapi's coding-agent header (the user's other headers stay as they are)."""
    ours = "%s: %s" % CODING_AGENT_HEADER
    parts = value.split(separator.strip() or separator)
    kept = [part for part in parts if part.strip().lower() != ours.lower()]
    return (separator.strip() or separator).join(kept).strip() if len(kept) != len(parts) else value


def tilde(path):
    """``path`` with the home directory shown as ~ (for messages)."""
    home = os.path.expanduser("~")
    path = str(path)
    if path == home or path.startswith(home + os.sep):
        return "~" + path[len(home):]
    return path


# Launchers (`fmapi gemini`, `fmapi copilot`): for agents that take their key or provider
# only from the environment, fmapi checks the install's token, then replaces itself with
# the agent, which inherits the terminal, the signals and the exit status.


def launch_path(agent):
    """The agent's executable for a launcher, or an error saying how to install it."""
    path = find_command(agent.command)
    if not path:
        raise FmapiError("%s (%s) is not installed or not on PATH." % (agent.title, agent.command),
                         fix="Install it: npm install -g %s (or run: fmapi setup --agent %s)" % (agent.npm_package, agent.name))
    return path


def launch_token(agent, spec, announce=True):
    """A token with ``spec.min_left`` seconds of life for a launch, renewed when needed.

    ``announce``: say on stderr when a new token was obtained and until when it is valid
    (not for an agent behind the relay, whose requests each get the token current then).

    On a terminal a dead Databricks session is signed in again first. When renewing fails
    but the cached token still has minutes left, that one is returned with a warning that
    says until when it works and what to do.
    """
    cache = read_cache(spec.cache_path) or {}
    before = cache.get("token")
    try:
        try:
            token, replaced = obtain_token(spec)
        except SessionExpired:
            if not can_ask():
                raise
            sign_in(spec.host, spec.profile, spec.cli, spec.config_file)
            token, replaced = obtain_token(spec)
        if replaced:  # PATs to revoke (for a launched agent, only what an interrupted run left behind)
            revoke_in_background(*replaced)
    except FmapiError as exc:
        token = usable_token(cache, spec.host, MIN_REMAINING)
        if not token:
            raise
        # The old token still works for a while: start, but say until when and how to fix it.
        warn("could not renew the %s token, so this session stops working at %s: %s%s"
             % (agent.title, time.strftime("%H:%M", time.localtime(cache["expiry"])), exc.message,
                "\n  " + exc.fix if exc.fix else ""))
    if announce and token != before:
        expiry = (read_cache(spec.cache_path) or {}).get("expiry", 0)
        print("fmapi: new %s token, valid until %s." % (agent.title, time.strftime("%Y-%m-%d %H:%M", time.localtime(expiry))),
              file=sys.stderr, flush=True)
    return token


def exec_agent(agent, path, argv, env):
    """Replace this process with ``path argv...`` in ``env``, with the user's umask and signals."""
    import signal

    sys.stdout.flush()
    sys.stderr.flush()
    if INHERITED_UMASK is not None:
        os.umask(INHERITED_UMASK)
    for name in ("SIGPIPE", "SIGXFSZ"):  # Python ignores these; the agent must not inherit that
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execve(path, [agent.command] + list(argv), env)
    except OSError as exc:
        raise FmapiError("could not start %s: %s." % (path, exc.strerror or exc),
                         fix="Reinstall it: npm install -g %s" % agent.npm_package) from None


# --------------------------------------------------------------------------------------
# 9. Claude Code
#
# settings.json gets the seed's keys: apiKeyHelper and the env table below. Claude Code
# runs the helper through /bin/sh, caches its answer for CLAUDE_CODE_API_KEY_HELPER_TTL_MS
# and runs it again on HTTP 401.
# --------------------------------------------------------------------------------------

CLAUDE_DEFAULTS = {
    "model": "databricks-claude-opus-4-6",
    "opus": "databricks-claude-opus-4-6",
    "sonnet": "databricks-claude-sonnet-4-6",
    "haiku": "databricks-claude-haiku-4-5",
}
CLAUDE_ENV_KEYS = (
    "ANTHROPIC_MODEL",
    "ANTHROPIC_BASE_URL",
    "ANTHROPIC_DEFAULT_OPUS_MODEL",
    "ANTHROPIC_DEFAULT_SONNET_MODEL",
    "ANTHROPIC_DEFAULT_HAIKU_MODEL",
    "ANTHROPIC_CUSTOM_HEADERS",
    "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS",
    "CLAUDE_CODE_API_KEY_HELPER_TTL_MS",
)
CLAUDE_STALE_KEYS = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_API_KEY")  # they would beat the helper
CLAUDE_LOCAL_SETTINGS = "settings.local.json"  # personal, uncommitted project settings (Claude Code docs)
CLAUDE_MODEL_KEYS = {"model": "ANTHROPIC_MODEL", "opus": "ANTHROPIC_DEFAULT_OPUS_MODEL",
                     "sonnet": "ANTHROPIC_DEFAULT_SONNET_MODEL", "haiku": "ANTHROPIC_DEFAULT_HAIKU_MODEL"}
ANTHROPIC_PATH = "/serving-endpoints/anthropic"


class Claude(Agent):
    name = "claude"
    title = "Claude Code"
    headless = 'claude -p "your task" (print mode: answers once, then exits)'
    command = "claude"
    npm_package = "@anthropic-ai/claude-code"
    pat_comment = "Claude Code FMAPI"
    default_model = CLAUDE_DEFAULTS["model"]
    family = "claude"
    config_env = "CLAUDE_CONFIG_DIR"
    apis = ("anthropic",)

    def install_dir(self, location=None):
        """The .claude directory for a settings location: home, cwd or a base path."""
        location = location or "home"
        if location == "home":
            return os.path.abspath(os.environ.get("CLAUDE_CONFIG_DIR") or os.path.join(os.path.expanduser("~"), ".claude"))
        if location == "cwd":
            return os.path.join(os.getcwd(), ".claude")
        return os.path.join(os.path.abspath(os.path.expanduser(location)), ".claude")

    def settings_path(self, record):
        return record.get("settings") or os.path.join(record["dir"], "settings.json")

    def place(self, record):
        """A project install (cwd or PATH) inside a git work tree: fmapi's keys go to
        .claude/settings.local.json, Claude Code's personal settings file (same keys, higher
        precedence than the team's settings.json), the PAT cache outside the tree, and fmapi's
        files in the tree into the repository's info/exclude, never the team's .gitignore."""
        tree = git_work_tree(os.path.dirname(record["dir"])) if record.get("location", "home") != "home" else None
        if not tree:
            return record
        import hashlib

        top, exclude = tree
        digest = hashlib.sha256(record["dir"].encode("utf-8", "surrogateescape")).hexdigest()[:16]
        return dict(record, settings=os.path.join(record["dir"], CLAUDE_LOCAL_SETTINGS),
                    cache_dir=os.path.join(data_home(), "project-caches", digest),
                    git={"top": top, "exclude": exclude})

    def _exclude_lines(self, record):
        top = record["git"]["top"]
        return ["/" + os.path.relpath(path, top).replace(os.sep, "/")
                for path in (self.settings_path(record), self.helper_path(record))]

    def state_path(self, record=None):
        """Claude Code's own state file, where onboarding is marked complete."""
        if record and record.get("config_env") == self.config_env:
            return os.path.join(record["dir"], ".claude.json")
        config_dir = os.environ.get("CLAUDE_CONFIG_DIR")
        if config_dir:
            return os.path.join(config_dir, ".claude.json")
        return os.path.join(os.path.expanduser("~"), ".claude.json")

    def prompts(self, previous):
        previous = previous or {}
        edited = self.models_in_file(previous)
        return [(key, label, edited.get(key) or previous.get(key) or CLAUDE_DEFAULTS[key])
                for key, label in (("model", "Model"), ("opus", "Opus model"), ("sonnet", "Sonnet model"),
                                   ("haiku", "Haiku model"))]

    def models_in_file(self, previous):
        if not previous.get("dir"):
            return {}
        try:
            env = load_json_object(previous.get("settings") or self.settings_path(previous)).get("env")
        except (UnparsableFile, OSError):
            return {}
        found = {}
        for key, name in CLAUDE_MODEL_KEYS.items():
            value = env.get(name) if isinstance(env, dict) else None
            if isinstance(value, str) and value.strip():
                found[key] = value.strip()
        return found

    # Keys fmapi reads or writes and the JSON type Claude Code expects there.
    KNOWN_TYPES = (("env", dict, "an object"), ("apiKeyHelper", str, "a string"))

    def check(self, record):
        """Refuse (touching nothing) a settings file whose known keys fmapi would have to drop, and
        one that setup could not write (a home-manager link into /nix/store)."""
        path = self.settings_path(record)
        check_link_target(path)
        files = [path] + ([record["git"]["exclude"]] if record.get("git") else [])
        self.check_writable(files, [record["dir"], self.cache_dir(record)],
                            "Put fmapi's settings elsewhere with --settings-location PATH, or add apiKeyHelper and "
                            "the env keys (README, Claude Code) to the config manager that owns the file.")
        try:
            settings = load_json_object(path)
        except UnreadableFile:
            raise  # a device, a FIFO, a huge file: refused before anything is minted
        except UnparsableFile:
            return  # configure keeps its bytes aside and says so
        self._check_types(path, settings)

    def _check_types(self, path, settings):
        for key, kind, name in self.KNOWN_TYPES:
            if key in settings and not isinstance(settings[key], kind):
                raise FmapiError("%s: \"%s\" is %s, not %s; fmapi left the file untouched."
                                 % (tilde(path), key, json.dumps(settings[key])[:60], name),
                                 fix="Fix it (Claude Code expects %s there, e.g. \"env\": {\"FOO\": \"bar\"}), "
                                     "then re-run fmapi." % name)

    def env_for(self, record):
        return {
            "ANTHROPIC_MODEL": record["model"],
            "ANTHROPIC_BASE_URL": record["host"] + ANTHROPIC_PATH,
            "ANTHROPIC_DEFAULT_OPUS_MODEL": record["opus"],
            "ANTHROPIC_DEFAULT_SONNET_MODEL": record["sonnet"],
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": record["haiku"],
            "ANTHROPIC_CUSTOM_HEADERS": "%s: %s" % CODING_AGENT_HEADER,
            "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS": "1",
            "CLAUDE_CODE_API_KEY_HELPER_TTL_MS": str(self.ttl(credential_lifetime(record)) * 1000),
        }

    def helper_command(self, record):
        import shlex

        return shlex.quote(self.helper_path(record))

    def configure(self, record, previous):
        path = self.settings_path(record)
        try:
            settings, style = load_json_document(path)
            existed = os.path.exists(path)
        except UnreadableFile:
            raise  # a device, a FIFO, a huge file: nothing to keep aside, nothing is written
        except UnparsableFile as exc:
            moved = backup_aside(path)
            record = dict(record, settings_backup=moved)  # uninstall moves it back (F7)
            warn("%s could not be read as JSON (%s): all the settings in it stop applying while fmapi's fresh "
                 "file is in place. Your bytes are kept in %s; `fmapi --uninstall` puts them back, or fix them "
                 "and merge them in." % (tilde(path), exc.reason, tilde(moved)))
            settings, style, existed = {}, TextStyle(), False
        self._check_types(path, settings)
        previous = previous or {}
        if "settings_backup" not in record and previous.get("settings_backup"):
            record = dict(record, settings_backup=previous["settings_backup"])  # a re-run keeps it
        env = settings.get("env")
        if not isinstance(env, dict):
            env = {}
        written = self.env_for(record)
        headers = env.get("ANTHROPIC_CUSTOM_HEADERS")
        if isinstance(headers, str) and headers.strip():
            written["ANTHROPIC_CUSTOM_HEADERS"] = merge_headers(headers, "\n")
        written["apiKeyHelper"] = self.helper_command(record)
        saved = self._saved_values(settings, env, written, previous)
        if previous.get("model") and env.get("ANTHROPIC_MODEL") == record["model"] != previous["model"]:
            say("  kept the model you set in %s since the last setup: %s (--model chooses another)."
                % (tilde(path), record["model"]))
        for key in CLAUDE_STALE_KEYS:
            env.pop(key, None)
            settings.pop(key, None)
        settings.pop("_fmapi_meta", None)
        env.update((key, value) for key, value in written.items() if key != "apiKeyHelper")
        settings["apiKeyHelper"] = written["apiKeyHelper"]
        settings["env"] = env
        if record.get("git"):  # before the files appear, so `git status` never shows them
            undo = exclude_add(record["git"]["exclude"], self._exclude_lines(record))
            old = (previous.get("git") or {}).get("excluded") or {}
            if old.get("path") == undo["path"]:
                undo = dict(old, added=old.get("added", []) + [a for a in undo["added"] if a not in old.get("added", [])])
            record = dict(record, git=dict(record["git"], excluded=undo))
        write_helper(self.helper_path(record), self.token_spec(record), self.title)
        write_in_place(path, dump_json(settings, style), 0o600)
        if self._mark_onboarded(record):
            record = dict(record, state_created=True)
        for key in CLAUDE_STALE_KEYS:
            if os.environ.get(key):
                warn("%s is set in your environment and overrides fmapi's helper; unset it (check your shell profile)." % key)
        self._say_replaced(saved, previous.get("saved") or {}, written, path)
        created = previous.get("settings_created") if previous.get("saved") is not None else not existed
        return dict(record, settings=path, written=written, saved=saved, settings_created=bool(created))

    def _saved_values(self, settings, env, written, previous):
        """What the user had under each key fmapi sets or removes, for uninstall to put back.

        {key: {"had": bool, "value": …}}; env keys by name, the top-level helper as "apiKeyHelper".
        A value still as fmapi left it keeps what was saved before fmapi's first write.
        """
        old_saved, old_written = previous.get("saved"), previous.get("written") or {}
        earlier_install = bool(previous) or "_fmapi_meta" in settings or HELPER_NAME in str(settings.get("apiKeyHelper", ""))
        saved = {}
        for key in list(written) + list(CLAUDE_STALE_KEYS):
            where = settings if key == "apiKeyHelper" else env
            now = where.get(key, MISSING)
            if old_saved is not None and key in old_saved and now in (old_written.get(key, MISSING), written.get(key, MISSING)):
                saved[key] = old_saved[key]  # still fmapi's value (or the user's edit fmapi now adopts)
            elif now is MISSING:
                saved[key] = {"had": False}
            elif earlier_install and old_saved is None and (
                    (key in CLAUDE_STALE_KEYS and "_fmapi_meta" in settings) or self._is_ours(key, now, previous)):
                saved[key] = {"had": False}  # an install from before fmapi remembered values: fmapi's own
            else:
                saved[key] = {"had": True, "value": now}
        return saved

    def _say_replaced(self, saved, old_saved, written, path):
        """Setup names each value of the user's it replaced (values of credentials are not shown)."""
        replaced, headers = [], False
        for key, entry in saved.items():
            if not entry.get("had") or old_saved.get(key) == entry or entry.get("value") == written.get(key):
                continue
            if key == "ANTHROPIC_CUSTOM_HEADERS":
                headers = True
            elif key in CLAUDE_STALE_KEYS:
                replaced.append("env.%s (removed: it would beat the helper)" % key)
            else:
                replaced.append(("%s = %s" if key == "apiKeyHelper" else "env.%s = %s") % (key, json.dumps(entry["value"])))
        if headers:
            say("  kept your ANTHROPIC_CUSTOM_HEADERS and added %s: %s to them." % CODING_AGENT_HEADER)
        if replaced:
            say("  replaced your own values in %s (uninstall puts them back):" % tilde(path))
            for item in replaced:
                say("    - " + item)

    def _mark_onboarded(self, record):
        """hasCompletedOnboarding in ~/.claude.json; True when fmapi created that file."""
        path = self.state_path(record)
        try:
            state, style = load_json_document(path)
        except UnparsableFile:
            warn("%s is not valid JSON; left it alone (Claude Code may ask you to log in once)." % tilde(path))
            return False
        if state.get("hasCompletedOnboarding") is True:
            return False
        if not isinstance(state.get("hasCompletedOnboarding", False), bool):  # not a value fmapi may replace
            warn("%s: \"hasCompletedOnboarding\" is not true or false; left it alone (Claude Code may ask you "
                 "to log in once)." % tilde(path))
            return False
        created = not os.path.exists(path)
        state["hasCompletedOnboarding"] = True
        try:
            write_in_place(path, dump_json(state, style))
        except OSError as exc:
            warn("could not mark onboarding done in %s (%s); Claude Code may ask you to log in once."
                 % (tilde(path), exc.strerror or exc))
            return False
        return created

    def _unmark_onboarded(self, record, report):
        """Delete ~/.claude.json when fmapi created it and Claude Code never wrote to it since."""
        path = self.state_path(record)
        if not record.get("state_created"):
            return
        try:
            untouched = load_json_object(path) == {"hasCompletedOnboarding": True}
        except UnparsableFile:
            untouched = False
        if untouched and remove_file(path):
            report.removed.append(tilde(path) + " (fmapi created it)")

    def discover(self):
        found = []
        for location in ("home", "cwd"):
            directory = self.install_dir(location)
            record = self._record_from_disk(directory)
            if record:
                found.append(record)
        return found

    def _record_from_disk(self, directory):
        """A record for an fmapi (or seed script) install found in ``directory``, if any."""
        settings_file = os.path.join(directory, "settings.json")
        helper = os.path.join(directory, HELPER_NAME)
        try:  # a project install in a git work tree keeps fmapi's keys in settings.local.json
            local = os.path.join(directory, CLAUDE_LOCAL_SETTINGS)
            if HELPER_NAME in str(load_json_object(local).get("apiKeyHelper", "")):
                settings_file = local
        except UnparsableFile:
            pass
        has_files = any(os.path.exists(os.path.join(directory, n)) for n in (HELPER_NAME, CACHE_NAME))
        try:
            settings = load_json_object(settings_file)
        except UnparsableFile:
            settings = None
        # Only fmapi's own marks count: a team's hand-written Databricks settings are not an install.
        ours = isinstance(settings, dict) and (HELPER_NAME in str(settings.get("apiKeyHelper", "")) or "_fmapi_meta" in settings)
        if not (has_files or ours or (settings is None and os.path.exists(helper))):
            return None
        spec = spec_from_helper(helper)
        record = {"agent": self.name, "dir": directory, "settings": settings_file}
        tree = git_work_tree(os.path.dirname(directory)) if settings_file.endswith(CLAUDE_LOCAL_SETTINGS) else None
        if tree:  # fmapi's exclude lines are known by their paths
            record["git"] = {"top": tree[0], "exclude": tree[1]}
            record["git"]["excluded"] = {"path": tree[1], "added": self._exclude_lines(record), "created": False}
        if spec:
            record.update(host=spec.host, profile=spec.profile, lifetime_days=spec.lifetime_days, cli=spec.cli,
                          auth=spec.auth, config_file=spec.config_file)
        return record

    def _is_ours(self, key, value, record):
        """Did fmapi write this value? A value the user changed since is theirs."""
        written = record.get("written")
        if written and key in written:
            return value == written[key]
        if key == "apiKeyHelper":
            return HELPER_NAME in str(value)
        if key == "ANTHROPIC_BASE_URL":
            return str(value).endswith(ANTHROPIC_PATH)
        if key in ("ANTHROPIC_MODEL", "ANTHROPIC_DEFAULT_OPUS_MODEL", "ANTHROPIC_DEFAULT_SONNET_MODEL", "ANTHROPIC_DEFAULT_HAIKU_MODEL"):
            return str(value).startswith("databricks-")
        if key == "ANTHROPIC_CUSTOM_HEADERS":
            return value == "%s: %s" % CODING_AGENT_HEADER
        if key == "CLAUDE_CODE_DISABLE_EXPERIMENTAL_BETAS":
            return value == "1"
        if key == "CLAUDE_CODE_API_KEY_HELPER_TTL_MS":
            return str(value).isdigit()
        return False

    def unconfigure(self, record, report):
        """Settings first; the helper goes only once no settings file names it any more.

        Returns False when the settings could not be cleaned: the helper, its cache and the
        registry's record then stay, so Claude Code keeps working and a later uninstall retries.
        """
        directory = record["dir"]
        path = record.get("settings") or self.settings_path(record)
        problem = self._clean_settings(record, path, report)
        if problem:
            report.failed.append("%s %s; fmapi kept %s so Claude Code still starts. Remove apiKeyHelper and the env "
                                 "keys %s from it by hand (or fix it), then run fmapi --uninstall again."
                                 % (tilde(path), problem, tilde(self.helper_path(record)), ", ".join(CLAUDE_ENV_KEYS)))
            return False
        cache_dir = self.cache_dir(record)
        for name in (HELPER_NAME,) + TOKEN_FILES:
            target = os.path.join(cache_dir if name != HELPER_NAME else directory, name)
            if remove_file(target):
                report.removed.append(tilde(target))
        leftovers = leftover_temp_files(directory, (HELPER_NAME, CACHE_NAME, os.path.basename(path)))
        if cache_dir != directory:
            leftovers += leftover_temp_files(cache_dir, (CACHE_NAME, LEDGER_NAME))
        for leftover in leftovers:
            remove_file(leftover)
            report.removed.append(tilde(leftover))
        self._unmark_onboarded(record, report)
        excluded = (record.get("git") or {}).get("excluded")
        if excluded and exclude_remove(excluded):
            report.removed.append("fmapi's lines from %s" % tilde(excluded["path"]))
        for empty in (cache_dir, os.path.dirname(cache_dir) if record.get("cache_dir") else None, directory):
            try:
                if empty:
                    os.rmdir(empty)  # only when fmapi left it empty
            except OSError:
                pass
        return True

    def _clean_settings(self, record, path, report):
        """Take fmapi's keys out of ``path``, putting back what the user had; None when done,
        else why it could not (the file is then untouched)."""
        try:
            settings, style = load_json_document(path)
        except UnparsableFile as exc:
            return "is not valid JSON (%s)" % exc.reason
        if not settings and not os.path.exists(path):
            self._restore_backup(record, path, report)
            return None
        saved = record.get("saved")
        changed = self._restore(settings, record, path, report) if isinstance(saved, dict) \
            else self._remove_recognised(settings, record, path, report)
        if isinstance(settings.get("env"), dict) and not settings["env"]:
            del settings["env"]
            changed = True
        if not changed:
            return None
        try:
            if settings or os.path.islink(path) or not record.get("settings_created", True):
                write_in_place(path, dump_json(settings, style), 0o600)  # a dotfile manager's link stays
                report.removed.append("fmapi's keys from %s" % tilde(path))
                backup = record.get("settings_backup")
                if isinstance(backup, str) and os.path.exists(backup):
                    report.kept.append("your original %s, which fmapi could not read, in %s (you have added "
                                       "settings since; merge it by hand)" % (tilde(path), tilde(backup)))
            else:
                remove_file(path)
                if not self._restore_backup(record, path, report):
                    report.removed.append(tilde(path) + " (nothing else was in it)")
        except OSError as exc:
            return "could not be written (%s)" % (exc.strerror or exc)
        return None

    def _restore_backup(self, record, path, report):
        """Move the user's unreadable settings file, set aside at setup, back to ``path`` (byte
        for byte); True when it was put back."""
        backup = record.get("settings_backup")
        if not isinstance(backup, str) or not os.path.exists(backup) or os.path.lexists(path):
            return False
        os.rename(backup, path)
        report.removed.append("fmapi's %s; put back your original file from %s" % (tilde(path), tilde(backup)))
        return True

    def _restore(self, settings, record, path, report):
        """Put back what ``record["saved"]`` remembers where fmapi's value is still in place."""
        saved, written = record["saved"], record.get("written") or {}
        changed = False
        env = settings.get("env") if isinstance(settings.get("env"), dict) else None
        for key, entry in saved.items():
            if key == "env":
                continue
            where = settings if key == "apiKeyHelper" else env
            now = where.get(key, MISSING) if where is not None else MISSING
            if key == "ANTHROPIC_CUSTOM_HEADERS" and isinstance(now, str) and now != written.get(key):
                rest = strip_header(now, "\n")  # the user edited the lines since: only fmapi's line goes
                if rest != now:
                    if rest:
                        where[key] = rest
                    else:
                        del where[key]
                    changed = True
                continue
            if now != written.get(key, MISSING):
                label = key if key == "apiKeyHelper" else "env." + key
                why = "not fmapi's" if key in CLAUDE_STALE_KEYS else "you changed it after fmapi set it"
                report.kept.append("%s: %s (%s)" % (tilde(path), label, why))
                continue
            if entry.get("had"):
                if where is None:
                    where = env = settings.setdefault("env", {})
                if where.get(key, MISSING) != entry.get("value"):
                    where[key] = entry.get("value")
                    changed = True
            elif now is not MISSING:
                del where[key]
                changed = True
        return changed

    def _remove_recognised(self, settings, record, path, report):
        """For installs from before fmapi remembered the user's values: remove what is clearly fmapi's."""
        changed = False
        env = settings.get("env") if isinstance(settings.get("env"), dict) else None
        # The bash original wrote ANTHROPIC_AUTH_TOKEN beside _fmapi_meta; fmapi itself removes both
        # keys at setup, so one found later without _fmapi_meta is the user's own and stays.
        legacy = "_fmapi_meta" in settings
        for key in ("apiKeyHelper", "_fmapi_meta") + CLAUDE_STALE_KEYS:
            if key not in settings:
                continue
            if key == "_fmapi_meta" or (key == "apiKeyHelper" and self._is_ours(key, settings[key], record)) \
                    or (key == "ANTHROPIC_AUTH_TOKEN" and legacy):
                del settings[key]
                changed = True
            else:
                report.kept.append("%s: %s (%s)" % (tilde(path), key, "you changed it" if key == "apiKeyHelper" else "not fmapi's"))
        if env is not None:
            for key in CLAUDE_ENV_KEYS + CLAUDE_STALE_KEYS:
                if key not in env:
                    continue
                if (key == "ANTHROPIC_AUTH_TOKEN" and legacy) or (key in CLAUDE_ENV_KEYS and self._is_ours(key, env[key], record)):
                    del env[key]
                    changed = True
                elif key in CLAUDE_STALE_KEYS:
                    report.kept.append("%s: env.%s (not fmapi's)" % (tilde(path), key))
                else:
                    report.kept.append("%s: env.%s = %r (you changed it)" % (tilde(path), key, env[key]))
        return changed

    def verify(self, record):
        path = record.get("settings") or self.settings_path(record)
        rerun = "Re-run fmapi setup to write them again."
        try:
            settings = load_json_object(path)
        except UnparsableFile:
            return [("%s is not valid JSON." % tilde(path), "Fix it, or run fmapi setup (it keeps your bytes aside).")]
        if not settings:
            return [("%s is missing or empty." % tilde(path), rerun)]
        problems = []
        helper = settings.get("apiKeyHelper")
        if helper != self.helper_command(record) and not (not record.get("written") and HELPER_NAME in str(helper)):
            problems.append(("apiKeyHelper in %s is %s, not fmapi's helper." % (tilde(path), json.dumps(helper)), rerun))
        env = settings.get("env") if isinstance(settings.get("env"), dict) else {}
        expected = dict(record.get("written") or {})
        expected.pop("apiKeyHelper", None)
        for key, value in sorted(expected.items()):
            if env.get(key) != value:
                problems.append(("env.%s in %s is %s, fmapi wrote %s." % (key, tilde(path), json.dumps(env.get(key)), json.dumps(value)), rerun))
        for key in CLAUDE_STALE_KEYS:
            if env.get(key) or settings.get(key):
                problems.append(("%s in %s beats fmapi's helper." % (key, tilde(path)), "Remove it (fmapi setup does)."))
        return problems

    def finish_message(self, record):
        text = "Done. Run `claude` (settings: %s)." % tilde(self.settings_path(record))
        if record.get("git"):
            text += ("\nIn this git work tree fmapi wrote your personal %s (not the team's settings.json), keeps the "
                     "token cache in %s, and lists its files in %s, so `git status` shows nothing new."
                     % (CLAUDE_LOCAL_SETTINGS, tilde(self.cache_dir(record)), tilde(record["git"]["exclude"])))
        if record.get("config_env"):
            text += ("\nClaude Code finds this setup while CLAUDE_CONFIG_DIR=%s is set; `fmapi` itself finds it "
                     "without." % tilde(record["dir"]))
        return text


register(Claude())


# --------------------------------------------------------------------------------------
# 10. OpenAI Codex
#
# config.toml in $CODEX_HOME gets one provider table with command-backed auth (Codex runs
# the helper directly, no shell, trims its stdout, re-runs it every refresh_interval_ms and
# on HTTP 401) and the two top-level keys that select it. fmapi edits the TOML line by
# line with the small scanner below: only its own tables and those two keys change, every
# other byte of the user's file stays as it was, and uninstall puts the old lines back.
# --------------------------------------------------------------------------------------

CODEX_PROVIDER_ID = "databricks-fmapi"  # fmapi's namespace under [model_providers]
CODEX_PROVIDER_NAME = "Databricks FMAPI"
CODEX_BASE_PATH = "/serving-endpoints"  # Codex appends /responses and /models to <host> + this
CODEX_AUTH_TIMEOUT_MS = 30000  # a renewal may run `databricks auth token` and two REST calls
CODEX_MIN_VERSION = (0, 118, 0)  # model_providers.<id>.auth arrived in 0.118.0 (openai/codex#16288)
CODEX_NO_PROFILES_VERSION = "0.134"  # the first Codex that refuses `profile = …` and [profiles.*]
CODEX_CONFIG_NAME = "config.toml"
CODEX_MARKER = "# Databricks FMAPI, written by fmapi: re-run fmapi to change it, `fmapi --uninstall` to remove it."
CODEX_TABLES = ("model_providers", CODEX_PROVIDER_ID)
CODEX_TOP_KEYS = ("model_provider", "model")


class TomlSyntaxError(ValueError):
    pass


_TOML_BARE_KEY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_TOML_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b", '"': '"', "\\": "\\"}


def _tomllib():
    """The standard library's TOML reader (Python 3.11+), or None."""
    try:
        import tomllib
    except ImportError:
        return None
    return tomllib


def toml_check(text):
    """The parsed document when tomllib is available (else None); TomlSyntaxError when invalid."""
    try:
        toml_statements(text)  # fmapi's own reading must succeed too: it is what the edits rely on
        reader = _tomllib()
        if reader is None:
            return None
        try:
            return reader.loads(text)
        except reader.TOMLDecodeError as exc:
            raise TomlSyntaxError(str(exc)) from None
    except (RecursionError, MemoryError):
        raise TomlSyntaxError("it is nested too deeply to read") from None


def toml_quote(text):
    """``text`` as a TOML basic string."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_unquote(raw):
    """The value of a single-line TOML string as written in the file (other values as they are)."""
    import re

    if raw[:3] in ('"""', "'''"):
        return raw
    if raw[:1] == "'":
        return raw[1:-1]
    if raw[:1] != '"':
        return raw

    def escape(match):
        code = match.group(1)
        if code[0] in "uUx":
            return chr(int(code[1:], 16))
        return _TOML_ESCAPES.get(code, code)

    return re.sub(r'\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|x[0-9A-Fa-f]{2}|.)', escape, raw[1:-1])


class _TomlScanner:
    """Finds where each TOML statement starts and ends, which is all fmapi's edits need.

    A statement is a table header or a key/value pair; a value may span lines (multi-line
    strings, arrays, inline tables), and comments may follow anything. Each statement is a
    dict: ``kind`` ("table", "array" or "keyval"), ``path`` (the key parts), ``table`` (the
    table a key/value belongs to), ``start``/``end`` (its physical lines, end exclusive) and,
    for key/values, ``value`` (its text).
    """

    def __init__(self, text):
        import re

        self.text = text
        self.n = len(text)
        self.pos = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.scalar = re.compile(r"\d{4}-\d\d-\d\d[ ]\d\d:[0-9:.Zz+-]*|[A-Za-z0-9_+.:-]+")

    def line_of(self, pos):
        import bisect

        return bisect.bisect_left(self.newlines, pos)

    def fail(self, message):
        raise TomlSyntaxError("line %d: %s" % (self.line_of(min(self.pos, self.n)) + 1, message))

    def peek(self, size=1):
        return self.text[self.pos:self.pos + size]

    def skip_blanks(self):
        while self.pos < self.n and self.text[self.pos] in " \t":
            self.pos += 1

    def skip_comment(self):
        end = self.text.find("\n", self.pos)
        self.pos = self.n if end < 0 else end

    def skip_space(self):
        """Blanks, newlines and comments (between statements, inside arrays)."""
        while self.pos < self.n:
            char = self.text[self.pos]
            if char in " \t\n":
                self.pos += 1
            elif char == "\r" and self.peek(2) == "\r\n":
                self.pos += 2
            elif char == "#":
                self.skip_comment()
            else:
                break

    def end_of_line(self):
        self.skip_blanks()
        if self.peek() == "#":
            self.skip_comment()
        if self.peek(2) == "\r\n":
            self.pos += 2
        elif self.peek() == "\n":
            self.pos += 1
        elif self.pos < self.n:
            self.fail("unexpected %r after a statement" % self.text[self.pos])

    def basic_string(self):
        start = self.pos
        self.pos += 1
        while True:
            if self.pos >= self.n or self.text[self.pos] == "\n":
                self.fail("unterminated string")
            char = self.text[self.pos]
            self.pos += 2 if char == "\\" else 1
            if char == '"':
                return self.text[start:self.pos]

    def literal_string(self):
        start = self.pos
        end = self.text.find("'", self.pos + 1)
        newline = self.text.find("\n", self.pos + 1)
        if end < 0 or 0 <= newline < end:
            self.fail("unterminated string")
        self.pos = end + 1
        return self.text[start:self.pos]

    def multiline_string(self, quote):
        start = self.pos
        self.pos += 3
        while True:
            if self.pos >= self.n:
                self.pos = start
                self.fail("unterminated multi-line string")
            char = self.text[self.pos]
            if char == "\\" and quote == '"':
                self.pos += 2
                continue
            if self.text.startswith(quote * 3, self.pos):
                self.pos += 3
                for _ in range(2):  # up to two quotes may end the content: """a""""
                    if self.peek() == quote:
                        self.pos += 1
                return self.text[start:self.pos]
            self.pos += 1

    def key(self):
        parts = []
        while True:
            self.skip_blanks()
            char = self.peek()
            if char == '"':
                parts.append(toml_unquote(self.basic_string()))
            elif char == "'":
                parts.append(self.literal_string()[1:-1])
            else:
                start = self.pos
                while self.pos < self.n and self.text[self.pos] in _TOML_BARE_KEY:
                    self.pos += 1
                if start == self.pos:
                    self.fail("a key was expected")
                parts.append(self.text[start:self.pos])
            self.skip_blanks()
            if self.peek() != ".":
                return tuple(parts)
            self.pos += 1

    def value(self, depth=0):
        if depth > 200:
            self.fail("values nested too deeply")
        start = self.pos
        char = self.peek()
        if self.text.startswith('"""', self.pos) or self.text.startswith("'''", self.pos):
            self.multiline_string(char)
        elif char == '"':
            self.basic_string()
        elif char == "'":
            self.literal_string()
        elif char == "[":
            self.pos += 1
            while True:
                self.skip_space()
                if self.peek() == "]":
                    self.pos += 1
                    break
                self.value(depth + 1)
                self.skip_space()
                if self.peek() == ",":
                    self.pos += 1
                elif self.peek() == "]":
                    self.pos += 1
                    break
                else:
                    self.fail("',' or ']' expected in an array")
        elif char == "{":
            self.pos += 1
            self.skip_space()
            if self.peek() == "}":
                self.pos += 1
            else:
                while True:
                    self.skip_space()
                    self.key()
                    if self.peek() != "=":
                        self.fail("'=' expected in an inline table")
                    self.pos += 1
                    self.skip_blanks()
                    self.value(depth + 1)
                    self.skip_space()
                    if self.peek() == ",":
                        self.pos += 1
                    elif self.peek() == "}":
                        self.pos += 1
                        break
                    else:
                        self.fail("',' or '}' expected in an inline table")
        else:
            match = self.scalar.match(self.text, self.pos)
            if not match:
                self.fail("a value was expected")
            self.pos = match.end()
        return self.text[start:self.pos]

    def statements(self):
        found = []
        table = ()
        while True:
            self.skip_space()
            if self.pos >= self.n:
                return found
            start = self.pos
            if self.peek() == "[":
                array = self.peek(2) == "[["
                self.pos += 2 if array else 1
                path = self.key()
                close = "]]" if array else "]"
                if not self.text.startswith(close, self.pos):
                    self.fail("'%s' expected to close a table header" % close)
                self.pos += len(close)
                self.end_of_line()
                table = path
                statement = {"kind": "array" if array else "table", "path": path, "table": ()}
            else:
                path = self.key()
                if self.peek() != "=":
                    self.fail("'=' expected after the key %s" % ".".join(path))
                self.pos += 1
                self.skip_blanks()
                value = self.value()
                self.end_of_line()
                statement = {"kind": "keyval", "path": path, "table": table, "value": value}
            statement["start"] = self.line_of(start)
            statement["end"] = self.line_of(self.pos - 1) + 1
            found.append(statement)


def toml_statements(text):
    """Every statement of a TOML document (see _TomlScanner); TomlSyntaxError when it cannot tell."""
    return _TomlScanner(text).statements()


def toml_lines(text):
    """The physical lines of ``text``, each with its line ending (the last one may have none)."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _line_ending(text):
    for ending in ("\r\n", "\n"):
        if text.endswith(ending):
            return ending
    return ""


def _newline_of(text):
    """The file's line ending: that of its first line."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def toml_top_statement(text, key):
    """The top-level statement ``key = …`` (before the first table), or None."""
    for statement in toml_statements(text):
        if statement["kind"] != "keyval":
            return None
        if statement["path"] == (key,):
            return statement
    return None


def toml_statement_text(text, statement):
    """The statement's lines without the final line ending."""
    chunk = "".join(toml_lines(text)[statement["start"]:statement["end"]])
    return chunk[:len(chunk) - len(_line_ending(chunk))]


def toml_set_top(text, key, line, before=None, after=None):
    """Put ``line`` in place of the top-level ``key`` statement, or add it: right before the
    top-level key ``before`` or after ``after`` when that is set, else after the last one.

    Returns (new text, the replaced statement's text or None when ``key`` was not set).
    """
    lines = toml_lines(text)
    statement = toml_top_statement(text, key)
    if statement is not None:
        old = "".join(lines[statement["start"]:statement["end"]])
        ending = _line_ending(old)
        lines[statement["start"]:statement["end"]] = [line + ending]
        return "".join(lines), old[:len(old) - len(ending)]
    position = 0
    for other in toml_statements(text):
        if other["kind"] != "keyval":
            break
        position = other["end"]
        if other["path"] == (before,):
            position = other["start"]
            break
        if other["path"] == (after,):
            break
    newline = _newline_of(text)
    if position and not _line_ending(lines[position - 1]):
        lines[position - 1] += newline
    lines.insert(position, line + newline)
    return "".join(lines), None


def toml_restore_top(text, key, original):
    """Put the top-level ``key`` statement back to ``original`` (None: remove it)."""
    statement = toml_top_statement(text, key)
    if statement is None:
        return text
    lines = toml_lines(text)
    ending = _line_ending("".join(lines[statement["start"]:statement["end"]]))
    lines[statement["start"]:statement["end"]] = [] if original is None else [original + ending]
    return "".join(lines)


def toml_table_ranges(text, prefix):
    """[start, end) line ranges of the tables named ``prefix`` or under it: from the header to
    its last key/value (comments and blank lines after that belong to what follows)."""
    statements = toml_statements(text)
    return [[statement["start"], _table_end(statements, index)] for index, statement in enumerate(statements)
            if statement["kind"] != "keyval" and statement["path"][:len(prefix)] == prefix]


def _table_end(statements, index):
    """The line after the last key/value of the table whose header is ``statements[index]``."""
    end = statements[index]["end"]
    for other in statements[index + 1:]:
        if other["kind"] != "keyval":
            break
        end = other["end"]
    return end


def toml_remove_tables(text, prefix, marker=None):
    """Cut the tables under ``prefix`` (and ``marker``, the comment line right above them).

    Returns (new text, the line where the first one was or None, whether they ended the file).
    Blank lines between two of them go too; anything else between them stays.
    """
    ranges = toml_table_ranges(text, prefix)
    if not ranges:
        return text, None, False
    lines = toml_lines(text)
    merged = [ranges[0]]
    for start, end in ranges[1:]:
        if all(not lines[k].strip() for k in range(merged[-1][1], start)):
            merged[-1][1] = end
        else:
            merged.append([start, end])
    first = merged[0]
    if marker and first[0] > 0 and lines[first[0] - 1].strip() == marker:
        first[0] -= 1
    at_end = merged[-1][1] == len(lines)
    drop = set()
    for start, end in merged:
        drop.update(range(start, end))
    kept = [line for number, line in enumerate(lines) if number not in drop]
    return "".join(kept), first[0], at_end


def _line_span(ranges):
    """'line 3' / 'lines 3-5, 9' for 0-based [start, end) ranges."""
    parts = []
    for start, end in ranges:
        parts.append("%d" % (start + 1) if end - start <= 1 else "%d-%d" % (start + 1, end))
    return ("line " if len(parts) == 1 and "-" not in parts[0] else "lines ") + ", ".join(parts)


class Codex(Agent):
    name = "codex"
    title = "OpenAI Codex"
    headless = 'codex exec --skip-git-repo-check "your task" (the flag is needed outside a git repository)'
    command = "codex"
    npm_package = "@openai/codex"
    pat_comment = "Codex FMAPI"
    default_model = "databricks-gpt-5-2"
    family = "gpt"
    apis = ("responses",)
    min_version = CODEX_MIN_VERSION
    config_env = "CODEX_HOME"

    def install_dir(self, location=None):
        """$CODEX_HOME, else ~/.codex: Codex reads providers from the user file only."""
        return os.path.abspath(os.path.expanduser(os.environ.get("CODEX_HOME") or os.path.join("~", ".codex")))

    def config_path(self, record):
        return record.get("config") or os.path.join(record["dir"], CODEX_CONFIG_NAME)

    def models_in_file(self, previous):
        if not previous.get("dir"):
            return {}
        try:
            text, _ = self._read(self.config_path(previous))
            provider = toml_top_statement(text or "", "model_provider")
            model = toml_top_statement(text or "", "model")
        except (UnparsableFile, TomlSyntaxError, OSError):
            return {}
        if provider is None or model is None or toml_unquote(provider["value"]) != CODEX_PROVIDER_ID:
            return {}
        value = toml_unquote(model["value"]).strip()
        return {"model": value} if value else {}

    # -- reading and checking the user's file

    def _read(self, path):
        """(config.toml's text or None when it does not exist, its TextStyle); UnparsableFile when
        it is not TOML. A byte-order mark is accepted, as Codex does, and written back."""
        text, style = read_text(os.path.realpath(path), name=path)
        if text is None:
            return None, style
        try:
            toml_check(text)
        except TomlSyntaxError as exc:
            raise UnparsableFile(path, str(exc)) from None
        return text, style

    def _refuse_legacy_profiles(self, path, text):
        """Stop, saying what to change, when the file has what Codex 0.134+ refuses to load."""
        statements = toml_statements(text)
        home = tilde(os.path.dirname(os.path.abspath(path)))
        steps, profiles = [], {}
        for index, statement in enumerate(statements):
            if statement["kind"] == "keyval" and not statement["table"] and statement["path"] == ("profile",):
                name = toml_unquote(statement["value"])
                steps.append("%s: delete `%s` and start Codex with `codex --profile %s` when you want that profile"
                             % (_line_span([(statement["start"], statement["end"])]), toml_statement_text(text, statement), name))
                continue
            full = statement["path"] if statement["kind"] != "keyval" else statement["table"] + statement["path"]
            if full[:1] != ("profiles",):
                continue
            if statement["kind"] == "keyval" and statement["table"][:1] == ("profiles",) and len(statement["table"]) > 1:
                continue  # inside a [profiles.NAME…] table: counted with its header
            span = (statement["start"], statement["end"])
            if statement["kind"] != "keyval":
                span = (statement["start"], _table_end(statements, index))
            profiles.setdefault(full[1] if len(full) > 1 else None, []).append(span)
        for name, spans in profiles.items():
            if name is None:
                steps.append("%s: move each profile defined there into %s/NAME.config.toml (one file per profile, "
                             "its settings at the top level) and delete these lines" % (_line_span(spans), home))
            else:
                steps.append("%s: move the settings of profile '%s' into %s/%s.config.toml, at the top level "
                             "(drop the `profiles.%s` prefix from the table names), delete these lines, and start "
                             "it with `codex --profile %s`" % (_line_span(spans), name, home, name, name, name))
        if steps:
            raise FmapiError(
                "%s uses legacy Codex profiles, which Codex %s and newer refuse to load; fmapi changed nothing."
                % (tilde(path), CODEX_NO_PROFILES_VERSION),
                fix="Change %s first, then run fmapi again:\n%s" % (tilde(path), "\n".join("    - " + s for s in steps)),
            )

    def _refuse_foreign_provider(self, path, text):
        """fmapi's provider written in a form it does not edit (dotted keys, inline tables)."""
        statements = toml_statements(text)
        for statement in statements:
            if statement["kind"] != "keyval":
                continue
            full = statement["table"] + statement["path"]
            ours = statement["table"][:2] == CODEX_TABLES
            if full[:2] == CODEX_TABLES and not ours:
                what = "defines model_providers.%s as `%s`" % (CODEX_PROVIDER_ID, toml_statement_text(text, statement).strip())
            elif full == ("model_providers",):
                what = "sets model_providers as an inline table, to which fmapi cannot add its provider"
            else:
                continue
            raise FmapiError(
                "%s %s (%s); fmapi changed nothing." % (tilde(path), what, _line_span([(statement["start"], statement["end"])])),
                fix="Write each provider as its own [model_providers.NAME] table (fmapi writes [model_providers.%s] "
                    "itself), then run fmapi again." % CODEX_PROVIDER_ID,
            )

    def check(self, record):
        path = self.config_path(record)
        check_link_target(path)
        text, _ = self._read(path)
        if text is not None:
            self._refuse_legacy_profiles(path, text)
            self._refuse_foreign_provider(path, text)
        self.check_writable([path], [record["dir"], self.cache_dir(record)],
                            "Point CODEX_HOME at a directory you can write, or add fmapi's [model_providers.%s] "
                            "provider (README, OpenAI Codex) to the config manager that owns the file." % CODEX_PROVIDER_ID)

    # -- writing

    def provider_block(self, record, newline="\n"):
        """fmapi's part of config.toml: the provider table and its auth table."""
        header, value = CODING_AGENT_HEADER
        lines = [
            CODEX_MARKER,
            "[model_providers.%s]" % CODEX_PROVIDER_ID,
            "name = %s" % toml_quote(CODEX_PROVIDER_NAME),
            "base_url = %s" % toml_quote(record["host"] + CODEX_BASE_PATH),
            'wire_api = "responses"',
            "http_headers = { %s = %s }" % (toml_quote(header), toml_quote(value)),
            "",
            "[model_providers.%s.auth]" % CODEX_PROVIDER_ID,
            "command = %s" % toml_quote(self.helper_path(record)),
            "timeout_ms = %d" % CODEX_AUTH_TIMEOUT_MS,
            "refresh_interval_ms = %d" % (self.ttl(credential_lifetime(record)) * 1000),
        ]
        return newline.join(lines) + newline

    def merge(self, text, record, previous=None):
        """config.toml with fmapi's provider selected: (new text, what uninstall needs to undo it).

        ``text`` is the current file (None when missing). fmapi's tables are replaced where
        they are, else appended; ``model_provider`` and ``model`` are replaced in place, else
        added after the last top-level key. The user's own lines for those two keys are kept
        in the record, never overwritten by fmapi's values on a re-run.
        """
        original = text or ""
        newline = _newline_of(original)
        previous = previous if previous and isinstance(previous.get("top"), dict) else None
        provider = toml_top_statement(original, "model_provider")
        active = provider is not None and toml_unquote(provider["value"]) == CODEX_PROVIDER_ID

        block = self.provider_block(record, newline)
        rest, where, _ = toml_remove_tables(original, CODEX_TABLES, CODEX_MARKER)
        if where is None:
            if not rest:
                separator = newline
            elif rest.endswith(newline * 2):
                separator = ""
            elif rest.endswith(newline):
                separator = newline
            else:
                separator = newline * 2  # the file did not end with a newline
            merged = rest + separator + block
            created = text is None
        else:
            lines = toml_lines(rest)
            lines.insert(where, block)
            merged = "".join(lines)
            separator = previous.get("separator") if previous else None
            created = bool(previous and previous.get("created"))

        top = {}
        for key, value, beside in (("model_provider", CODEX_PROVIDER_ID, {"before": "model"}),
                                   ("model", record["model"], {"after": "model_provider"})):
            written = "%s = %s" % (key, toml_quote(value))
            merged, replaced = toml_set_top(merged, key, written, **beside)
            if active and previous and key in previous["top"]:
                replaced = previous["top"][key].get("original")
            elif active:
                replaced = None  # fmapi's own line from an install the registry forgot
            top[key] = {"original": replaced, "written": written}
        return merged, {"top": top, "separator": separator, "created": created}

    def _validate(self, path, merged, record):
        """The merged file must parse and select fmapi's provider, or nothing is written."""
        reason = "the result would not select fmapi's provider"
        try:
            data = toml_check(merged)
        except TomlSyntaxError as exc:
            data, ok, reason = None, False, "the result would not be valid TOML: %s" % exc
        else:
            selected = toml_top_statement(merged, "model_provider")
            ok = selected is not None and toml_unquote(selected["value"]) == CODEX_PROVIDER_ID
        if ok and data is not None:
            provider = (data.get("model_providers") or {}).get(CODEX_PROVIDER_ID) or {}
            ok = (data.get("model_provider") == CODEX_PROVIDER_ID and data.get("model") == record["model"]
                  and provider.get("base_url") == record["host"] + CODEX_BASE_PATH
                  and (provider.get("auth") or {}).get("command") == self.helper_path(record))
        if not ok:
            raise FmapiError("fmapi could not merge its provider into %s (%s); the file is untouched." % (tilde(path), reason),
                             fix="Move the file aside and run fmapi again, or report this at %s/issues" % HOMEPAGE)

    def configure(self, record, previous):
        path = self.config_path(record)
        text, style = self._read(path)
        if text is not None:
            self._refuse_legacy_profiles(path, text)
            self._refuse_foreign_provider(path, text)
        if (previous or {}).get("model") and record["model"] != previous["model"] \
                and self.models_in_file(previous).get("model") == record["model"]:
            say("  kept the model you set in %s since the last setup: %s (--model chooses another)."
                % (tilde(path), record["model"]))
        merged, undo = self.merge(text, record, previous)
        self._validate(path, merged, record)
        write_helper(self.helper_path(record), self.token_spec(record), self.title)
        if merged != text:
            write_in_place(path, style.encode(merged))  # a dotfile manager's symlink stays a symlink
        return dict(record, settings=path, config=path, **undo)

    # -- finding and removing

    def discover(self):
        directory = self.install_dir()
        path = os.path.join(directory, CODEX_CONFIG_NAME)
        has_files = any(os.path.exists(os.path.join(directory, n)) for n in (HELPER_NAME, CACHE_NAME))
        raw = read_bytes(path)
        ours = False
        if raw is not None:
            try:
                ours = bool(toml_table_ranges(read_text(path)[0], CODEX_TABLES))
            except (UnparsableFile, TomlSyntaxError):
                ours = ("[model_providers.%s" % CODEX_PROVIDER_ID).encode() in raw
        if not (has_files or ours):
            return []
        record = {"agent": self.name, "dir": directory, "settings": path, "config": path}
        spec = spec_from_helper(os.path.join(directory, HELPER_NAME))
        if spec and spec.agent == self.name:
            record.update(host=spec.host, profile=spec.profile, lifetime_days=spec.lifetime_days, cli=spec.cli,
                          auth=spec.auth, config_file=spec.config_file)
        return [record]

    def unmerge(self, text, record, report=None, shown_path="config.toml"):
        """``text`` without fmapi's part: the user's old lines back, their later changes kept."""
        top = record.get("top") if isinstance(record.get("top"), dict) else None
        provider = toml_top_statement(text, "model_provider")
        active = provider is not None and toml_unquote(provider["value"]) == CODEX_PROVIDER_ID
        for key in reversed(CODEX_TOP_KEYS):
            statement = toml_top_statement(text, key)
            if statement is None:
                continue
            current = toml_statement_text(text, statement)
            entry = (top or {}).get(key)
            if entry:
                if current == entry.get("written"):
                    text = toml_restore_top(text, key, entry.get("original"))
                elif report is not None:
                    report.kept.append("%s: `%s` (you changed it after fmapi set it)" % (shown_path, current))
            elif top is None and active:  # the registry forgot this install: remove what is clearly fmapi's
                value = toml_unquote(statement["value"])
                if value == CODEX_PROVIDER_ID or (key == "model" and value.startswith("databricks-")):
                    text = toml_restore_top(text, key, None)
        rest, where, at_end = toml_remove_tables(text, CODEX_TABLES, CODEX_MARKER)
        if where is not None and at_end:
            separator = record.get("separator") if top is not None else None
            newline = _newline_of(rest)
            if separator is None:
                separator = newline if rest.endswith(newline * 2) else ""
            if rest.endswith(separator):
                rest = rest[:len(rest) - len(separator)]
        return rest

    def unconfigure(self, record, report):
        """config.toml first; the helper goes only once config.toml no longer names it (else False)."""
        directory = record["dir"]
        path = self.config_path(record)
        problem = self._clean_config(record, path, report)
        if problem:
            report.failed.append("%s %s; fmapi kept %s so Codex still starts. Remove the [model_providers.%s] tables "
                                 "and the model_provider and model lines by hand (or fix the file), then run "
                                 "fmapi --uninstall again." % (tilde(path), problem, tilde(self.helper_path(record)),
                                                                CODEX_PROVIDER_ID))
            return False
        for name in (HELPER_NAME,) + TOKEN_FILES:
            if remove_file(os.path.join(directory, name)):
                report.removed.append(tilde(os.path.join(directory, name)))
        for leftover in leftover_temp_files(directory, (HELPER_NAME, CACHE_NAME, CODEX_CONFIG_NAME)):
            remove_file(leftover)
            report.removed.append(tilde(leftover))
        try:
            os.rmdir(directory)  # only when nothing else is left in it
        except OSError:
            pass
        return True

    def _clean_config(self, record, path, report):
        """Take fmapi's part out of config.toml; None when done, else why not (the file untouched)."""
        real = os.path.realpath(path)
        try:
            text, style = self._read(real)
        except UnparsableFile as exc:
            return "is not valid TOML (%s)" % exc.reason
        if text is None:
            return None
        restored = self.unmerge(text, record, report, tilde(path))
        if restored == text:
            return None
        try:
            if not restored and (record.get("created") or not isinstance(record.get("top"), dict)):
                remove_file(real)
                report.removed.append(tilde(path) + " (fmapi created it)")
            else:
                write_in_place(real, style.encode(restored))
                report.removed.append("fmapi's provider and model settings from %s" % tilde(path))
        except OSError as exc:
            return "could not be written (%s)" % (exc.strerror or exc)
        return None

    def verify(self, record):
        path = self.config_path(record)
        rerun = "Re-run fmapi setup --agent codex to write them again."
        try:
            text = self._read(path)[0]
        except UnparsableFile as exc:
            return [(exc.message, exc.fix)]
        if text is None:
            return [("%s is missing." % tilde(path), rerun)]
        problems = []
        for key, want in (("model_provider", CODEX_PROVIDER_ID), ("model", record.get("model"))):
            found = toml_top_statement(text, key)
            value = toml_unquote(found["value"]) if found else None
            if want and value != want:
                problems.append(("%s in %s is %s, fmapi wrote %s." % (key, tilde(path), json.dumps(value), json.dumps(want)), rerun))
        if "[model_providers.%s]" % CODEX_PROVIDER_ID not in text or self.helper_path(record) not in text:
            problems.append(("%s has no [model_providers.%s] table running fmapi's helper." % (tilde(path), CODEX_PROVIDER_ID), rerun))
        return problems

    def finish_message(self, record):
        text = ("Done. OpenAI Codex now talks to %s (model %s, provider %s in %s).\n"
                "Run `codex` for an interactive session, or `codex exec \"...\"` for a single task."
                % (record["host"], record["model"], CODEX_PROVIDER_ID, tilde(self.config_path(record))))
        if os.environ.get("CODEX_HOME"):
            text += "\nCodex finds this setup while CODEX_HOME=%s is set, as it is now." % tilde(record["dir"])
        return text


register(Codex())


# --------------------------------------------------------------------------------------
# 11. Gemini CLI
# --------------------------------------------------------------------------------------

# Gemini CLI reads its key once, at start, and has no helper hook. So `fmapi gemini`
# is the launcher. PAT mode: it makes sure the install's PAT outlives a working session,
# then replaces itself with `gemini` and the environment below. OAuth mode (1-hour
# tokens): gemini runs behind the relay (section 7b), with the relay's URL as its base
# URL and the relay's per-launch key as its key, and every request gets the OAuth token
# current at that moment. settings.json gets the two keys Gemini CLI needs besides that
# environment; `setup --write-env` also keeps the environment in ~/.gemini/.env, which
# every `fmapi gemini` refreshes, so that a bare `gemini` works until that token expires.
#
# GEMINI_CLI_HOME replaces the home directory, as in gemini-cli's paths.ts:
#   homedir() { const envHome = process.env["GEMINI_CLI_HOME"]; if (envHome) return envHome; ... }
#   Storage.getGlobalGeminiDir() -> path.join(homedir(), ".gemini")

GEMINI_BASE_PATH = "/serving-endpoints/gemini"  # the workspace's Gemini API (newer form: /ai-gateway/gemini)
GEMINI_AUTH_TYPE = "gemini-api-key"  # the auto-detected "gateway" mode never sends the key as a Bearer token
GEMINI_SESSION = 12 * 3600  # seconds: a launched session must be able to run this long on its token
GEMINI_MANAGED = ("security.auth.selectedType", "model.name")  # what fmapi sets in settings.json
GEMINI_CONTAINERS = ("security", "security.auth", "model")  # objects those keys live in
GEMINI_ENV_KEYS = ("GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY", "GEMINI_API_KEY_AUTH_MECHANISM",
                   "GEMINI_MODEL", "GEMINI_CLI_CUSTOM_HEADERS")
GEMINI_ENV_BEGIN = "# >>> fmapi: Gemini CLI >>>"
GEMINI_ENV_END = "# <<< fmapi: Gemini CLI <<<"


def gemini_env(base_url, token, model):
    """The environment `fmapi gemini` starts Gemini CLI with (and --write-env keeps in .env).

    ``base_url``: the workspace URL + GEMINI_BASE_PATH, or the relay's URL; ``token``: the
    PAT or OAuth token, or the relay's key.
    """
    return {
        "GOOGLE_GEMINI_BASE_URL": base_url,
        "GEMINI_API_KEY": token,
        "GEMINI_API_KEY_AUTH_MECHANISM": "bearer",
        "GEMINI_MODEL": model,
        "GEMINI_CLI_CUSTOM_HEADERS": "%s: %s" % CODING_AGENT_HEADER,
    }


def _json_get(data, dotted):
    """(True, value) when ``data`` holds the nested key ``a.b.c``, else (False, None)."""
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data.get(key) if isinstance(data, dict) else None
    if not isinstance(data, dict) or keys[-1] not in data:
        return False, None
    return True, data[keys[-1]]


def _json_set(data, dotted, value):
    """Set the nested key, creating objects on the way; returns the dotted names of those created."""
    keys = dotted.split(".")
    created = []
    for n, key in enumerate(keys[:-1]):
        if not isinstance(data.get(key), dict):
            data[key] = {}
            created.append(".".join(keys[:n + 1]))
        data = data[key]
    data[keys[-1]] = value
    return created


def _json_delete(data, dotted):
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data[key]
    del data[keys[-1]]


def _strip_env_block(text):
    """``text`` without fmapi's block of lines, and whether there was one."""
    kept, inside, found = [], False, False
    for line in text.splitlines(keepends=True):
        bare = line.strip()
        if not inside and bare == GEMINI_ENV_BEGIN:
            inside = found = True
            continue
        if inside:
            if bare == GEMINI_ENV_END:
                inside = False
                continue
            if not bare or bare.startswith("#") or bare.split("=", 1)[0].strip() in GEMINI_ENV_KEYS:
                continue
            inside = False  # a damaged block (no end line) ends at the first line that is not fmapi's
        kept.append(line)
    return "".join(kept), found


class Gemini(Agent):
    name = "gemini"
    title = "Gemini CLI"
    headless = 'fmapi gemini -p "your task" (answers once, then exits)'
    command = "gemini"
    npm_package = "@google/gemini-cli"
    pat_comment = "Gemini CLI FMAPI"
    default_model = "databricks-gemini-2-5-pro"
    family = "gemini"
    apis = ("gemini",)
    min_version = (0, 19, 0)  # GEMINI_API_KEY_AUTH_MECHANISM and GEMINI_CLI_CUSTOM_HEADERS
    revoke_replaced = False  # a running session keeps the token it started with: let it expire
    uses_helper = False  # `fmapi gemini` serves the token itself
    config_env = "GEMINI_CLI_HOME"

    def install_dir(self, location=None):
        """<GEMINI_CLI_HOME or ~>/.gemini: Gemini CLI's own user directory."""
        return os.path.join(os.path.abspath(os.environ.get("GEMINI_CLI_HOME") or os.path.expanduser("~")), ".gemini")

    def min_left(self, lifetime, margin=MIN_REMAINING):
        """A launch gets a token with a working session's worth of life (12 h, at most half the lifetime)."""
        return max(min(GEMINI_SESSION, int(lifetime) // 2), min(int(margin), int(lifetime) // 2))

    def token_spec(self, record):
        """OAuth mode: behind the relay each request gets the token current then, so a token
        needs only the safety margin (at most half its life), not a session's worth."""
        spec = super().token_spec(record)
        if spec.auth == "oauth":
            spec.min_left = min(int(record.get("min_remaining") or MIN_REMAINING), credential_lifetime(record) // 2)
        return spec

    def settings_path(self, record):
        return os.path.join(record["dir"], "settings.json")

    def env_path(self, record):
        return os.path.join(record["dir"], ".env")

    def load_settings(self, path, with_style=False):
        """settings.json as a dict (and its TextStyle when ``with_style``); refuses (touching
        nothing) what fmapi cannot edit faithfully, and what Gemini CLI itself cannot read."""
        try:
            settings, style = load_json_document(path)
        except UnparsableFile as exc:
            exc.fix = ("Gemini CLI allows comments there, fmapi cannot keep them: remove the comments "
                       "(or fix the file), then re-run fmapi.")
            raise
        if style.bom:  # gemini 0.61 stops with "Unexpected token" on it (QwenLM/qwen-code#11803)
            raise FmapiError("%s starts with a UTF-8 byte-order mark, which Gemini CLI cannot read "
                             "(it stops with \"Unexpected token\"); fmapi left the file untouched." % tilde(path),
                             fix="Save it as UTF-8 without a byte-order mark (your editor's encoding menu: "
                                 "\"UTF-8\", not \"UTF-8 with BOM\"), then re-run fmapi.")
        for dotted in GEMINI_CONTAINERS:
            present, value = _json_get(settings, dotted)
            if present and not isinstance(value, dict):
                raise FmapiError("%s: \"%s\" is %s, not an object; fmapi left the file untouched."
                                 % (tilde(path), dotted, json.dumps(value)),
                                 fix="Fix it (Gemini CLI expects an object there), then re-run fmapi.")
        return (settings, style) if with_style else settings

    def check(self, record):
        check_link_target(self.settings_path(record))
        if record.get("write_env"):
            check_link_target(self.env_path(record))
        self.load_settings(self.settings_path(record))
        files = [self.settings_path(record)] + ([self.env_path(record)] if record.get("write_env") else [])
        self.check_writable(files, [record["dir"], self.cache_dir(record)],
                            "Point GEMINI_CLI_HOME at a directory you can write, or set security.auth.selectedType "
                            "and model.name (README, Gemini CLI) in the config manager that owns the file.")

    def configure(self, record, previous):
        previous = previous or {}
        path = self.settings_path(record)
        real = os.path.realpath(path)  # a dotfile manager's symlink stays a symlink
        existed = os.path.exists(real)
        settings, style = self.load_settings(real, with_style=True)
        before = json.loads(json.dumps(settings))
        old_written, old_saved = previous.get("written") or {}, previous.get("saved") or {}
        written = {"security.auth.selectedType": GEMINI_AUTH_TYPE, "model.name": record["model"]}
        saved, created = {}, list(previous.get("created") or [])
        for dotted in GEMINI_MANAGED:
            present, value = _json_get(settings, dotted)
            if dotted in old_saved and present and value == old_written.get(dotted):
                saved[dotted] = old_saved[dotted]  # still fmapi's value: remember what was there before fmapi
            else:
                saved[dotted] = {"had": True, "value": value} if present else {"had": False}
            created += [c for c in _json_set(settings, dotted, written[dotted]) if c not in created]
        if settings != before or not existed:
            write_in_place(real, dump_json(settings, style))
        record = dict(record, settings=path, written=written, saved=saved, created=created,
                      settings_created=bool(previous.get("settings_created")) if previous.get("written") else not existed)
        if record.get("write_env"):
            if "env_saved" not in record:  # how the user's .env was, for uninstall
                env_real = check_link_target(self.env_path(record))
                raw = read_bytes(env_real)
                theirs = _strip_env_block(raw.decode("utf-8", "surrogateescape"))[0] if raw is not None else ""
                record["env_saved"] = {
                    "existed": raw is not None,
                    "mode": os.stat(env_real).st_mode & 0o777 if raw is not None else 0o600,
                    "newline_added": bool(theirs) and not theirs.endswith("\n"),
                }
            cache = read_cache(self.token_spec(record).cache_path) or {}
            self.write_env_file(record, cache["token"])
            for key in ("GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY"):
                if os.environ.get(key):
                    warn("%s is set in your environment; a bare `gemini` uses it instead of %s "
                         "(`fmapi gemini` is not affected)." % (key, tilde(self.env_path(record))))
        elif "env_saved" in record:  # --no-write-env on a re-run: take fmapi's lines out again
            report = Report()
            self._remove_env_block(record, report)
            for item in report.removed:
                say("  removed %s" % item)
            record = {k: v for k, v in record.items() if k != "env_saved"}
        return record

    def model_for_launch(self, record):
        """The model a launch asks for: settings.json's model.name (the user may have changed it), else setup's."""
        try:
            present, value = _json_get(load_json_object(self.settings_path(record)), "model.name")
        except UnparsableFile:
            present, value = False, None
        if present and isinstance(value, str) and value.strip():
            return value.strip()
        return record.get("model") or self.default_model

    def write_env_file(self, record, token):
        """Put fmapi's lines (current token) at the end of .env; the user's lines stay as they are."""
        path = check_link_target(self.env_path(record))  # a dotfile manager's link, never another user's file
        raw = read_bytes(path)
        text = raw.decode("utf-8", "surrogateescape") if raw is not None else ""
        rest, _ = _strip_env_block(text)
        if rest and not rest.endswith("\n"):
            rest += "\n"
        env = gemini_env(record["host"] + GEMINI_BASE_PATH, token, self.model_for_launch(record))
        block = [GEMINI_ENV_BEGIN,
                 "# Written by fmapi: `fmapi gemini` refreshes this token, `fmapi --uninstall` removes these lines."]
        block += ['%s="%s"' % (key, env[key]) for key in GEMINI_ENV_KEYS]
        block.append(GEMINI_ENV_END)
        data = (rest + "\n".join(block) + "\n").encode("utf-8", "surrogateescape")
        if data != raw or (os.stat(path).st_mode & 0o777) != 0o600:
            write_atomic(path, data, 0o600)

    def discover(self):
        record = self.record_from_disk(self.install_dir())
        return [record] if record else []

    def record_from_disk(self, directory):
        """A record for an install the registry lost: its cache (or .env block) is still there."""
        cache = read_cache(os.path.join(directory, CACHE_NAME))
        raw = read_bytes(os.path.join(directory, ".env"))
        has_block = raw is not None and _strip_env_block(raw.decode("utf-8", "surrogateescape"))[1]
        if not (cache or has_block or os.path.exists(os.path.join(directory, LOCK_NAME))):
            return None
        record = {"agent": self.name, "dir": directory, "settings": os.path.join(directory, "settings.json")}
        if has_block:
            record["write_env"] = True
        cache = cache or {}
        if isinstance(cache.get("host"), str) and isinstance(cache.get("profile"), str):
            days = DEFAULT_PAT_DAYS
            if isinstance(cache.get("expiry"), (int, float)) and isinstance(cache.get("created"), (int, float)):
                days = max(1, int(round((cache["expiry"] - cache["created"]) / 86400.0)))
            record.update(host=cache["host"], profile=cache["profile"], lifetime_days=days,
                          auth="oauth" if cache.get("auth") == "oauth" else "pat")
        return record

    def unconfigure(self, record, report):
        directory = record["dir"]
        for name in TOKEN_FILES:
            if remove_file(os.path.join(directory, name)):
                report.removed.append(tilde(os.path.join(directory, name)))
        for leftover in leftover_temp_files(directory, (CACHE_NAME, "settings.json", ".env")):
            remove_file(leftover)
            report.removed.append(tilde(leftover))
        self._restore_settings(record, report)
        self._remove_env_block(record, report)
        try:
            os.rmdir(directory)  # only when nothing else is in it
        except OSError:
            pass

    def _restore_settings(self, record, report):
        path = record.get("settings") or self.settings_path(record)
        real = os.path.realpath(path)
        if not os.path.exists(real):
            return
        try:
            settings, style = load_json_document(real)
        except UnparsableFile:
            report.failed.append("%s is not valid JSON; left untouched (remove %s by hand)"
                                 % (tilde(path), " and ".join(GEMINI_MANAGED)))
            return
        written, saved = record.get("written"), record.get("saved") or {}
        changed = False
        for dotted in GEMINI_MANAGED:
            present, value = _json_get(settings, dotted)
            if not present:
                continue
            if written and dotted in written:
                ours = value == written[dotted]
            else:  # the registry lost this install: recognise fmapi's values
                ours = value == GEMINI_AUTH_TYPE if dotted.endswith("selectedType") else str(value).startswith("databricks-")
            if not ours:
                report.kept.append("%s: %s = %s (you changed it)" % (tilde(path), dotted, json.dumps(value)))
                continue
            earlier = saved.get(dotted) or {"had": False}
            if earlier.get("had"):
                if value != earlier.get("value"):
                    _json_set(settings, dotted, earlier.get("value"))
                    changed = True
            else:
                _json_delete(settings, dotted)
                changed = True
        created = record.get("created") if written else list(GEMINI_CONTAINERS)
        for dotted in sorted(created or [], key=lambda d: -d.count(".")):
            present, value = _json_get(settings, dotted)
            if present and value == {}:
                _json_delete(settings, dotted)
                changed = True
        if not changed:
            return
        try:
            if not settings and record.get("settings_created", True):
                remove_file(real)
                report.removed.append(tilde(path) + " (nothing else was in it)")
            else:
                write_in_place(real, dump_json(settings, style))
                report.removed.append("fmapi's keys from %s (earlier values restored)" % tilde(path))
        except OSError as exc:  # a read-only link target: say what to do, and go on with the rest
            report.failed.append("%s could not be written (%s); remove %s from it by hand"
                                 % (tilde(path), exc.strerror or exc, " and ".join(GEMINI_MANAGED)))

    def _remove_env_block(self, record, report):
        path = self.env_path(record)
        try:
            real = check_link_target(path)
        except FmapiError as exc:
            report.failed.append(exc.message)
            return
        raw = read_bytes(real)
        if raw is None:
            return
        rest, found = _strip_env_block(raw.decode("utf-8", "surrogateescape"))
        if not found:
            return
        saved = record.get("env_saved") or {}
        if saved.get("newline_added") and rest.endswith("\n"):
            rest = rest[:-1]
        if not rest and not saved.get("existed"):
            remove_file(real)
            report.removed.append(tilde(path))
        else:
            write_atomic(real, rest.encode("utf-8", "surrogateescape"), saved.get("mode", 0o600))
            report.removed.append("fmapi's lines from %s" % tilde(path))

    def launch_record(self):
        """The install `fmapi gemini` serves: the registry's, else one found on disk."""
        try:
            return find_install(self)
        except FmapiError:
            record = self.record_from_disk(self.install_dir())
            if not record or not record.get("host"):
                raise
            return record

    def verify(self, record):
        path = self.settings_path(record)
        rerun = "Re-run fmapi setup --agent gemini to write them again."
        try:
            settings = self.load_settings(path)
        except FmapiError as exc:
            return [(exc.message, exc.fix)]
        problems = []
        for dotted, want in (("security.auth.selectedType", GEMINI_AUTH_TYPE), ("model.name", record.get("model"))):
            present, value = _json_get(settings, dotted)
            if want and value != want:
                problems.append(("%s in %s is %s, fmapi wrote %s." % (dotted, tilde(path), json.dumps(value), json.dumps(want)), rerun))
        return problems

    def finish_message(self, record):
        text = "Done. Run: fmapi gemini (it starts Gemini CLI with a fresh token; arguments go to gemini)."
        if record.get("auth") == "oauth":
            text = ("Done. Run: fmapi gemini (arguments go to gemini). Gemini CLI then talks to a relay on "
                    "127.0.0.1 that puts a fresh OAuth token on each request, so a session outlives the 1-hour token.")
        if record.get("write_env"):
            cache = read_cache(os.path.join(record["dir"], CACHE_NAME)) or {}
            text += ("\nA bare `gemini` also works until %s (the token in %s); every `fmapi gemini` renews it."
                     % (time.strftime("%Y-%m-%d %H:%M", time.localtime(cache.get("expiry", 0))), tilde(self.env_path(record))))
        return text


def run_gemini(argv):
    """`fmapi gemini ARGS...`; returns gemini's exit status (PAT mode: this process becomes gemini).

    PAT mode: a token that outlives the session, then exec `gemini ARGS...`. OAuth mode:
    the session is checked (signed in again on a terminal), then `gemini ARGS...` runs
    behind a Relay on 127.0.0.1 that forwards each request to the workspace's Gemini API
    with the OAuth token current then; the relay ends when gemini does.
    """
    agent = AGENTS["gemini"]
    record = agent.launch_record()
    refuse_root_on_foreign_home()
    path = launch_path(agent)
    spec = agent.token_spec(record)
    behind_relay = spec.auth == "oauth"
    token = launch_token(agent, spec, announce=not behind_relay)
    if record.get("write_env"):
        try:
            agent.write_env_file(record, token)
        except (OSError, FmapiError) as exc:
            warn("could not refresh %s: %s" % (tilde(agent.env_path(record)), getattr(exc, "message", exc)))
    env = dict(os.environ)
    model = agent.model_for_launch(record)
    if record.get("config_env") == agent.config_env and not os.environ.get(agent.config_env):
        env[agent.config_env] = os.path.dirname(record["dir"])  # gemini reads the install's settings
    relay = None
    if behind_relay:
        relay = Relay(record["host"] + GEMINI_BASE_PATH, relay_token_source(spec), headers=[CODING_AGENT_HEADER]).start()
        env.update(gemini_env(relay.url, relay.key, model))
    else:
        env.update(gemini_env(record["host"] + GEMINI_BASE_PATH, token, model))
    if os.environ.get("GEMINI_CLI_CUSTOM_HEADERS", "").strip():  # the user's (proxy) headers go too
        env["GEMINI_CLI_CUSTOM_HEADERS"] = merge_headers(os.environ["GEMINI_CLI_CUSTOM_HEADERS"], ", ")
    if relay is None:
        return exec_agent(agent, path, argv, env)
    return run_behind_relay(path, [agent.command] + list(argv), env, relay)


register(Gemini())


# --------------------------------------------------------------------------------------
# 12. Pi
#
# Pi (npm @earendil-works/pi-coding-agent, formerly @mariozechner/pi-coding-agent) reads
# custom providers from <agent dir>/models.json and runs an `apiKey` of the form
# "!command" through the shell before every request, without caching it (CHANGELOG
# 0.63.0, pi-mono#1835; resolve-config-value.js: execSync, 10 s timeout, stderr dropped).
# So the helper's cache hit runs per request, and a session never outlives its key.
# `authHeader: true` sends that key as Authorization: Bearer for every API kind, and each
# model names the API shape and base URL of its family (models.json fields: docs/
# models-configuration.md). settings.json's defaultProvider/defaultModel select it.
# models.json may hold // comments and trailing commas (Pi strips them): fmapi edits both
# files member by member, and uninstall puts back the values it replaced.
# --------------------------------------------------------------------------------------

PI_PROVIDER_ID = "databricks-fmapi"  # fmapi's namespace under "providers"
PI_PROVIDER_NAME = "Databricks FMAPI"
PI_MIN_VERSION = (0, 63, 0)  # models.json "!command" keys resolved on every request
PI_NODE_VERSION = (22, 19, 0)  # package.json engines of @earendil-works/pi-coding-agent 1.x


def model_route(host, model):
    """(API shape, base URL) for a serving endpoint name: Claude speaks Anthropic Messages,
    Gemini the Gemini API, GPT-5 and Codex models the Responses API (the workspace refuses
    chat completions for them), other models OpenAI chat completions."""
    name = model.lower()
    if "claude" in name:
        return "anthropic", host + ANTHROPIC_PATH
    if "gemini" in name:
        return "gemini", host + GEMINI_BASE_PATH
    if "gpt-5" in name or "codex" in name:
        return "responses", host + CODEX_BASE_PATH
    return "chat", host + CODEX_BASE_PATH


class Pi(Agent):
    name = "pi"
    title = "Pi"
    command = "pi"
    npm_package = "@earendil-works/pi-coding-agent"
    pat_comment = "Pi FMAPI"
    default_model = "databricks-claude-sonnet-4-6"
    family = ""  # Pi speaks every family's API
    apis = ("anthropic", "gemini", "responses", "chat")
    min_version = PI_MIN_VERSION
    node_version = PI_NODE_VERSION
    config_env = "PI_CODING_AGENT_DIR"

    API = {"anthropic": ("anthropic-messages", ""), "gemini": ("google-generative-ai", "/v1beta"),
           "responses": ("openai-responses", ""), "chat": ("openai-completions", "")}

    def ttl(self, lifetime):
        """Pi keeps no key: it runs the helper before every request."""
        return 0

    def install_dir(self, location=None):
        """$PI_CODING_AGENT_DIR (~ expanded, as Pi's config.js does), else ~/.pi/agent."""
        return os.path.abspath(os.path.expanduser(os.environ.get("PI_CODING_AGENT_DIR") or os.path.join("~", ".pi", "agent")))

    def models_path(self, record):
        return os.path.join(record["dir"], "models.json")

    def settings_path(self, record):
        return os.path.join(record["dir"], "settings.json")

    def provider(self, record):
        """fmapi's entry under providers in models.json."""
        import shlex

        models = []
        for model in [record["model"]]:
            kind, base = model_route(record["host"], model)
            api, suffix = self.API[kind]
            models.append({"id": model, "name": model, "api": api, "baseUrl": base + suffix})
        header, value = CODING_AGENT_HEADER
        return {
            "name": PI_PROVIDER_NAME,
            "baseUrl": models[0]["baseUrl"],
            "api": models[0]["api"],
            "apiKey": "!" + shlex.quote(self.helper_path(record)),
            "authHeader": True,
            "headers": {header: value},
            "models": models,
        }

    def check(self, record):
        for path, container in ((self.models_path(record), "providers"), (self.settings_path(record), None)):
            check_link_target(path)
            _, data = read_jsonc_file(path)
            if container and container in data and not isinstance(data[container], dict):
                raise FmapiError("%s: \"%s\" is %s, not an object; fmapi left the file untouched."
                                 % (tilde(path), container, json.dumps(data[container])),
                                 fix="Fix it (Pi expects an object there), then re-run fmapi.")

    def configure(self, record, previous):
        previous = previous or {}
        self.check(record)
        write_helper(self.helper_path(record), self.token_spec(record), self.title)
        models = apply_json_edits(self.models_path(record), [(("providers", PI_PROVIDER_ID), self.provider(record), True)],
                                  previous.get("models_undo"))
        settings = apply_json_edits(self.settings_path(record), [(("defaultProvider",), PI_PROVIDER_ID, False),
                                                                 (("defaultModel",), record["model"], False)],
                                    previous.get("settings_undo"))
        return dict(record, settings=self.models_path(record), models_undo=models, settings_undo=settings)

    def discover(self):
        directory = self.install_dir()
        has_files = any(os.path.exists(os.path.join(directory, n)) for n in (HELPER_NAME, CACHE_NAME))
        try:
            ours = PI_PROVIDER_ID in (read_jsonc_file(os.path.join(directory, "models.json"))[1].get("providers") or {})
        except (UnparsableFile, AttributeError, TypeError):
            ours = False
        if not (has_files or ours):
            return []
        record = {"agent": self.name, "dir": directory, "settings": os.path.join(directory, "models.json")}
        spec = spec_from_helper(os.path.join(directory, HELPER_NAME))
        if spec and spec.agent == self.name:
            record.update(host=spec.host, profile=spec.profile, lifetime_days=spec.lifetime_days, cli=spec.cli,
                          auth=spec.auth, config_file=spec.config_file)
        return [record]

    def unconfigure(self, record, report):
        """models.json first; the helper goes only once models.json no longer names it (else False)."""
        directory = record["dir"]
        models_undo, settings_undo = record.get("models_undo"), record.get("settings_undo")
        if not models_undo:  # an install the registry lost: fmapi's provider, and the defaults that select it
            models_undo = {"file": self.models_path(record), "created": True, "members": [
                {"path": ["providers", PI_PROVIDER_ID], "owned": True, "parents": [["providers"]]}]}
        if not settings_undo:
            try:
                settings = read_jsonc_file(self.settings_path(record))[1]
            except UnparsableFile:
                settings = {}
            members = [{"path": ["defaultProvider"], "written": PI_PROVIDER_ID}]
            if settings.get("defaultProvider") == PI_PROVIDER_ID:
                members.append({"path": ["defaultModel"], "written": settings.get("defaultModel")})
            settings_undo = {"file": self.settings_path(record), "created": True, "members": members}
        if not undo_json_edits(models_undo, report):
            report.kept.append("%s, so that Pi still starts: models.json names it" % tilde(self.helper_path(record)))
            return False
        undo_json_edits(settings_undo, report)
        for name in (HELPER_NAME,) + TOKEN_FILES:
            if remove_file(os.path.join(directory, name)):
                report.removed.append(tilde(os.path.join(directory, name)))
        for leftover in leftover_temp_files(directory, (HELPER_NAME, CACHE_NAME, "models.json", "settings.json")):
            remove_file(leftover)
            report.removed.append(tilde(leftover))
        try:
            os.rmdir(directory)  # only when nothing else is left in it
        except OSError:
            pass

    def finish_message(self, record):
        text = ("Done. Pi now talks to %s (model %s, provider %s in %s).\n"
                "Run `pi` for an interactive session, or `pi -p \"...\"` for a single task."
                % (record["host"], record["model"], PI_PROVIDER_ID, tilde(self.models_path(record))))
        if os.environ.get("PI_CODING_AGENT_DIR"):
            text += "\nPi finds this setup while PI_CODING_AGENT_DIR=%s is set, as it is now." % tilde(record["dir"])
        return text


register(Pi())


# --------------------------------------------------------------------------------------
# 13. GitHub Copilot CLI
#
# Copilot CLI (npm @github/copilot) takes a custom model provider ("BYOK") only from its
# environment (`copilot help providers`): COPILOT_PROVIDER_BASE_URL, _TYPE, _WIRE_API,
# _HEADERS, COPILOT_MODEL, and COPILOT_PROVIDER_API_KEY_COMMAND, a shell command that
# "prints a fresh API key for each provider request" (type openai sends it as
# Authorization: Bearer; type anthropic as x-api-key, which the workspace refuses, so
# every model goes through the OpenAI shapes). fmapi writes no file of Copilot's: it
# keeps its helper in $COPILOT_HOME (default ~/.copilot), and `fmapi copilot ARGS...`
# starts Copilot with that environment, the helper as the key command. The same
# variables in a shell profile make a bare `copilot` work (setup prints them).
# --------------------------------------------------------------------------------------

# No release note names the version that added COPILOT_PROVIDER_API_KEY_COMMAND (changelog.json
# of 1.0.102 mentions BYOK keys since 0.0.370, not the command): the oldest version verified is required.
COPILOT_MIN_VERSION = (1, 0, 102)
COPILOT_CLEARED = ("COPILOT_PROVIDER_API_KEY", "COPILOT_PROVIDER_BEARER_TOKEN",  # would beat or replace the command
                   "COPILOT_PROVIDER_MODEL_ID", "COPILOT_PROVIDER_WIRE_MODEL")  # would rename fmapi's model


class Copilot(Agent):
    name = "copilot"
    title = "GitHub Copilot CLI"
    command = "copilot"
    npm_package = "@github/copilot"
    pat_comment = "Copilot CLI FMAPI"
    default_model = "databricks-gpt-5-2"
    family = ""  # every family, through the OpenAI shapes
    apis = ("responses", "chat")
    min_version = COPILOT_MIN_VERSION
    config_env = "COPILOT_HOME"

    def ttl(self, lifetime):
        """Copilot keeps no key: it runs the command before every request."""
        return 0

    def install_dir(self, location=None):
        """$COPILOT_HOME (Copilot's configuration and state), else ~/.copilot."""
        return os.path.abspath(os.path.expanduser(os.environ.get("COPILOT_HOME") or os.path.join("~", ".copilot")))

    def env_for(self, record):
        """The environment `fmapi copilot` adds (no token in it: the helper is the key command)."""
        import shlex

        kind, _ = model_route(record["host"], record["model"])
        return {
            "COPILOT_PROVIDER_BASE_URL": record["host"] + CODEX_BASE_PATH,  # Responses or chat completions beneath
            "COPILOT_PROVIDER_TYPE": "openai",
            "COPILOT_PROVIDER_WIRE_API": "responses" if kind == "responses" else "completions",
            "COPILOT_PROVIDER_API_KEY_COMMAND": shlex.quote(self.helper_path(record)),
            "COPILOT_PROVIDER_HEADERS": "%s: %s" % CODING_AGENT_HEADER,
            "COPILOT_MODEL": record["model"],
        }

    def configure(self, record, previous):
        write_helper(self.helper_path(record), self.token_spec(record), self.title)
        for key in COPILOT_CLEARED:
            if os.environ.get(key):
                warn("%s is set in your environment: `fmapi copilot` leaves it out, a bare `copilot` would use it." % key)
        return dict(record, settings=self.helper_path(record))

    def discover(self):
        directory = self.install_dir()
        spec = spec_from_helper(os.path.join(directory, HELPER_NAME))
        if not (spec and spec.agent == self.name):
            return []
        return [{"agent": self.name, "dir": directory, "settings": os.path.join(directory, HELPER_NAME),
                 "host": spec.host, "profile": spec.profile, "lifetime_days": spec.lifetime_days, "cli": spec.cli,
                 "auth": spec.auth, "config_file": spec.config_file}]

    def unconfigure(self, record, report):
        directory = record["dir"]
        for name in (HELPER_NAME,) + TOKEN_FILES:
            if remove_file(os.path.join(directory, name)):
                report.removed.append(tilde(os.path.join(directory, name)))
        for leftover in leftover_temp_files(directory, (HELPER_NAME, CACHE_NAME)):
            remove_file(leftover)
            report.removed.append(tilde(leftover))
        try:
            os.rmdir(directory)  # only when Copilot never ran here
        except OSError:
            pass

    def finish_message(self, record):
        import shlex

        lines = ["Done. Run: fmapi copilot [ARGS...] (it starts Copilot CLI on %s, model %s; arguments go to copilot)."
                 % (record["host"], record["model"]),
                 "For a bare `copilot`, put these lines in your shell profile (no token in them; the helper runs per request):"]
        lines += ["  export %s=%s" % (key, shlex.quote(value)) for key, value in self.env_for(record).items()]
        return "\n".join(lines)


def run_copilot(argv):
    """`fmapi copilot ARGS...`: a live token now, then exec `copilot ARGS...` with the provider environment."""
    agent = AGENTS["copilot"]
    record = find_install(agent)
    path = launch_path(agent)
    launch_token(agent, agent.token_spec(record))  # signs in again on a terminal before Copilot starts
    env = {key: value for key, value in os.environ.items() if key not in COPILOT_CLEARED}
    env.update(agent.env_for(record))
    if record.get("config_env") == agent.config_env and not os.environ.get(agent.config_env):
        env[agent.config_env] = record["dir"]  # an install made with COPILOT_HOME set: Copilot reads that home
    # Copilot 1.0.102 also reads a provider registry (cli-main.js: $COPILOT_PROVIDERS_CONFIG, else
    # providers.json in its home); one there may be chosen over the environment.
    registry = os.environ.get("COPILOT_PROVIDERS_CONFIG", "").strip() or os.path.join(record["dir"], "providers.json")
    if os.path.exists(registry):
        warn("Copilot CLI also reads providers from %s and may use those instead of the Databricks provider "
             "fmapi sets; if Copilot does not answer from Databricks, move that file aside." % tilde(registry))
    exec_agent(agent, path, argv, env)


register(Copilot())


# --------------------------------------------------------------------------------------
# 14. OpenCode
#
# OpenCode (npm opencode-ai) merges its global config from $XDG_CONFIG_HOME/opencode
# (default ~/.config/opencode): config.json, then opencode.json, then opencode.jsonc, each
# JSON with comments; it updates the first of opencode.jsonc, opencode.json, config.json
# that exists (opencode.jsonc when none does), and so does fmapi. There fmapi adds one
# provider (the bundled AI SDK package of the model's family) and selects it with `model`
# and `small_model` (without small_model, title requests go to a model the workspace lacks).
# A provider's key is read once, so the key comes from a plugin instead: OpenCode loads
# every plugins/*.js of that directory, and the plugin's `chat.headers` hook, called before
# each model request (session/llm: plugin.trigger("chat.headers", {model, provider, ...},
# {headers})), runs fmapi's helper and sets the Authorization: Bearer header (and the key
# header of the Anthropic and Google SDKs) over the placeholder key in the config.
# --------------------------------------------------------------------------------------

OPENCODE_PROVIDER_ID = "databricks-fmapi"
OPENCODE_CONFIG_NAMES = ("opencode.jsonc", "opencode.json", "config.json")  # the one OpenCode itself updates
OPENCODE_PLUGIN = os.path.join("plugins", "fmapi-databricks.js")
OPENCODE_PLACEHOLDER_KEY = "set-by-the-fmapi-plugin"  # the SDKs need a key; the plugin replaces it per request
# The oldest version verified here: fmapi relies on plugins/*.js loading and the chat.headers hook,
# and no release note it could read names the version that brought both.
OPENCODE_MIN_VERSION = (1, 18, 33)
OPENCODE_SDK = {  # model family -> (bundled AI SDK package, base path under the workspace)
    "anthropic": ("@ai-sdk/anthropic", ANTHROPIC_PATH + "/v1"),
    "responses": ("@ai-sdk/openai", CODEX_BASE_PATH),
    "chat": ("@ai-sdk/openai-compatible", CODEX_BASE_PATH),
    "gemini": ("@ai-sdk/google", GEMINI_BASE_PATH + "/v1beta"),
}
OPENCODE_PLUGIN_TEXT = """\
// Databricks FMAPI for OpenCode, written by fmapi %(version)s. Do not edit: re-run fmapi to
// change it, `fmapi --uninstall` to remove it. Before each request to the %(provider)s
// provider it runs fmapi's helper and sends the token it prints (never stored here).
import { execFile } from "node:child_process"

const HELPER = %(helper)s
const PROVIDER = %(provider_json)s

function token() {
  return new Promise((resolve, reject) => {
    execFile(HELPER, [], { encoding: "utf8", timeout: 60000 }, (error, stdout, stderr) => {
      const key = (stdout || "").trim()
      if (error || !key) reject(new Error((stderr || "").trim() || "fmapi's token helper failed: " + error))
      else resolve(key)
    })
  })
}

export const FmapiDatabricks = async () => ({
  "chat.headers": async (input, output) => {
    if (!input.model || input.model.providerID !== PROVIDER) return
    const key = await token()
    output.headers["Authorization"] = "Bearer " + key
    const npm = input.model.api && input.model.api.npm
    if (npm === "@ai-sdk/anthropic") output.headers["x-api-key"] = key
    if (npm === "@ai-sdk/google") output.headers["x-goog-api-key"] = key
  },
})
"""


class OpenCode(Agent):
    name = "opencode"
    title = "OpenCode"
    command = "opencode"
    npm_package = "opencode-ai"
    pat_comment = "OpenCode FMAPI"
    default_model = "databricks-claude-sonnet-4-6"
    family = ""  # every family, each through its own SDK
    apis = ("anthropic", "gemini", "responses", "chat")
    min_version = OPENCODE_MIN_VERSION

    def ttl(self, lifetime):
        """OpenCode keeps no key: the plugin runs the helper before every request."""
        return 0

    def install_dir(self, location=None):
        """$XDG_CONFIG_HOME/opencode, else ~/.config/opencode (OpenCode's global config directory)."""
        base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
        return os.path.join(os.path.abspath(base), "opencode")

    def config_path(self, record):
        if record.get("config"):
            return record["config"]
        for name in OPENCODE_CONFIG_NAMES:
            path = os.path.join(record["dir"], name)
            if os.path.lexists(path):
                return path
        return os.path.join(record["dir"], OPENCODE_CONFIG_NAMES[0])

    def plugin_path(self, record):
        return os.path.join(record["dir"], OPENCODE_PLUGIN)

    def provider(self, record):
        """fmapi's entry under "provider" in the config."""
        kind, _ = model_route(record["host"], record["model"])
        npm, base = OPENCODE_SDK[kind]
        header, value = CODING_AGENT_HEADER
        return {
            "npm": npm,
            "name": "Databricks FMAPI",
            "options": {"baseURL": record["host"] + base, "apiKey": OPENCODE_PLACEHOLDER_KEY, "headers": {header: value}},
            "models": {record["model"]: {"name": record["model"]}},
        }

    def plugin_text(self, record):
        return OPENCODE_PLUGIN_TEXT % {"version": __version__, "provider": OPENCODE_PROVIDER_ID,
                                       "helper": json.dumps(self.helper_path(record)),
                                       "provider_json": json.dumps(OPENCODE_PROVIDER_ID)}

    def check(self, record):
        path = self.config_path(record)
        _, data = read_jsonc_file(path)
        if "provider" in data and not isinstance(data["provider"], dict):
            raise FmapiError("%s: \"provider\" is %s, not an object; fmapi left the file untouched."
                             % (tilde(path), json.dumps(data["provider"])),
                             fix="Fix it (OpenCode expects an object there), then re-run fmapi.")

    def configure(self, record, previous):
        previous = previous or {}
        record = dict(record, config=self.config_path(record))
        self.check(record)
        write_helper(self.helper_path(record), self.token_spec(record), self.title)
        write_atomic(self.plugin_path(record), self.plugin_text(record), 0o600)
        selected = "%s/%s" % (OPENCODE_PROVIDER_ID, record["model"])
        undo = apply_json_edits(record["config"], [(("provider", OPENCODE_PROVIDER_ID), self.provider(record), True),
                                                   (("model",), selected, False), (("small_model",), selected, False)],
                                previous.get("config_undo"))
        for key in ("OPENCODE_CONFIG", "OPENCODE_CONFIG_DIR", "OPENCODE_CONFIG_CONTENT"):
            if os.environ.get(key):
                warn("%s is set in your environment; its settings may override fmapi's in %s." % (key, tilde(record["config"])))
        return dict(record, settings=record["config"], config_undo=undo)

    def discover(self):
        directory = self.install_dir()
        record = {"agent": self.name, "dir": directory}
        if not any(os.path.exists(p) for p in (os.path.join(directory, HELPER_NAME), os.path.join(directory, CACHE_NAME),
                                                 self.plugin_path(record))):
            return []
        record["settings"] = self.config_path(record)
        spec = spec_from_helper(os.path.join(directory, HELPER_NAME))
        if spec and spec.agent == self.name:
            record.update(host=spec.host, profile=spec.profile, lifetime_days=spec.lifetime_days, cli=spec.cli,
                          auth=spec.auth, config_file=spec.config_file)
        return [record]

    def unconfigure(self, record, report):
        """The config first; the plugin and helper go only once it no longer names the provider (else False)."""
        directory = record["dir"]
        undo = record.get("config_undo")
        if not undo:  # an install the registry lost: fmapi's provider, and the keys that select it
            path = self.config_path(record)
            try:
                data = read_jsonc_file(path)[1]
            except UnparsableFile:
                data = {}
            members = [{"path": ["provider", OPENCODE_PROVIDER_ID], "owned": True, "parents": [["provider"]]}]
            for key in ("model", "small_model"):
                if str(data.get(key, "")).startswith(OPENCODE_PROVIDER_ID + "/"):
                    members.append({"path": [key], "written": data[key]})
            undo = {"file": path, "members": members}
        if not undo_json_edits(undo, report):
            report.kept.append("%s and %s, so that OpenCode still starts: %s names the provider"
                               % (tilde(self.plugin_path(record)), tilde(self.helper_path(record)), tilde(undo["file"])))
            return False
        for path in (self.plugin_path(record), os.path.join(directory, HELPER_NAME), os.path.join(directory, CACHE_NAME),
                     os.path.join(directory, LEDGER_NAME), os.path.join(directory, LOCK_NAME)):
            if remove_file(path):
                report.removed.append(tilde(path))
        for leftover in leftover_temp_files(directory, (HELPER_NAME, CACHE_NAME) + OPENCODE_CONFIG_NAMES) + \
                leftover_temp_files(os.path.dirname(self.plugin_path(record)), (os.path.basename(OPENCODE_PLUGIN),)):
            remove_file(leftover)
            report.removed.append(tilde(leftover))
        for empty in (os.path.dirname(self.plugin_path(record)), directory):
            try:
                os.rmdir(empty)  # only when nothing else is left in it
            except OSError:
                pass

    def finish_message(self, record):
        text = ("Done. OpenCode now talks to %s (model %s/%s, in %s).\n"
                "Run `opencode` for an interactive session, or `opencode run \"...\"` for a single task."
                % (record["host"], OPENCODE_PROVIDER_ID, record["model"], tilde(record["config"])))
        if os.environ.get("XDG_CONFIG_HOME"):
            text += "\nOpenCode finds this setup while XDG_CONFIG_HOME=%s is set, as it is now." % tilde(os.path.dirname(record["dir"]))
        return text


register(OpenCode())


# --------------------------------------------------------------------------------------
# 15. Dependencies: installing agents and the Databricks CLI
# --------------------------------------------------------------------------------------

CLAUDE_INSTALL = "curl -fsSL https://claude.ai/install.sh | bash"
DATABRICKS_INSTALL_BREW = "brew tap databricks/tap && brew install databricks"
DATABRICKS_INSTALL_SCRIPT = "curl -fsSL https://raw.githubusercontent.com/databricks/setup-cli/main/install.sh | sh"


def run_installer(description, shell_command):
    """Run an installer in the user's terminal, its progress visible; raise when it fails."""
    import subprocess

    say("Installing %s: %s" % (description, shell_command))
    # pipefail: a failed download must fail the install, not feed an empty script to the shell
    shell = ["/bin/bash", "-o", "pipefail", "-c"] if os.path.exists("/bin/bash") else ["/bin/sh", "-c"]
    # the installer gets the user's umask, not fmapi's 077: shared prefixes stay readable
    restore = None if INHERITED_UMASK is None else (lambda: os.umask(INHERITED_UMASK))
    proc = subprocess.run(shell + [shell_command], preexec_fn=restore)
    if proc.returncode != 0:
        raise FmapiError("installing %s failed (exit status %d)." % (description, proc.returncode),
                         fix="Install it yourself (%s), then re-run fmapi." % shell_command)


def find_command(command):
    """``command`` on PATH or in the places installers put it (~/.local/bin and friends)."""
    import shutil

    found = shutil.which(command)
    if found:
        return found
    home = os.path.expanduser("~")
    for directory in (os.path.join(home, ".local", "bin"), os.path.join(home, "bin"), "/opt/homebrew/bin", "/usr/local/bin"):
        candidate = os.path.join(directory, command)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def installer_for(command, agent=None):
    """(description, shell command) that installs ``command`` the way the seed does."""
    if command == "databricks":
        if sys.platform == "darwin":
            return "the Databricks CLI", DATABRICKS_INSTALL_BREW
        return "the Databricks CLI", DATABRICKS_INSTALL_SCRIPT
    if command == "claude":
        return "Claude Code", CLAUDE_INSTALL
    return agent.title, "npm install -g %s" % agent.npm_package


def ensure_command(command, agent=None):
    """The absolute path of ``command``, installing it first when it is missing."""
    found = find_command(command)
    if found:
        say("  %s: %s" % (command, tilde(found)))
        return found
    description, shell_command = installer_for(command, agent)
    run_installer(description, shell_command)
    found = find_command(command)
    if not found:
        raise FmapiError("%s was installed but `%s` is still not on PATH." % (description, command),
                         fix="Open a new terminal (or add its directory to PATH), then re-run fmapi.")
    return found


def command_version(path):
    """The first X.Y.Z in `path --version`, as a tuple, or None."""
    import re
    import subprocess

    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else None


def check_version(agent, path):
    """Stop with an upgrade instruction when the agent is older than fmapi supports."""
    if not agent.min_version:
        return
    found = command_version(path)
    if found is None and agent.node_version:  # a Node.js too old for the agent fails before it says its version
        node = find_command("node")
        have = command_version(node) if node else None
        if have is not None and have < agent.node_version:
            raise FmapiError("%s needs Node.js %s or newer; `node` here is %s." % (
                agent.title, ".".join(map(str, agent.node_version)), ".".join(map(str, have))),
                fix="Upgrade Node.js (https://nodejs.org, or your package manager), then re-run fmapi.")
    if found is None:
        warn("could not tell which version of %s is installed; continuing." % agent.command)
        return
    if found < agent.min_version:
        need = ".".join(map(str, agent.min_version))
        raise FmapiError("%s %s is too old: fmapi needs %s or newer." % (agent.title, ".".join(map(str, found)), need),
                         fix="Upgrade it: npm install -g %s@latest (or your package manager's upgrade), then re-run fmapi." % agent.npm_package)


# --------------------------------------------------------------------------------------
# 16. The terminal: prompts and the arrow-key selector
#
# Prompts read and write the user's terminal, /dev/tty, whatever stdin and stdout are, so
# `fmapi | tee setup.log` still asks (and the log gets fmapi's output, not the questions).
# fmapi asks only when stdin is a terminal too: `fmapi < answers` and tests never block.
# Escape sequences (cursor moves, bold) only where TERM takes them; on TERM=dumb the
# selector is a numbered list answered with a line. Colour is section 2's business.
# --------------------------------------------------------------------------------------

_TTY = []  # [fd of /dev/tty] once opened, [None] when there is none


def tty_fd():
    """The file descriptor of /dev/tty opened read-write (once), or None without a terminal."""
    if not _TTY:
        try:
            _TTY.append(os.open("/dev/tty", os.O_RDWR | getattr(os, "O_NOCTTY", 0)))
        except OSError:
            _TTY.append(None)
    return _TTY[0]


def can_ask():
    """True when fmapi may ask questions: stdin is a terminal and /dev/tty opens."""
    try:
        return sys.stdin is not None and sys.stdin.isatty() and tty_fd() is not None
    except (ValueError, OSError):
        return False


def _tty_encoding():
    import locale

    return getattr(sys.stdin, "encoding", None) or locale.getpreferredencoding(False) or "utf-8"


def tty_write(text):
    """Write ``text`` to the terminal (nothing when there is none)."""
    fd = tty_fd()
    if fd is None:
        return
    data = text.encode(_tty_encoding(), "replace")
    while data:
        data = data[os.write(fd, data):]


def tty_readline():
    """One line typed at the terminal, without its newline; None when input ended (Ctrl-D)."""
    fd = tty_fd()
    if fd is None:
        return None
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1024)
        if not chunk:  # Ctrl-D: on an empty line, the end; after some text, that text
            if data:
                break
            return None
        data += chunk
    return data.decode(_tty_encoding(), "replace").rstrip("\r\n")


def terminal_columns():
    """Width of the terminal in columns (80 when unknown)."""
    fd = tty_fd()
    try:
        columns = os.get_terminal_size(fd).columns if fd is not None else 0
    except OSError:
        columns = 0
    return columns if columns > 0 else 80


def clip(text, width):
    """``text`` cut to ``width`` characters, ending in an ellipsis when it was longer."""
    if len(text) <= width:
        return text
    ellipsis = "\u2026"
    try:
        ellipsis.encode(_tty_encoding())
    except (UnicodeError, LookupError):
        ellipsis = "..."
    return text[:max(0, width - len(ellipsis))] + ellipsis


def _input_ended(label):
    tty_write("\n")  # Ctrl-D leaves the cursor after the prompt: the message starts a line of its own
    return FmapiError("no answer for '%s' (input ended)." % label, fix="Pass it as a flag; see fmapi --help.")


def ask_text(label, default=None, validate=None, hint=None):
    """Ask at the terminal until the answer is valid; Enter takes ``default``.

    ``hint`` (an example, or what the answer is for) is shown in parentheses after the label.
    ``validate`` turns the text into the answer or raises FmapiError, whose message is shown
    before asking again. FmapiError when input ends (Ctrl-D); KeyboardInterrupt on Ctrl-C.
    """
    prompt = label + (" (%s)" % hint if hint else "") + (" [%s]" % default if default else "") + ": "
    while True:
        tty_write(prompt)
        answer = tty_readline()
        if answer is None:
            raise _input_ended(label)
        answer = answer.strip()
        if not answer:
            if not default:
                tty_write("  Please enter a value.\n")
                continue
            answer = default
        if validate is None:
            return answer
        try:
            return validate(answer)
        except FmapiError as exc:
            tty_write("  %s\n" % exc.message)


def _select_by_number(label, options, default):
    """select() on a terminal without escape sequences (TERM=dumb): a numbered list, a line."""
    tty_write("%s:\n" % label)
    for i, option in enumerate(options):
        tty_write("  %d) %s\n" % (i + 1, option))
    while True:
        tty_write("Choose 1-%d, q cancels [%d]: " % (len(options), default + 1))
        answer = tty_readline()
        if answer is None:
            raise _input_ended(label)
        answer = answer.strip().lower()
        if answer in ("q", "quit"):
            raise KeyboardInterrupt
        if not answer:
            return default
        if answer.isdigit() and 1 <= int(answer) <= len(options):
            return int(answer) - 1
        tty_write("  Please enter a number from 1 to %d.\n" % len(options))


def select(label, options, default=0):
    """An arrow-key selector at the terminal; returns the index chosen.

    Keys: up/down or k/j move, a digit jumps to that row, Enter chooses, Esc or q cancels
    (KeyboardInterrupt, like Ctrl-C). Rows longer than the terminal is wide are cut with an
    ellipsis, so redrawing never wraps; after the choice only "label: choice" stays. The
    terminal is always restored. On TERM=dumb: a numbered list answered with a line.
    """
    import select as select_module
    import termios
    import tty

    fd = tty_fd()
    if fd is None:
        raise FmapiError("no terminal to ask '%s' at." % label, fix="Pass it as a flag; see fmapi --help.")
    if not fancy_terminal():
        index = _select_by_number(label, options, default)
        tty_write("  %s: %s\n" % (label, options[index]))
        return index
    width = terminal_columns() - 1  # never the last column: some terminals wrap there
    keys = "up/down or j/k move, 1-%d jumps, Enter chooses, Esc or q cancels" % len(options) if len(options) > 1 \
        else "Enter chooses, Esc or q cancels"
    header = ["%s:" % label, "  (%s)" % keys]
    header_lines = sum(max(1, -(-len(line) // (width + 1))) for line in header)  # as the terminal wraps them
    index = default
    saved = termios.tcgetattr(fd)

    def draw(first):
        text = "" if first else "\x1b[%dA" % len(options)
        for i, option in enumerate(options):
            row = clip(("> " if i == index else "  ") + option, width - 2)
            text += "\r\x1b[2K  " + ("\x1b[1m%s\x1b[0m" % row if i == index else row) + "\n"
        tty_write(text)

    tty_write("\n".join(header) + "\n")
    try:
        tty.setcbreak(fd, termios.TCSANOW)  # not TCSAFLUSH: keys typed ahead still count
        tty_write("\x1b[?25l")
        draw(True)
        while True:
            key = os.read(fd, 1)
            if key in (b"\r", b"\n"):
                break
            if key in (b"", b"\x04"):
                raise _input_ended(label)
            if key == b"\x03":
                raise KeyboardInterrupt
            if key == b"\x1b":
                seq = b""
                while len(seq) < 8 and select_module.select([fd], [], [], 0.05)[0]:
                    seq += os.read(fd, 1)
                    if seq[-1:].isalpha() or seq[-1:] == b"~":
                        break
                if not seq:  # Esc alone
                    raise KeyboardInterrupt
                if seq[:1] in (b"[", b"O") and seq.endswith(b"A"):
                    index = (index - 1) % len(options)
                elif seq[:1] in (b"[", b"O") and seq.endswith(b"B"):
                    index = (index + 1) % len(options)
            elif key in (b"q", b"Q"):
                raise KeyboardInterrupt
            elif key in (b"k", b"K"):
                index = (index - 1) % len(options)
            elif key in (b"j", b"J"):
                index = (index + 1) % len(options)
            elif key.isdigit() and 1 <= int(key) <= len(options):
                index = int(key) - 1
            draw(False)
        # Only the answer stays: up over the rows and the header, clear, one line.
        tty_write("\x1b[%dA\r\x1b[J%s\n" % (len(options) + header_lines, clip("%s: %s" % (label, options[index]), width)))
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        tty_write("\x1b[?25h")
    return index


# --------------------------------------------------------------------------------------
# 17. Commands: setup, token, uninstall
# --------------------------------------------------------------------------------------

HTTPS_MESSAGE = "Workspace URL must start with https://"


def normalize_host(url):
    """The workspace URL as ``scheme://host[:port]``; https only, or http on loopback.

    UsageError for anything a URL parser and IDNA (RFC 5891, Python's ``idna`` codec) would not
    take as a host name: labels of 1 to 63 characters, at most 253 in all; a URL with a user name
    or password is refused with that reason, and its text is never repeated.
    """
    import urllib.parse

    text = url.strip()
    example = "e.g. https://my-workspace.cloud.databricks.com"
    shown = text if len(text) <= 80 else text[:60] + "..."
    invalid = UsageError("'%s' is not a valid workspace URL." % shown, fix="Give the full URL, " + example)
    if "://" not in text:
        raise UsageError(HTTPS_MESSAGE, fix="Give the full URL, " + example)
    if "@" in text.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]:
        raise UsageError("the workspace URL must not contain a user name or password (user:password@); "
                         "fmapi signs in through the Databricks CLI.", fix="Give only the host, " + example)
    if len(text) > 2048 or any(c.isspace() for c in text):
        raise invalid
    try:
        parts = urllib.parse.urlsplit(text)
        hostname, port = parts.hostname, parts.port
    except ValueError:
        raise invalid from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or (scheme == "http" and not _is_loopback(hostname or "")):
        raise UsageError(HTTPS_MESSAGE, fix="Give the full URL, " + example)
    if not hostname or parts.username is not None or parts.password is not None:
        raise invalid
    if ":" not in hostname:  # not an IPv6 literal: a DNS name (or IPv4) that IDNA accepts
        try:
            ascii_host = hostname.rstrip(".").encode("idna").decode("ascii").lower()
        except (UnicodeError, ValueError):
            raise UsageError("'%s' is not a valid workspace URL: each part of the host name must have 1 to 63 "
                             "characters." % shown, fix="Give the full URL, " + example) from None
        labels = ascii_host.split(".")
        if len(ascii_host) > 253 or not all(0 < len(label) <= 63 for label in labels) \
                or not all(c.isalnum() or c in "-_" for label in labels for c in label):
            raise invalid
        hostname = ascii_host
    netloc = ("[%s]" % hostname) if ":" in hostname else hostname
    if port is not None:
        netloc += ":%d" % port
    return "%s://%s" % (scheme, netloc)


def previous_install(agent, registry, install_dir=None):
    """The registry's record of this agent's install (at ``install_dir`` when given)."""
    if install_dir:
        record = registry.get(install_dir)
        return record if record and record.get("agent") == agent.name else None
    default_dir = agent.install_dir()
    if registry.get(default_dir, {}).get("agent") == agent.name:
        return registry[default_dir]
    others = [r for r in registry.values() if r.get("agent") == agent.name]
    return others[-1] if others else None


# What each text prompt shows after its label: the seed README's example or purpose.
PROMPT_HINTS = {
    "host": "e.g. https://my-workspace.cloud.databricks.com",
    "profile": "the Databricks CLI profile to sign in with, e.g. my-workspace",
    "model": "the primary model, a serving endpoint name",
    "opus": "for complex tasks",
    "sonnet": "for lighter tasks",
    "haiku": "for fast, low-cost tasks",
    "base_path": "the folder that gets .claude/settings.json, e.g. ~/work/project",
}


def collect_answers(agent, args, registry, interactive):
    """Every setup answer: from flags, else the terminal, else the previous install or defaults."""
    location = getattr(args, "settings_location", None)
    previous = previous_install(agent, registry, agent.install_dir(location) if location else None)
    prev = previous or {}
    # Workspace and profile are shared: a first setup of this agent offers (and --yes takes)
    # those of the newest install of another agent.
    shared = prev if prev.get("host") else next(
        (r for r in reversed(list(registry.values())) if isinstance(r, dict) and r.get("host") and r.get("profile")), {})

    if args.host:
        host = normalize_host(args.host)
    elif interactive:
        host = ask_text("Workspace URL", shared.get("host"), normalize_host, PROMPT_HINTS["host"])
    elif shared.get("host"):
        host = shared["host"]
    else:
        raise UsageError("--host is required when fmapi runs without a terminal or with --yes.",
                         fix="Pass it, e.g. fmapi setup --yes --host https://my-workspace.cloud.databricks.com")

    # The CLI's config file in effect now is the install's: helpers pass it to the CLI, so an
    # agent started without DATABRICKS_CONFIG_FILE (an IDE, a GUI) still renews. A re-run from
    # a shell without the variable keeps the one recorded.
    if os.environ.get("DATABRICKS_CONFIG_FILE"):
        config_file = databricks_config_file()
    else:
        config_file = shared.get("config_file") if shared.get("host") == host else None

    profile_default = shared.get("profile") if shared.get("host") == host else default_profile(host, config_file)
    if args.profile:
        profile = profile_for_host(args.profile, host, config_file)
    elif interactive:
        profile = ask_text("CLI profile name", profile_default, lambda name: profile_for_host(name, host, config_file),
                           PROMPT_HINTS["profile"])
    else:
        profile = profile_for_host(profile_default, host, config_file)

    if getattr(args, "auth", None):
        auth = args.auth
    elif interactive:
        auth = AUTH_MODES[select("Credential", list(AUTH_LABELS), AUTH_MODES.index(prev.get("auth") or "pat"))]
    else:
        auth = prev.get("auth") or "pat"

    answers = {"host": host, "profile": profile, "config_file": config_file, "auth": auth}
    endpoints = setup_endpoints(host, profile, config_file) if interactive else None
    for key, label, default in agent.prompts(prev):
        given = getattr(args, key, None)
        if given:
            answers[key] = given.strip()
        elif interactive and endpoints:
            answers[key] = pick_model(agent, label, endpoints, default)
        elif interactive:
            answers[key] = ask_text(label, default, hint=PROMPT_HINTS.get(key))
        else:
            answers[key] = default
    answers["endpoints"] = endpoints

    if agent.name == "claude":
        if location is None and interactive:
            choices = ["Home directory (%s)" % tilde(os.path.join(agent.install_dir("home"), "settings.json")),
                       "Current directory (%s)" % os.path.join(".claude", "settings.json"),
                       "Custom path"]
            default_index = {"home": 0, "cwd": 1}.get(prev.get("location", "home"), 2)
            picked = select("Settings location", choices, default_index)
            if picked == 2:
                location = ask_text("Base path", prev.get("location") if default_index == 2 else None, _validate_base_path,
                                    PROMPT_HINTS["base_path"])
            else:
                location = ("home", "cwd")[picked]
        if location is None and prev.get("location") == "cwd" and prev.get("dir"):
            location = os.path.dirname(prev["dir"])  # that install's folder, not wherever this re-run happens
        location = location or prev.get("location") or "home"
        if location not in ("home", "cwd"):
            location = _validate_base_path(location)
        answers["location"] = location

    if args.pat_lifetime:
        days = args.pat_lifetime
    elif interactive and auth == "pat":
        labels = ["%d day%s" % (d, "" if d == 1 else "s") for d in PAT_LIFETIMES]
        current = prev.get("lifetime_days", DEFAULT_PAT_DAYS)
        days = PAT_LIFETIMES[select("PAT lifetime", labels, PAT_LIFETIMES.index(current) if current in PAT_LIFETIMES else 0)]
    else:
        days = prev.get("lifetime_days", DEFAULT_PAT_DAYS)
    answers["lifetime_days"] = int(days)
    if args.min_remaining:
        answers["min_remaining"] = args.min_remaining * 60
    else:
        answers["min_remaining"] = int(prev.get("min_remaining") or MIN_REMAINING)
    return answers, previous


def setup_endpoints(host, profile, config_file=None):
    """On a terminal, before the model questions: sign in, then the workspace's endpoints.

    None when they cannot be had (no Databricks CLI yet, no session, no network): the
    questions then take free text with today's defaults, and the models are checked after
    the sign-in step instead.
    """
    cli = find_command("databricks")
    if not cli:
        return None
    try:
        return serving_endpoints(host, ensure_session(host, profile, cli, config_file))
    except FmapiError as exc:
        warn("could not list the workspace's models (%s); type their names." % exc.message)
        return None


def model_problem(agent, name, endpoints):
    """None when ``endpoints`` serve ``name`` to ``agent``, else why not (with close names)."""
    usable = [e["name"] for e in endpoints if endpoint_suits(agent, e)]
    if name in usable:
        return None
    known = {e["name"]: e for e in endpoints}
    near = close_names(name, usable)
    if name in known:
        why = "'%s' is a serving endpoint but does not serve %s's API" % (name, agent.title)
    else:
        why = "the workspace has no serving endpoint '%s'" % name
    return why + ("; the nearest: %s" % ", ".join(near) if near else "; see: fmapi models --agent %s" % agent.name)


OTHER_MODEL = "Other\u2026"


def pick_model(agent, label, endpoints, default):
    """The arrow-key selector over the endpoints that suit ``agent`` (``default`` first, then
    the rest, then Other… for free text, checked against the workspace)."""
    names = sorted(e["name"] for e in endpoints if endpoint_suits(agent, e) and e["ready"])
    if not names:
        return ask_text(label, default)
    options = ([default] if default in names else []) + [n for n in names if n != default] + [OTHER_MODEL]
    picked = options[select(label, options, 0)]
    if picked != OTHER_MODEL:
        return picked

    def served(text):
        problem = model_problem(agent, text, endpoints)
        if problem:
            raise UsageError(problem + ".")
        return text

    return ask_text(label, default if default in names else None, served)


def check_models(agent, record, bearer, interactive, endpoints=None):
    """Catch a model the workspace does not serve before anything is written.

    On a terminal the question is asked again (close names first); otherwise UsageError
    (exit 2) names the model and the nearest ones. When the list cannot be fetched, a
    warning and the models stay as given. Returns the record with the chosen models.
    """
    if endpoints is None:
        try:
            endpoints = serving_endpoints(record["host"], bearer)
        except FmapiError as exc:
            warn("could not list the workspace's serving endpoints to check the models (%s); continuing." % exc.message)
            return record
    record = dict(record)
    for key, label, name in model_settings(record):
        problem = model_problem(agent, name, endpoints)
        if problem is None:
            info = next(e for e in endpoints if e["name"] == name)
            if not info["ready"]:
                warn("%s %s is %s on the workspace for now." % (label, name, info["state"]))
            continue
        if not interactive:
            flag = "--model" if key == "model" else "--" + key
            raise UsageError("%s: %s." % (label, problem),
                             fix="Pass another %s (fmapi models --agent %s lists them), or --skip-model-check to keep it."
                                 % (flag, agent.name))
        say("  %s: %s." % (label, problem))
        near = close_names(name, [e["name"] for e in endpoints if endpoint_suits(agent, e)], 1)
        record[key] = pick_model(agent, label, endpoints, near[0] if near else None)
    return record


def _validate_base_path(text):
    path = os.path.abspath(os.path.expanduser(text.strip()))
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError("%s is a file, not a directory." % path, fix="Give the directory that should hold .claude/settings.json")
    return path


def refuse_root_on_foreign_home():
    """Stop, before anything is written, when fmapi runs as root on another user's HOME (sudo keeps
    HOME on macOS): root-owned files would lock that user out of their own settings. A directory
    inside it that someone else owns is check_private_dir's to refuse."""
    found = running_as_root_for([os.path.expanduser("~")])
    if found:
        user, path = found
        raise FmapiError("fmapi is running as root, but %s belongs to %s: what it wrote there would then belong to "
                         "root and lock %s out; fmapi changed nothing." % (tilde(path), user, user),
                         fix="Run fmapi as %s, without sudo." % user)


SETUP_FLAG_AGENTS = {"settings_location": ("claude",), "write_env": ("gemini",)}  # beside the prompts' own keys


def check_flags_apply(agent, args):
    """UsageError (exit 2) for a setup flag the chosen agent does not take, naming the agents that do.

    Model flags belong to the agents whose prompts() ask that key (--opus: Claude Code);
    the rest are in SETUP_FLAG_AGENTS.
    """
    owners = {key: list(names) for key, names in SETUP_FLAG_AGENTS.items()}
    for other in AGENTS.values():
        for key, _, _ in other.prompts({}):
            owners.setdefault(key, []).append(other.name)
    for key, names in sorted(owners.items()):
        if getattr(args, key, None) is not None and agent.name not in names:
            flag = "--" + key.replace("_", "-")
            if key == "write_env" and args.write_env is False:
                flag = "--no-write-env"
            titles = " and ".join(AGENTS[name].title for name in sorted(names) if name in AGENTS)
            raise UsageError("%s does not apply to %s: it is for %s." % (flag, agent.title, titles or "no agent"),
                             fix="Leave it out, or choose that agent: fmapi setup --agent %s ..." % sorted(names)[0])


def offer_launcher(args, interactive):
    """After a setup: an `fmapi` launcher when fmapi is not on PATH (--link, or yes at the terminal).

    A launcher fmapi wrote before is renewed (it follows this setup's interpreter); an `fmapi`
    that is something else (Homebrew's) is left alone. --no-link never writes one.
    """
    import shutil

    if args.link is False:
        return
    found = shutil.which("fmapi")
    ours = installed_launchers()
    if found and os.path.realpath(found) not in [os.path.realpath(p) for p in ours]:
        if args.link:
            say("  `fmapi` is already on PATH (%s); no launcher needed." % tilde(found))
        return
    if not found and not ours and not args.link:
        if not interactive:
            return
        directory = tilde(launcher_dirs()[0])
        answer = ask_text("Put an `fmapi` command in %s, so you can type fmapi from anywhere? (y/n)" % directory, "y")
        if answer.lower() not in ("y", "yes"):
            return
    try:
        path, on_path = write_launcher()
    except FmapiError as exc:
        warn("%s %s" % (exc.message, exc.fix))
        return
    if not ours:
        say("  wrote the launcher %s (it runs fmapi's private copy; `fmapi --uninstall` removes it)." % tilde(path))
    if not on_path:
        warn("%s is not on your PATH: add it (e.g. in ~/.profile: export PATH=\"%s:$PATH\") to type fmapi."
             % (tilde(os.path.dirname(path)), os.path.dirname(path)))


def check_dependencies_first(agent, args, interactive):
    """Before any question: name a missing agent or Databricks CLI, then install it (at a
    terminal after asking, Enter = yes; with --yes or without a terminal as always), or stop
    with what to install (--no-install, or no at the question)."""
    missing = [(command, owner) for command, owner in ((agent.command, agent), ("databricks", None))
               if not find_command(command)]
    if not missing:
        return
    found = [installer_for(command, owner) for command, owner in missing]
    names = " and ".join(description for description, _ in found)
    say("fmapi needs %s, which %s not installed." % (names, "is" if len(found) == 1 else "are"))
    how = "; ".join(shell_command for _, shell_command in found)
    if args.no_install:
        raise FmapiError("not installing %s (--no-install); nothing was changed." % names,
                         fix="Install it yourself (%s), then run fmapi setup again." % how)
    if interactive and ask_text("Install %s now? (y/n)" % names, "y").lower() not in ("y", "yes"):
        raise FmapiError("setup needs %s; nothing was changed." % names,
                         fix="Install it yourself (%s), then run fmapi setup again." % how)
    for command, owner in missing:
        ensure_command(command, owner)


def answers_command(agent, answers):
    """The setup with every answer as a flag: paste it to run the same setup without questions."""
    import shlex

    words = ["setup"] + ([] if agent.name == "claude" else ["--agent", agent.name])
    words += ["--host", answers["host"], "--profile", answers["profile"]]
    if answers.get("auth"):
        words += ["--auth", answers["auth"]]
    for key, _, _ in agent.prompts({}):
        if answers.get(key):
            words += ["--" + key.replace("_", "-"), answers[key]]
    if answers.get("location"):
        words += ["--settings-location", answers["location"]]
    if answers.get("auth", "pat") == "pat" and answers.get("lifetime_days"):
        words += ["--pat-lifetime", str(answers["lifetime_days"])]
    if answers.get("min_remaining") and int(answers["min_remaining"]) != MIN_REMAINING:
        words += ["--min-remaining", str(int(answers["min_remaining"]) // 60)]
    return "fmapi " + " ".join(shlex.quote(str(word)) for word in words + ["--yes"])


def closing_message(agent, record, warnings=(), unchanged=False):
    """Setup's last words, one shape for every agent: what changed, how to start the agent (its
    own finish_message), where it points, headless use, how to check and undo, and the
    warnings given during setup again."""
    lines = ["Nothing changed: %s was already set up this way." % agent.title] if unchanged else []
    lines.append(agent.finish_message(record))
    where = record.get("settings") or record.get("config") or record["dir"]
    lines.append("  Workspace: %s (profile %s); model: %s; files: %s"
                 % (record["host"], record["profile"], record.get("model") or agent.default_model, tilde(where)))
    if agent.headless:
        lines.append("  Without a terminal (scripts, CI): " + agent.headless)
    lines.append("  Check it: fmapi status; undo all of it: fmapi --uninstall")
    if warnings:
        lines.append(paint("Warnings during this setup (see above):", "warning", sys.stdout))
        lines += ["  - " + text for text in warnings]
    return "\n".join(lines)


def _setup_state(record):
    """What a setup could change for ``record``: the install's files (path -> sha256) and its record."""
    import hashlib

    paths = {record.get(key) for key in ("settings", "config") if isinstance(record.get(key), str)}
    paths.update(os.path.join(record["dir"], name) for name in _listdir(record["dir"]))
    state = {}
    for path in sorted(p for p in paths if p):
        data = read_bytes(path) if os.path.isfile(path) else None
        if data is not None:
            state[path] = hashlib.sha256(data).hexdigest()
    return state, load_registry().get(record["dir"])


def cmd_setup(args):
    agent = AGENTS[args.agent]
    check_flags_apply(agent, args)
    interactive = not args.yes and can_ask()
    if interactive:  # before the questions; a flag that is wrong anyway is said first
        if args.host:
            normalize_host(args.host)
        refuse_root_on_foreign_home()
        check_dependencies_first(agent, args, interactive)
    registry = load_registry()
    answers, previous = collect_answers(agent, args, registry, interactive)
    endpoints = answers.pop("endpoints", None)
    location = answers.get("location")
    record = dict(answers, agent=agent.name, dir=agent.install_dir(location))
    if location in (None, "home") and agent.config_env:
        if os.environ.get(agent.config_env):
            record["config_env"] = agent.config_env  # found again from a shell without the variable
        elif (record["dir"] not in registry and previous and previous.get("config_env") == agent.config_env
              and getattr(args, "settings_location", None) is None):
            record = dict(record, dir=previous["dir"], config_env=agent.config_env)  # a bare re-run: that install
    if args.write_env is not None:
        record["write_env"] = args.write_env
    if previous and previous.get("dir") == record["dir"]:
        record = dict(previous, **record)
        previous_same = previous
    else:
        previous_same = registry.get(record["dir"])
    record = agent.place(record)
    refuse_root_on_foreign_home()
    check_private_dir(record["dir"])
    if agent.cache_dir(record) != record["dir"]:
        check_private_dir(agent.cache_dir(record), "the token cache and lock")
    if agent.uses_helper:
        check_private_dir(runtime_dir(), "the token helpers' runtime copy")
    agent.check(record)

    if not interactive:  # no questions: what is missing is named (and installed) where step 1 starts
        check_dependencies_first(agent, args, interactive)
    warned = len(WARNINGS)
    before = _setup_state(record) if previous_same else None
    try:
        record = _setup_steps(args, agent, record, previous_same, interactive, endpoints)
    except FmapiError as exc:
        if interactive:  # the answers are not lost: one command runs the same setup without questions
            exc.fix = (exc.fix + "\n  " if exc.fix else "") + \
                "Your answers, to run this setup again without questions:\n    " + answers_command(agent, answers)
        raise
    unchanged = before is not None and _setup_state(record) == before
    offer_launcher(args, interactive)
    say("\n" + closing_message(agent, record, WARNINGS[warned:], unchanged))
    return 0


def _setup_steps(args, agent, record, previous_same, interactive, endpoints=None):
    """Setup's five steps for the answers in ``record`` (``endpoints``: the workspace's, when the
    questions listed them); returns the record as registered."""
    total = 5
    step(1, total, "Dependencies")
    agent_path = ensure_command(agent.command, agent)
    check_version(agent, agent_path)
    record["cli"] = ensure_command("databricks")
    if record["auth"] == "oauth":
        require_force_refresh(record["cli"])

    step(2, total, "Databricks sign-in (profile %s on %s)" % (record["profile"], record["host"]))
    bearer = ensure_session(record["host"], record["profile"], record["cli"], record.get("config_file"))
    say("  signed in.")
    if not getattr(args, "skip_model_check", False):
        record = check_models(agent, record, bearer, interactive, endpoints)

    cached = read_cache(os.path.join(record["dir"], CACHE_NAME)) or {}
    old_pat = cached if cached.get("token_id") and cached.get("auth", "pat") == "pat" else None
    step(3, total, "Credential: %s" % CREDENTIALS[record["auth"]].title)
    if agent.uses_helper:
        install_runtime()  # written and verified before anything is minted
    if record["auth"] == "pat":
        try:
            setup_pat(agent, record, previous_same, cached, bearer)
        except PatRefused as exc:
            if getattr(args, "auth", None) == "pat":
                raise
            say("  " + exc.message)
            if interactive and select("Use OAuth tokens instead (no PAT needed)?",
                                      ["Yes, use OAuth tokens", "No, stop here"], 0) == 1:
                raise
            if not interactive:
                say("  switching this install to OAuth tokens (as with --auth oauth).")
            record["auth"] = "oauth"
            require_force_refresh(record["cli"])
    if record["auth"] == "oauth":
        setup_oauth(agent, record, previous_same, cached)
    if old_pat and (old_pat.get("host") != record["host"] or old_pat.get("profile") != record["profile"]
                    or record["auth"] != "pat"):
        retire_pat(record, previous_same or {}, old_pat)

    step(4, total, "%s configuration" % agent.title)
    record = agent.configure(record, previous_same)
    record["version"] = __version__
    registry = load_registry()
    registry[record["dir"]] = record
    save_registry(registry)
    say("  wrote %s" % tilde(record.get("settings") or record["dir"]))

    step(5, total, "Clean-up of older installs")
    report = Report()
    remove_legacy_wrappers(report)
    if report.removed or report.failed:
        report.print()
    else:
        say("  nothing to migrate.")

    return record


def setup_pat(agent, record, previous, cached, bearer):
    """Step 3 in PAT mode: keep or mint the install's PAT; ``record`` learns the lifetime used.

    A lifetime above the workspace's maximum is lowered to it (maxTokenLifetimeDays, or the
    create call's refusal). Raises PatRefused when the workspace will not create PATs.
    """
    conf = workspace_token_conf(record["host"], bearer)
    if conf.get("enableTokensConfig", "").strip().lower() == "false":
        raise PatRefused(record["host"], "personal access tokens are disabled for this workspace", agent.name)
    cap = conf.get("maxTokenLifetimeDays")
    if cap and record["lifetime_days"] > cap:
        say("  this workspace allows PATs of at most %d day%s; using that." % (cap, "" if cap == 1 else "s"))
        record["lifetime_days"] = cap
    spec = agent.token_spec(record)
    prev = previous or {}
    mine = cached if cached.get("auth", "pat") == "pat" else {}
    changed = bool(mine) and (prev.get("lifetime_days") != record["lifetime_days"]
                              or mine.get("profile", record["profile"]) != record["profile"]
                              or mine.get("host") != record["host"])
    before = mine.get("token")
    if not changed and cached_pat_revoked(spec, mine, bearer):
        say("  the cached PAT is no longer valid in the workspace (revoked); replacing it.")
        changed = True
    token, replaced = obtain_token(spec, force=changed, bearer=bearer,
                                   deadline=Deadline(SETUP_DEADLINE, notify=lambda text: say("  " + text)))
    if replaced and mine.get("profile", record["profile"]) == record["profile"]:
        gone = [str(token_id) for token_id in replaced[2].get("revoke") or []]
        if not revoke_quietly(*replaced) and gone:  # the same workspace and profile; a move is retire_pat's
            say("  revoked the PAT it replaced (token id %s) in the workspace." % ", ".join(gone))
    cache = read_cache(spec.cache_path) or {}
    used = cache.get("lifetime_days")
    if isinstance(used, int) and 0 < used < record["lifetime_days"]:
        say("  the workspace refused a %d-day PAT; its maximum is %d day%s, so that is used."
            % (record["lifetime_days"], used, "" if used == 1 else "s"))
        record["lifetime_days"] = used
    say("  %s a PAT valid until %s (cache %s)." % ("kept" if token == before else "minted",
        time.strftime("%Y-%m-%d %H:%M", time.localtime(cache.get("expiry", 0))), tilde(spec.cache_path)))


def setup_oauth(agent, record, previous, cached):
    """Step 3 in OAuth mode: the profile's OAuth access token in the install's cache.

    A fresh token's life (normally 1 hour) is recorded as ``token_lifetime`` (seconds), from
    which the agent's TTL and the helper's margin follow.
    """
    prev = previous or {}
    record["token_lifetime"] = int(prev.get("token_lifetime") or OAUTH_LIFETIME) if prev.get("auth") == "oauth" \
        else OAUTH_LIFETIME
    spec = agent.token_spec(record)
    mine = cached if cached.get("auth") == "oauth" else {}
    changed = not mine or mine.get("host") != record["host"] or mine.get("profile") != record["profile"]
    before = mine.get("token")
    started = time.time()
    token, _ = obtain_token(spec, force=changed, deadline=Deadline(SETUP_DEADLINE))
    cache = read_cache(spec.cache_path) or {}
    if token != before and isinstance(cache.get("expiry"), (int, float)):
        record["token_lifetime"] = max(10, int(round((cache["expiry"] - started) / 10.0)) * 10)
    say("  %s an OAuth access token valid until %s (cache %s); no PAT is created."
        % ("kept" if token == before else "got", time.strftime("%Y-%m-%d %H:%M", time.localtime(cache.get("expiry", 0))),
           tilde(spec.cache_path)))


def retire_pat(record, previous, old):
    """Revoke the PAT an install used before it moved to another workspace or profile, or to
    OAuth, through the session of the profile that minted it (best effort: when that session
    is dead, say which token is left and until when). That session is kept in
    ``record["past_sessions"]`` so that `uninstall --revoke` still reaches its workspace."""
    host, profile = old.get("host"), old.get("profile") or previous.get("profile")
    cli, config_file = previous.get("cli") or record.get("cli"), previous.get("config_file")
    if not host or not profile:
        return
    past = [entry for entry in record.get("past_sessions") or [] if isinstance(entry, dict)]
    entry = {"host": host, "profile": profile, "cli": cli, "config_file": config_file}
    if entry not in past and (host, profile) != (record["host"], record["profile"]):
        past.append(entry)
    if past:
        record["past_sessions"] = past[-10:]
    try:
        bearer = oauth_token(host, profile, cli, config_file)
        delete_pat(host, bearer, old["token_id"])
    except FmapiError as exc:
        until = time.strftime("%Y-%m-%d %H:%M", time.localtime(old.get("expiry", 0)))
        warn("could not revoke the PAT this install used on %s (profile %s): %s It stays valid until %s "
             "(comment '%s'); revoke it in that workspace (User Settings > Developer > Access tokens), or later "
             "with `fmapi uninstall --revoke`." % (host, profile, exc.message, until, old.get("comment") or ""))
        return
    say("  revoked the PAT this install used on %s (profile %s)." % (host, profile))


def credential_summary(record):
    """One line for `fmapi status`: the install's credential mode."""
    if record.get("auth") == "oauth":
        return "OAuth access token (no PAT; renewed through the Databricks CLI)"
    days = int(record.get("lifetime_days") or DEFAULT_PAT_DAYS)
    return "personal access token (PAT, %d-day lifetime)" % days


def find_install(agent, location=None):
    """The record of the install at ``location`` (the agent's default when None), or an error."""
    registry = load_registry()
    if location is None and agent.name == "claude":
        # A project install (--settings-location cwd or PATH) is what Claude Code uses inside
        # that project: the nearest .claude install from here up wins over the home one.
        here = os.getcwd()
        while True:
            record = registry.get(os.path.join(here, ".claude"))
            if record and record.get("agent") == agent.name:
                return record
            parent = os.path.dirname(here)
            if parent == here:
                break
            here = parent
    directory = agent.install_dir(location)
    record = registry.get(directory)
    if record and record.get("agent") == agent.name:
        return record
    elsewhere = agent.env_dir_installs(registry) if location in (None, "home") else []
    if len(elsewhere) == 1:
        return elsewhere[0]  # made with CLAUDE_CONFIG_DIR (or CODEX_HOME, …) set; this shell has none
    if elsewhere:
        raise FmapiError("%s has installs in %s; fmapi cannot tell which one you mean." % (
            agent.title, ", ".join(tilde(r["dir"]) for r in elsewhere)),
            fix="Set %s to one of them, e.g. %s=%s fmapi ..." % (agent.config_env, agent.config_env, elsewhere[0]["dir"]))
    spec = spec_from_helper(os.path.join(directory, HELPER_NAME))
    if spec and spec.agent == agent.name:
        return {"agent": agent.name, "dir": directory, "host": spec.host, "profile": spec.profile,
                "lifetime_days": spec.lifetime_days, "cli": spec.cli, "auth": spec.auth, "config_file": spec.config_file}
    flags = "" if agent.name == "claude" else " --agent " + agent.name
    others = [r for r in registry.values() if r.get("agent") == agent.name and r.get("dir") != directory]
    if others:  # never send the user to make a second install when one exists elsewhere
        where = []
        for other in others:
            words = setup_command(other).split()[2:]
            if agent.name == "claude" and "--settings-location" not in words:
                words += ["--settings-location", "home"]
            where.append("%s (fmapi token%s)" % (tilde(other["dir"]), " " + " ".join(words) if words else ""))
        raise FmapiError("no fmapi install for %s at %s; it has %s at %s." % (
            agent.title, tilde(directory), "one" if len(others) == 1 else "installs", "; ".join(where)),
            fix="Pass that --settings-location, or run fmapi token from inside that project.")
    raise FmapiError("no fmapi install for %s at %s." % (agent.title, tilde(directory)),
                     fix="Set one up first: fmapi setup%s" % flags)


def cmd_token(args):
    agent = AGENTS[args.agent]
    record = find_install(agent, getattr(args, "settings_location", None))
    refuse_root_on_foreign_home()
    spec = agent.token_spec(record)
    problem = runtime_problem() if agent.uses_helper else None
    if problem:
        warn("%s's helper is broken: the runtime copy %s. Repair it with: fmapi setup%s"
             % (agent.title, problem, "" if agent.name == "claude" else " --agent " + agent.name))
    return helper_main([spec.dir, spec.host, str(spec.min_left), spec.to_json()])


# Legacy shell wrappers: older versions of the bash script put a function into the
# user's shell start-up files between these marker lines.

LEGACY_RC_FILES = (".zshrc", ".bashrc")


def legacy_wrapper_blocks(data):
    """[(first line, last line)] of fmapi wrapper blocks in an RC file's bytes."""
    import re

    lines = data.splitlines(keepends=True)
    blocks, start, name = [], None, None
    for number, line in enumerate(lines):
        if start is None:
            match = re.match(rb"^\s*# >>> (.+?) wrapper >>>\s*$", line)
            if match:
                start, name = number, match.group(1)
        elif re.match(rb"^\s*# <<< " + re.escape(name) + rb" wrapper <<<\s*$", line):
            body = b"".join(lines[start:number + 1]).lower()
            if any(word in body for word in (b"fmapi", b"databricks", b"anthropic_auth_token")):
                blocks.append((start, number))
            start = None
    return blocks


def legacy_rc_files():
    home = os.path.expanduser("~")
    found = []
    for name in LEGACY_RC_FILES:
        path = os.path.join(home, name)
        data = read_bytes(path)
        if data and legacy_wrapper_blocks(data):
            found.append(path)
    return found


def remove_legacy_wrappers(report):
    """Cut the wrapper blocks out of ~/.zshrc and ~/.bashrc; every other byte stays."""
    for path in legacy_rc_files():
        try:
            real = check_link_target(path)  # a dotfile manager's symlink stays a symlink
        except FmapiError as exc:
            report.failed.append(exc.message)
            continue
        data = read_bytes(real)
        lines = data.splitlines(keepends=True)
        drop = set()
        for first, last in legacy_wrapper_blocks(data):
            drop.update(range(first, last + 1))
        kept = b"".join(line for number, line in enumerate(lines) if number not in drop)
        try:
            mode = os.stat(real).st_mode & 0o7777
            backup = "%s.fmapi-backup-%s" % (real, time.strftime("%Y%m%d-%H%M%S"))
            write_atomic(backup, data, mode)  # through the one writer: never a half backup
            write_atomic(real, kept, mode)
        except OSError as exc:
            report.failed.append(os_error_text(exc)[0])
            continue
        report.removed.append("the old shell wrapper from %s (backup: %s)" % (tilde(path), tilde(backup)))


def discover_installs(registry):
    """Every install fmapi can find: the registry's plus what is on disk in the usual places."""
    installs = {}
    for directory, record in registry.items():
        if record.get("agent") in AGENTS:
            installs[directory] = record
    for agent in AGENTS.values():
        for record in agent.discover():
            installs.setdefault(record["dir"], record)
    return installs


def describe_install(record):
    agent = AGENTS[record["agent"]]
    where = record.get("settings") or record["dir"]
    extra = " (%s, profile %s)" % (record["host"], record["profile"]) if record.get("host") else ""
    return "%s: %s%s" % (agent.title, tilde(where), extra)


def revoke_sessions(records):
    """{(host, profile, cli, config_file)} whose PATs `uninstall --revoke` must reach: every
    PAT-mode install's, and every session an install used before it moved (``past_sessions``)."""
    sessions = set()
    for record in records:
        if record.get("host") and record.get("profile") and record.get("auth") != "oauth":
            sessions.add((record["host"], record["profile"], record.get("cli"), record.get("config_file")))
        for past in record.get("past_sessions") or []:
            if isinstance(past, dict) and past.get("host") and past.get("profile"):
                sessions.add((past["host"], past["profile"], past.get("cli"), past.get("config_file")))
    return sessions


def cmd_uninstall(args):
    registry = load_registry()
    installs = discover_installs(registry)
    rc_files = legacy_rc_files()
    leftovers = runtime_leftovers() if not registry else []  # an earlier uninstall was cut short
    launchers = installed_launchers()
    if not installs and not rc_files and not leftovers and not launchers:
        if not registry:
            remove_runtime()  # only empty folders can be left here (an uninstall killed at its very end)
        say("Nothing to uninstall.")
        return 0
    refuse_root_on_foreign_home()
    interactive = can_ask()
    say("fmapi found:")
    for record in installs.values():
        say("  - " + describe_install(record))
    for path in rc_files:
        say("  - an old shell wrapper in %s" % tilde(path))
    if leftovers:
        say("  - fmapi's runtime files in %s (no install record is left)" % tilde(data_home()))
    for path in launchers:
        say("  - the fmapi launcher %s" % tilde(path))
    if not args.yes:
        if not interactive:
            raise UsageError("not removing anything without confirmation.", fix="Run it again with --yes to remove the above.")
        if ask_text("Remove all of this? (y/n)", "n").lower() not in ("y", "yes"):
            say("Nothing was changed.")
            return 0

    prefixes = sorted({AGENTS[r["agent"]].pat_comment for r in installs.values()})
    revoke = args.revoke
    if revoke is None:
        revoke = False
        if interactive and not args.yes and installs:
            question = ("Also revoke every Databricks PAT whose comment starts with %s? This includes tokens you "
                        "made with fmapi on other machines and in other settings locations" % " or ".join(repr(p) for p in prefixes))
            revoke = select(question, ["No, let them expire on their own", "Yes, revoke them now"], 0) == 1

    report = Report()
    sessions = revoke_sessions(installs.values())
    for directory, record in installs.items():
        if AGENTS[record["agent"]].unconfigure(record, report) is False:
            registry[directory] = record  # its helper is still in use: keep the record and the runtime
        else:
            registry.pop(directory, None)
    remove_legacy_wrappers(report)
    for path in launchers:
        if remove_file(path):
            report.removed.append("the fmapi launcher %s" % tilde(path))
    if registry:
        save_registry(registry)
    else:
        remove_runtime(report if leftovers else None)

    if revoke:
        oauth = [AGENTS[r["agent"]].title for r in installs.values() if r.get("auth") == "oauth"]
        if oauth:  # said apart from "Kept:": these installs are removed, they just had no PAT
            report.notes.append("Nothing to revoke (OAuth mode, no PAT): " + ", ".join(sorted(set(oauth))))
        for host, profile, cli, config_file in sorted(sessions, key=lambda s: (s[0], s[1], s[2] or "", s[3] or "")):
            try:
                bearer = oauth_token(host, profile, cli, config_file)
                for info in list_pats(host, profile, bearer):
                    if any(str(info.get("comment", "")).startswith(p) for p in prefixes):
                        delete_pat(host, bearer, info["token_id"])
                        report.removed.append("PAT %s (%s) on %s" % (info["token_id"], info.get("comment", ""), host))
            except SessionExpired as exc:
                report.failed.append("revoking PATs on %s: session expired; run %s and retry with --revoke"
                                     % (host, exc.fix.split(": ", 1)[-1]))
            except FmapiError as exc:
                report.failed.append("revoking PATs on %s: %s" % (host, exc.message))
    report.print()
    return 1 if report.failed else 0


def cmd_reauth(args):
    """`fmapi reauth [--agent A]`: sign in again (`databricks auth login --host H --profile P`)
    for the profile of each install, then prove each install's helper serves a token; one
    line per install. Exit status 1 when a sign-in or an install failed."""
    import subprocess

    wanted = getattr(args, "agent", None)
    installs = [record for record in discover_installs(load_registry()).values()
                if record.get("host") and record.get("profile") and (not wanted or record["agent"] == wanted)]
    if not installs:
        flag = " --agent " + wanted if wanted and wanted != "claude" else ""
        raise FmapiError("no fmapi install%s to sign in again for." % (" for " + AGENTS[wanted].title if wanted else ""),
                         fix="Set one up first: fmapi setup%s" % flag)
    failed = set()
    done = []
    for record in installs:
        session = (record["host"], record["profile"], record.get("cli"), record.get("config_file"))
        if session in done:
            continue
        done.append(session)
        host, profile, cli, config_file = session
        try:
            profile_for_host(profile, host, config_file)  # never sign in over a PAT or M2M profile
            sign_in(host, profile, cli, config_file)
        except FmapiError as exc:
            print(exc.render(), file=sys.stderr, flush=True)
            failed.add(session)
    problems = 0
    for record in installs:
        agent = AGENTS[record["agent"]]
        where = "%s (%s)" % (agent.title, tilde(record.get("settings") or record["dir"]))
        session = (record["host"], record["profile"], record.get("cli"), record.get("config_file"))
        if session in failed:
            say("%s: not signed in to %s as %s" % (where, record["host"], record["profile"]))
            problems += 1
            continue
        helper = agent.helper_path(record)
        if agent.name != "gemini" and os.access(helper, os.X_OK):
            proc = subprocess.run([helper], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
            ok, why = proc.returncode == 0 and bool(proc.stdout.strip()), (proc.stderr.strip().splitlines() or [""])[0]
        else:
            try:
                fresh_token(agent.token_spec(record))
                ok, why = True, ""
            except FmapiError as exc:
                ok, why = False, "fmapi: " + exc.message
        if not ok:
            say("%s: FAILED, its helper serves no token: %s" % (where, why or "no output"))
            problems += 1
            continue
        dead = dead_cached_pat(record)
        if dead:
            try:
                token, replaced = obtain_token(agent.token_spec(record), dead=dead)
                if replaced:
                    revoke_quietly(*replaced)
                ok = token != dead
            except FmapiError:
                ok = False
            if not ok:
                say("%s: FAILED, its cached PAT is dead in the workspace (revoked); Run: %s" % (where, dead_pat_fix(record)))
                problems += 1
                continue
            say("%s: its cached PAT was dead in the workspace (revoked); replaced it." % where)
        cache = read_cache(os.path.join(record["dir"], CACHE_NAME)) or {}
        kind = "an OAuth access token" if record.get("auth") == "oauth" else "a PAT"
        say("%s: OK, serves %s valid until %s" % (where, kind, time.strftime(
            "%Y-%m-%d %H:%M", time.localtime(cache.get("expiry", 0)))))
    return 1 if problems else 0


# --------------------------------------------------------------------------------------
# 17b. Seeing a setup: models, status, doctor
#
# They only read: they never write a file nor mint a token themselves (doctor runs each
# helper as the agent would, which renews its PAT when it is due). Their --json objects
# are documented in README.md ("fmapi status", "fmapi doctor", "fmapi models"): add keys,
# never change one's meaning without bumping "version". No token ever appears in them.
# --------------------------------------------------------------------------------------


def model_settings(record):
    """[(key, label, endpoint name)] of the models an install is configured with."""
    agent = AGENTS[record["agent"]]
    return [(key, label, record[key]) for key, label, _ in agent.prompts(record) if record.get(key)]


def agents_for(info):
    """Names of the agents whose models an endpoint can serve (see classify_endpoint)."""
    return [name for name, agent in sorted(AGENTS.items()) if endpoint_suits(agent, info)]


def workspace_of(args, installs):
    """(host, profile, cli, config_file) to ask: --host/--profile, else the installs' workspace."""
    agent = getattr(args, "agent", None)
    profile = getattr(args, "profile", None)
    host = normalize_host(args.host) if getattr(args, "host", None) else None
    if profile:
        profile = validate_profile(profile)
        if not host:
            if not profile_host(profile):
                raise UsageError("the Databricks CLI profile '%s' does not exist or has no host." % profile,
                                 fix="Pass --host URL too, or sign in: databricks auth login --profile %s --host URL" % profile)
            host = normalize_host(profile_host(profile))
        return host, profile, None, None
    candidates = [r for r in installs.values() if r.get("host") and r.get("profile") and (host is None or r["host"] == host)]
    candidates.sort(key=lambda r: r["agent"] != agent)  # the agent's own install first, else any
    if candidates:
        record = candidates[0]
        return record["host"], record["profile"], record.get("cli"), record.get("config_file")
    if host:
        return host, default_profile(host), None, None
    raise UsageError("no workspace to ask: fmapi has no install yet.",
                     fix="Pass --profile NAME (a signed-in Databricks CLI profile), or run fmapi setup first.")


def models_report(host, profile, cli, config_file, installs, agent=None):
    """The ``fmapi models --json`` object: the workspace's endpoints, chat models first."""
    endpoints = serving_endpoints(host, oauth_token(host, profile, cli, config_file))
    configured = {}
    for record in installs.values():
        if record.get("host") == host:
            for key, _, name in model_settings(record):
                configured.setdefault(name, []).append("%s.%s" % (record["agent"], key))
    rows = []
    for info in endpoints:
        suits = agents_for(info)
        if agent and agent not in suits:
            continue
        rows.append({"name": info["name"], "task": info["task"], "state": info["state"], "ready": info["ready"],
                     "config_update": info["config_update"], "apis": info["apis"], "api_source": info["source"],
                     "agents": suits, "configured": configured.get(info["name"], [])})
    rows.sort(key=lambda row: (not row["apis"], not row["ready"], row["name"]))
    return {"version": 1, "host": host, "profile": profile, "agent": agent, "endpoints": rows}


def cmd_models(args):
    """List the workspace's serving endpoints an agent can use."""
    installs = discover_installs(load_registry())
    host, profile, cli, config_file = workspace_of(args, installs)
    report = models_report(host, profile, cli, config_file, installs, args.agent)
    if args.json:
        say(json.dumps(report, indent=2, sort_keys=True))
        return 0
    rows = report["endpoints"]
    if not rows:
        say("No serving endpoints%s on %s." % (" for " + AGENTS[args.agent].title if args.agent else "", host))
        return 0
    say("Serving endpoints on %s (profile %s); * = configured:" % (host, profile))
    width = max(len(row["name"]) for row in rows)
    for row in rows:
        mark = "*" if row["configured"] else " "
        agents = ",".join(row["agents"]) or ("chat" if row["apis"] else "-")
        say("%s %-*s  %-18s %-9s %s" % (mark, width, row["name"], row["task"] or "-", row["state"], agents))
    return 0


def _utc(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _left(seconds):
    seconds = max(0, int(seconds))
    if seconds >= 86400:
        return "%dd%02dh" % (seconds // 86400, seconds % 86400 // 3600)
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)


def setup_command(record):
    """The command that repairs or re-creates ``record``'s install."""
    words = ["fmapi", "setup"]
    if record["agent"] != "claude":
        words += ["--agent", record["agent"]]
    elif record.get("location") not in (None, "home"):
        words += ["--settings-location", record["location"] if record["location"] != "cwd" else os.path.dirname(record["dir"])]
    return " ".join(words)


def session_state(record, check):
    """(valid, words): the Databricks session that renews the install's token.

    Without ``check``, a local look only: the profile exists and points at the install's
    workspace (valid None: not asked). With ``check``, `databricks auth token` answers.
    """
    host, profile = record.get("host"), record.get("profile")
    if not host or not profile:
        return None, "unknown (fmapi has no record of the workspace)"
    config_file = record.get("config_file")
    found = profile_host(profile, config_file)
    if not found:
        return False, "profile '%s' does not exist in %s" % (profile, tilde(databricks_config_file(config_file)))
    if not same_workspace(found, host):
        return False, "profile '%s' points at %s, not %s" % (profile, found, host)
    if not check:
        return None, "profile '%s' present (not asked; --check asks the Databricks CLI)" % profile
    try:
        oauth_token(host, profile, record.get("cli"), config_file)
    except SessionExpired:
        return False, "expired or signed out"
    except FmapiError as exc:
        return False, exc.message
    return True, "valid"


def dead_cached_pat(record):
    """The install's cached PAT when the workspace refuses it (revoked or expired there),
    else None: PAT mode only, one token_alive check (GET scim/v2/Me with that PAT, 3 s);
    None too when there is no cached PAT or the workspace does not answer."""
    if record.get("auth") == "oauth" or not record.get("host"):
        return None
    agent = AGENTS[record["agent"]]
    cache = read_cache(os.path.join(agent.cache_dir(record), CACHE_NAME)) or {}
    token = usable_token(cache, record["host"], 0)
    if not token or cache.get("auth", "pat") != "pat":
        return None
    return token if token_alive(record["host"], token, Deadline(CHECK_DEADLINE)) is False else None


def dead_pat_fix(record):
    """What replaces an install's dead PAT: setup again, without questions."""
    return setup_command(record) + " --yes"


def install_status(record, check=False):
    """One install as ``fmapi status --json`` shows it (see README, "JSON output"). No token."""
    agent = AGENTS[record["agent"]]
    now = time.time()
    cache = read_cache(os.path.join(agent.cache_dir(record), CACHE_NAME)) or {}
    expiry = cache.get("expiry") if isinstance(cache.get("expiry"), (int, float)) else None
    try:
        spec_min = agent.token_spec(record).min_left  # what the helper itself asks of a cached token
    except (KeyError, TypeError, ValueError):
        spec_min = MIN_REMAINING
    usable = bool(usable_token(cache, record.get("host"), spec_min, now))
    helper = agent.helper_path(record)
    needs_helper = agent.uses_helper
    helper_ok = (not needs_helper) or os.access(helper, os.X_OK)
    valid, session_words = session_state(record, check)
    problems = []
    if not helper_ok:
        problems.append({"message": "the token helper %s is missing" % tilde(helper), "fix": "Run: " + setup_command(record)})
    elif needs_helper:
        broken = runtime_problem()
        if broken:
            helper_ok = False
            problems.append({"message": "the helper is broken: the runtime copy %s" % broken, "fix": "Run: " + setup_command(record)})
    if not record.get("host"):
        problems.append({"message": "fmapi does not know this install's workspace", "fix": "Run: " + setup_command(record)})
    elif valid is False and not usable:
        problems.append({"message": "no usable cached token and the Databricks session cannot renew it (%s)" % session_words,
                         "fix": "Run: " + login_command(record["host"], record.get("profile"), record.get("config_file"))})
    elif valid is False:
        problems.append({"message": "the Databricks session cannot renew the token when it runs out (%s)" % session_words,
                         "fix": "Run: " + login_command(record["host"], record.get("profile"), record.get("config_file"))})
    dead = bool(check and usable and dead_cached_pat(record))
    if dead:
        usable = False
        problems.append({"message": "the cached PAT is no longer valid in the workspace (revoked or expired there)",
                         "fix": "Run: %s (or fmapi reauth)" % dead_pat_fix(record)})
    can_serve = helper_ok and bool(record.get("host")) and (usable or valid is not False) and not dead
    return {
        "agent": agent.name, "title": agent.title, "dir": record["dir"],
        "settings": record.get("settings") or (agent.settings_path(record) if hasattr(agent, "settings_path") else None),
        "host": record.get("host"), "profile": record.get("profile"),
        "credential": record.get("auth") or "pat",
        "lifetime_days": record.get("lifetime_days"),
        "models": {key: name for key, _, name in model_settings(record)},
        "helper": {"path": helper if needs_helper else None, "present": helper_ok if needs_helper else None},
        "token": {"cached": expiry is not None, "expires": int(expiry) if expiry is not None else None,
                  "expires_at": _utc(expiry) if expiry is not None else None,
                  "seconds_left": int(expiry - now) if expiry is not None else None, "usable": usable},
        "session": {"checked": bool(check) and valid is not None, "valid": valid, "detail": session_words},
        "can_serve": can_serve,
        "problems": problems,
    }


def cmd_status(args):
    """Each install: where, which workspace, models, token and session; exit 1 if one cannot serve."""
    installs = discover_installs(load_registry())
    rows = [install_status(record, args.check) for record in installs.values()]
    ok = all(row["can_serve"] for row in rows)
    if args.json:
        say(json.dumps({"version": 1, "ok": ok, "installs": rows}, indent=2, sort_keys=True))
        return 0 if ok else 1
    if not rows:
        say("No fmapi installs. Set one up with: fmapi setup")
        return 0
    for number, row in enumerate(rows):
        if number:
            say()
        say("%s: %s" % (row["title"], tilde(row["settings"] or row["dir"])))
        say("  workspace: %s (profile %s)" % (row["host"] or "unknown", row["profile"] or "unknown"))
        say("  credential: " + credential_summary(installs[row["dir"]]))
        if row["models"]:
            say("  models: " + ", ".join("%s=%s" % item for item in row["models"].items()))
        if row["helper"]["path"]:
            say("  helper: %s%s" % (tilde(row["helper"]["path"]), "" if row["helper"]["present"] else " (missing)"))
        token = row["token"]
        if not token["cached"]:
            say("  token: none cached (the next agent start mints one)")
        elif token["seconds_left"] <= 0:
            say("  token: expired %s" % time.strftime("%Y-%m-%d %H:%M", time.localtime(token["expires"])))
        else:
            say("  token: valid until %s (%s left)" % (time.strftime("%Y-%m-%d %H:%M", time.localtime(token["expires"])),
                                                            _left(token["seconds_left"])))
        say("  session: %s" % row["session"]["detail"])
        for problem in row["problems"]:
            say("  problem: %s. %s" % (problem["message"], problem["fix"]))
    return 0 if ok else 1


# fmapi doctor: every check is one dict {"status", "check", "agent", "install", "message",
# "fix"}; status is PASS, WARN, FAIL or SKIP and fix is one line (None on PASS/SKIP).

# Environment variables that beat what fmapi configured: (name, agents it affects, why).
CREDENTIAL_ENV = (
    ("ANTHROPIC_API_KEY", ("claude",), "Claude Code uses it instead of fmapi's apiKeyHelper"),
    ("ANTHROPIC_AUTH_TOKEN", ("claude",), "Claude Code uses it instead of fmapi's apiKeyHelper"),
    ("ANTHROPIC_BASE_URL", ("claude",), "it may send Claude Code elsewhere than the settings' URL"),
    ("GEMINI_API_KEY", ("gemini",), "a bare `gemini` uses it instead of fmapi's ~/.gemini/.env"),
    ("GOOGLE_GEMINI_BASE_URL", ("gemini",), "a bare `gemini` sends requests there instead"),
    ("DATABRICKS_TOKEN", None, "the Databricks CLI may use it instead of the profile's sign-in"),
    ("DATABRICKS_HOST", None, "the Databricks CLI may use another workspace than the profile's"),
    ("DATABRICKS_CONFIG_PROFILE", None, "the Databricks CLI may use another profile"),
    ("DATABRICKS_AUTH_TYPE", None, "the Databricks CLI may sign in another way than the profile's"),
    ("DATABRICKS_CLIENT_ID", None, "the Databricks CLI may sign in as a service principal"),
)
# Claude Code's managed settings beat every other layer (spec/agents.md).
CLAUDE_MANAGED_SETTINGS = ("/etc/claude-code/managed-settings.json",
                           "/Library/Application Support/ClaudeCode/managed-settings.json")
CLAUDE_OVERRIDE_KEYS = ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_MODEL",
                        "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")
# How long each agent waits for its helper (seconds): Claude Code warns after 10 s; Codex's
# auth.timeout_ms is what fmapi writes.
HELPER_BUDGET = {"claude": 10.0, "codex": CODEX_AUTH_TIMEOUT_MS / 1000.0}
# Which variable gives each agent extra CA certificates: Node-based agents read
# NODE_EXTRA_CA_CERTS; Codex reads CODEX_CA_CERTIFICATE, else SSL_CERT_FILE (openai/codex,
# codex-rs/login: "The login flows honor CODEX_CA_CERTIFICATE and SSL_CERT_FILE").
AGENT_CA_ENV = {"claude": ("NODE_EXTRA_CA_CERTS",), "gemini": ("NODE_EXTRA_CA_CERTS",), "pi": ("NODE_EXTRA_CA_CERTS",),
                "copilot": ("NODE_EXTRA_CA_CERTS",),
                "codex": ("CODEX_CA_CERTIFICATE", "SSL_CERT_FILE")}
NETWORK_TIMEOUT = 5.0  # seconds for each of DNS, connect and TLS; HTTP gets twice that


class Doctor:
    """Collects checks and prints them as they come."""

    def __init__(self, quiet):
        self.checks = []
        self.quiet = quiet
        self.heading = None

    def section(self, title):
        self.heading = title

    def add(self, status, check, message, fix=None, record=None):
        item = {"status": status, "check": check, "agent": record["agent"] if record else None,
                "install": record["dir"] if record else None, "message": message,
                "fix": fix if status in ("WARN", "FAIL") else None}
        self.checks.append(item)
        if not self.quiet:
            if self.heading:
                say("\n" + self.heading)
                self.heading = None
            say("  %-4s  %-12s %s" % (status, check, message))
            if item["fix"]:
                say("        %s %s" % (" " * 12, "fix: " + item["fix"]))
        return item


def _version_text(version):
    return ".".join(map(str, version)) if version else "unknown version"


def _probe(host, stage_timeout=NETWORK_TIMEOUT):
    """Walk DNS, TCP connect and TLS to ``host`` separately: (stage reached, error words).

    Returns ("ok", None) when every stage passed; else the stage that failed ("dns",
    "connect", "tls") with what went wrong, a timeout named as such.
    """
    import socket
    import ssl
    import threading
    import urllib.parse

    parts = urllib.parse.urlsplit(host)
    hostname, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    answer = {}

    def resolve():
        try:
            answer["addresses"] = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            answer["error"] = exc

    worker = threading.Thread(target=resolve, daemon=True)
    worker.start()
    worker.join(stage_timeout)
    if worker.is_alive():
        return "dns", "DNS lookup of %s timed out after %g s" % (hostname, stage_timeout)
    if "error" in answer:
        return "dns", "DNS lookup of %s failed (%s)" % (hostname, getattr(answer["error"], "strerror", None) or answer["error"])
    try:
        sock = socket.create_connection((hostname, port), timeout=stage_timeout)
    except (socket.timeout, TimeoutError):
        return "connect", "connecting to %s:%d timed out after %g s" % (hostname, port, stage_timeout)
    except OSError as exc:
        return "connect", "connecting to %s:%d failed (%s)" % (hostname, port, exc.strerror or exc)
    try:
        if parts.scheme == "https":
            try:
                with ssl_context().wrap_socket(sock, server_hostname=hostname):
                    pass
            except (socket.timeout, TimeoutError):
                return "tls", "the TLS handshake with %s timed out after %g s" % (hostname, stage_timeout)
            except ssl.SSLCertVerificationError as exc:
                return "tls", "the workspace's TLS certificate is not trusted (%s)" % (exc.verify_message or exc)
            except (ssl.SSLError, OSError) as exc:
                return "tls", "the TLS handshake with %s failed (%s)" % (hostname, exc)
    finally:
        sock.close()
    return "ok", None


def _trusted_with(host, cafiles, system=True):
    """True when ``host``'s certificate verifies against the system store (as compiled in,
    without SSL_CERT_FILE) plus ``cafiles``; None when it cannot be told (no connection)."""
    import socket
    import ssl
    import urllib.parse

    parts = urllib.parse.urlsplit(host)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if system:
        paths = ssl.get_default_verify_paths()
        for cafile, capath in ((paths.openssl_cafile, None), (None, paths.openssl_capath)):
            try:
                context.load_verify_locations(cafile=cafile, capath=capath)
            except (OSError, ssl.SSLError, TypeError):
                pass
    for cafile in cafiles:
        try:
            context.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError):
            pass
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=NETWORK_TIMEOUT) as sock:
            with context.wrap_socket(sock, server_hostname=parts.hostname):
                return True
    except ssl.SSLCertVerificationError:
        return False
    except OSError:
        return None


def doctor_environment(doc, installs):
    agents = {r["agent"] for r in installs}
    found = False
    for name, affects, why in CREDENTIAL_ENV:
        if not os.environ.get(name):
            continue
        if affects is not None and not agents & set(affects):
            continue
        found = True
        hard = name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
        doc.add("FAIL" if hard else "WARN", "environment", "%s is set: %s." % (name, why),
                "unset %s (and remove it from your shell's start-up files)" % name)
    if not found:
        doc.add("PASS", "environment", "no credentials or Databricks settings in the environment beat fmapi's")


def doctor_cli(doc, installs):
    recorded = [r.get("cli") for r in installs if r.get("cli") and os.access(r["cli"], os.X_OK)]
    path = recorded[0] if recorded else find_command("databricks")
    if not path:
        doc.add("FAIL", "databricks", "the Databricks CLI is not installed or not on PATH.",
                "install it: %s" % (DATABRICKS_INSTALL_BREW if sys.platform == "darwin" else DATABRICKS_INSTALL_SCRIPT))
        return
    version = command_version(path)
    if version is None:
        doc.add("WARN", "databricks", "%s did not say its version." % tilde(path), "reinstall or upgrade the Databricks CLI")
    elif version < CLI_FORCE_REFRESH:
        oauth = any(r.get("auth") == "oauth" for r in installs)
        doc.add("FAIL" if oauth else "WARN", "databricks", "Databricks CLI %s at %s has no `auth token --force-refresh` (needs %s)."
                % (_version_text(version), tilde(path), _version_text(CLI_FORCE_REFRESH)),
                "upgrade it: brew upgrade databricks (or re-run its installer)")
    else:
        doc.add("PASS", "databricks", "Databricks CLI %s at %s" % (_version_text(version), tilde(path)))


def doctor_agent(doc, record):
    agent = AGENTS[record["agent"]]
    path = find_command(agent.command)
    if not path:
        installer = installer_for(agent.command, agent)[1]
        doc.add("FAIL", "agent", "%s (%s) is not installed or not on PATH." % (agent.title, agent.command),
                "install it: %s" % installer, record)
        return
    version = command_version(path)
    if agent.min_version and version is not None and version < agent.min_version:
        doc.add("FAIL", "agent", "%s %s is too old: fmapi needs %s or newer." % (agent.title, _version_text(version), _version_text(agent.min_version)),
                "upgrade it: npm install -g %s@latest" % agent.npm_package, record)
    elif version is None:
        doc.add("WARN", "agent", "%s at %s did not say its version." % (agent.title, tilde(path)),
                "reinstall it: %s" % installer_for(agent.command, agent)[1], record)
    else:
        doc.add("PASS", "agent", "%s %s at %s" % (agent.title, _version_text(version), tilde(path)), record=record)


def project_files(*relative):
    """Each ``relative`` path in the current directory and its parents, up to the project's
    root (the first folder holding .git) or /: where agents look for project settings."""
    found, directory = [], os.getcwd()
    while True:
        found += [os.path.join(directory, *parts.split("/")) for parts in relative]
        parent = os.path.dirname(directory)
        if parent == directory or os.path.exists(os.path.join(directory, ".git")):
            return found
        directory = parent


def _json_layers(paths, own, read):
    """[(path, key, value)] from ``read(settings dict)`` for each readable JSON file but ``own``."""
    found = []
    for path in paths:
        if os.path.realpath(path) == own or not os.path.isfile(path):
            continue
        try:
            settings = load_json_object(path)
        except (UnparsableFile, OSError):
            continue
        found += [(path, key, value) for key, value in read(settings)]
    return found


def settings_layers(record):
    """Settings that beat the install's for fmapi's keys: [(path, key, value, hard)].

    Claude Code: managed settings, then the project's .claude/settings(.local).json
    (apiKeyHelper, ANTHROPIC_* in env). Gemini CLI: a project's .gemini/settings.json
    (auth type, model) and .env files with a key or base URL that a bare `gemini` would
    read first. Codex: a project's .codex/config.toml choosing another model or provider
    (spec/agents.md). ``hard``: the agent will not use fmapi's credentials at all.
    """
    agent = record["agent"]
    own = os.path.realpath(record.get("settings") or os.path.join(record["dir"], "settings.json"))
    layers = []
    if agent == "claude":
        def claude(settings):
            env = settings.get("env") if isinstance(settings.get("env"), dict) else {}
            pairs = [("apiKeyHelper", settings["apiKeyHelper"])] if "apiKeyHelper" in settings else []
            return pairs + [("env." + key, env[key]) for key in CLAUDE_OVERRIDE_KEYS if key in env]
        paths = list(CLAUDE_MANAGED_SETTINGS) + project_files(".claude/settings.local.json", ".claude/settings.json")
        for path, key, value in _json_layers(paths, own, claude):
            layers.append((path, key, value, key in ("apiKeyHelper", "env.ANTHROPIC_BASE_URL") or key.endswith(("API_KEY", "AUTH_TOKEN"))))
    elif agent == "gemini":
        def gemini(settings):
            pairs = []
            for dotted in ("security.auth.selectedType", "model.name"):
                present, value = _json_get(settings, dotted)
                if present:
                    pairs.append((dotted, value))
            return pairs
        for path, key, value in _json_layers(project_files(".gemini/settings.json"), own, gemini):
            layers.append((path, key, value, key.startswith("security")))
        own_env = os.path.realpath(os.path.join(record["dir"], ".env"))
        for path in project_files(".gemini/.env", ".env"):  # Gemini CLI's own search order
            if os.path.realpath(path) == own_env:
                break  # fmapi's .env comes first from here on
            if not os.path.isfile(path):
                continue
            text = (read_bytes(path) or b"").decode("utf-8", "replace")
            for line in text.splitlines():
                name = line.strip().split("=", 1)[0].replace("export ", "").strip()
                if "=" in line and name in ("GEMINI_API_KEY", "GOOGLE_GEMINI_BASE_URL", "GOOGLE_API_KEY"):
                    layers.append((path, name, None, False))
    elif agent == "codex":
        for path in project_files(".codex/config.toml"):
            if os.path.realpath(path) == os.path.realpath(os.path.join(record["dir"], "config.toml")) or not os.path.isfile(path):
                continue
            text = (read_bytes(path) or b"").decode("utf-8", "replace")
            for key in ("model", "model_provider"):
                try:
                    found = toml_top_statement(text, key)
                except TomlSyntaxError:
                    found = None
                if found:
                    layers.append((path, key, toml_unquote(found["value"]), False))
    return layers


def doctor_config(doc, record):
    agent = AGENTS[record["agent"]]
    try:
        problems = agent.verify(record)
    except (FmapiError, OSError, ValueError) as exc:  # a check must not end the others
        problems = [("could not read %s's files: %s" % (agent.title, getattr(exc, "message", None) or exc),
                     "run: " + setup_command(record))]
    for problem, fix in problems:
        doc.add("FAIL", "config", problem, fix, record)
    if type(agent).verify is Agent.verify:
        doc.add("SKIP", "config", "fmapi does not check %s's files yet" % agent.title, record=record)
    elif not problems:
        doc.add("PASS", "config", "%s parses and carries fmapi's keys" % tilde(record.get("settings") or record["dir"]), record=record)
    layers = settings_layers(record)
    for path, key, value, hard in layers:
        shown = "" if value is None or key.endswith(("API_KEY", "AUTH_TOKEN")) else " = " + json.dumps(value)
        doc.add("FAIL" if hard else "WARN", "layers",
                "%s sets %s%s, which beats fmapi's %s." % (tilde(path), key, shown, tilde(record.get("settings") or record["dir"])),
                "remove %s from %s (or ask whoever manages it)" % (key, tilde(path)), record)
    if not layers:
        doc.add("PASS", "layers", "no project or managed settings override fmapi's keys", record=record)


def doctor_files(doc, record):
    """The helper (present, 0700, answering within the agent's budget) and the file modes."""
    import subprocess

    agent = AGENTS[record["agent"]]
    cache = os.path.join(agent.cache_dir(record), CACHE_NAME)
    try:
        mode = os.stat(cache).st_mode & 0o777
    except OSError:
        mode = None
    if mode is not None and mode & 0o077:
        doc.add("FAIL", "modes", "the token cache %s is mode %04o: others can read the token." % (tilde(cache), mode),
                "chmod 600 %s" % cache, record)
    elif mode is not None:
        doc.add("PASS", "modes", "token cache %s is 0600" % tilde(cache), record=record)
    if not agent.uses_helper:
        doc.add("SKIP", "helper", "%s has no helper: `fmapi %s` hands it a fresh token at start" % (agent.title, agent.name),
                record=record)
        return
    helper = agent.helper_path(record)
    if not os.path.exists(helper):
        doc.add("FAIL", "helper", "the token helper %s is missing." % tilde(helper), "run: " + setup_command(record), record)
        return
    mode = os.stat(helper).st_mode & 0o777
    if mode != 0o700:
        doc.add("FAIL" if mode & 0o022 or not mode & 0o100 else "WARN", "helper",
                "the token helper %s is mode %04o, not 0700." % (tilde(helper), mode), "chmod 700 %s" % helper, record)
        if not os.access(helper, os.X_OK):
            return
    budget = HELPER_BUDGET.get(agent.name, 10.0)
    started = time.monotonic()
    try:
        proc = subprocess.run([helper] if agent.name != "claude" else ["/bin/sh", "-c", agent.helper_command(record)],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=budget * 3)
    except subprocess.TimeoutExpired:
        doc.add("FAIL", "helper", "the token helper did not answer within %g s." % (budget * 3),
                "run `fmapi --verbose token%s` to see where it waits" % ("" if agent.name == "claude" else " --agent " + agent.name), record)
        return
    except OSError as exc:
        doc.add("FAIL", "helper", "the token helper cannot run (%s)." % (exc.strerror or exc), "run: " + setup_command(record), record)
        return
    elapsed = time.monotonic() - started
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or len(lines) != 1 or not lines[0].strip():
        reason = (proc.stderr.strip().splitlines() or ["exit status %d, %d lines of output" % (proc.returncode, len(lines))])[0]
        fix = next((line.strip() for line in proc.stderr.splitlines()[1:] if line.strip()), "run: " + setup_command(record))
        doc.add("FAIL", "helper", "the token helper failed: %s" % reason, fix, record)
    elif elapsed > budget:
        doc.add("WARN", "helper", "the token helper answered in %.1f s; %s waits %g s." % (elapsed, agent.title, budget),
                "check your network and the Databricks CLI (fmapi --verbose token)", record)
    else:
        doc.add("PASS", "helper", "%s answers in %.2f s (budget %g s), mode 0700" % (tilde(helper), elapsed, budget), record=record)


def doctor_session(doc, record):
    """The profile and its session; returns an OAuth access token, or None."""
    if not record.get("host"):
        doc.add("FAIL", "profile", "fmapi does not know this install's workspace.", "run: " + setup_command(record), record)
        return None
    valid, words = session_state(record, False)
    if valid is False:
        doc.add("FAIL", "profile", words + ".", "run: " + login_command(record["host"], record["profile"], record.get("config_file")), record)
        return None
    doc.add("PASS", "profile", "profile '%s' points at %s" % (record["profile"], record["host"]), record=record)
    try:
        bearer = oauth_token(record["host"], record["profile"], record.get("cli"), record.get("config_file"))
    except SessionExpired as exc:
        doc.add("FAIL", "session", "the Databricks session of profile '%s' has expired or does not exist." % record["profile"],
                "run: " + exc.fix.split(": ", 1)[-1], record)
        return None
    except FmapiError as exc:
        doc.add("FAIL", "session", exc.message, exc.fix, record)
        return None
    doc.add("PASS", "session", "the Databricks session of profile '%s' is valid" % record["profile"], record=record)
    return bearer


def doctor_workspace(doc, host, records):
    """DNS, connect, TLS (and each agent's trust of the certificate); True when reachable."""
    stage, words = _probe(host)
    record = records[0]
    if stage == "tls" and "not trusted" in words:
        doc.add("FAIL", "tls", words + ".", "point REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) at your company's CA certificates (PEM)", record)
    elif stage != "ok":
        doc.add("FAIL", stage, words + ".", "check the workspace URL (%s), your network, VPN and proxy" % host, record)
    else:
        doc.add("PASS", "network", "%s: DNS, connect%s in time" % (host, ", TLS" if host.startswith("https:") else ""), record=record)
    if not host.startswith("https:") or (stage not in ("ok", "tls")):
        return stage == "ok"
    for agent_name in sorted({r["agent"] for r in records}):
        names = AGENT_CA_ENV.get(agent_name, ())
        files = [os.environ[n] for n in names[:1] if os.environ.get(n)]
        if agent_name == "codex" and not files and os.environ.get("SSL_CERT_FILE"):
            files = [os.environ["SSL_CERT_FILE"]]
        trusted = _trusted_with(host, files)
        agent_record = next(r for r in records if r["agent"] == agent_name)
        title = AGENTS[agent_name].title
        if trusted is False:
            doc.add("FAIL", "tls", "%s will not trust the workspace's certificate." % title,
                    "export %s=/path/to/company-ca.pem" % names[0], agent_record)
        elif trusted:
            doc.add("PASS", "tls", "%s trusts the workspace's certificate%s" % (title, " (%s)" % names[0] if files else ""), record=agent_record)
    return stage == "ok"


def doctor_models(doc, record, endpoints):
    agent = AGENTS[record["agent"]]
    by_name = {e["name"]: e for e in endpoints}
    settings = model_settings(record)
    if not settings:
        doc.add("SKIP", "models", "fmapi has no record of this install's models", record=record)
    for key, label, name in settings:
        info = by_name.get(name)
        flag = "--model" if key == "model" else "--" + key
        if info is None:
            near = close_names(name, [e["name"] for e in endpoints if endpoint_suits(agent, e)])
            doc.add("FAIL", "models", "%s %s is not a serving endpoint of %s." % (label, name, record["host"]),
                    "run: %s %s %s%s" % (setup_command(record), flag, near[0] if near else "NAME",
                                          " (close: %s)" % ", ".join(near) if near else " (see: fmapi models)"), record)
        elif not endpoint_suits(agent, info):
            doc.add("FAIL", "models", "%s %s does not serve %s's API (%s)." % (label, name, agent.title, ", ".join(info["apis"]) or info["task"]),
                    "pick one from: fmapi models --agent %s" % agent.name, record)
        elif not info["ready"]:
            doc.add("FAIL", "models", "%s %s is %s (%s)." % (label, name, info["state"], info["config_update"] or "no update running"),
                    "wait for it, or pick a READY one: fmapi models --agent %s" % agent.name, record)
        else:
            doc.add("PASS", "models", "%s %s is a READY chat endpoint for %s" % (label, name, agent.title), record=record)


def cmd_doctor(args):
    """Check everything fmapi depends on; PASS/WARN/FAIL/SKIP each with a fix; exit 1 on FAIL."""
    installs = [r for r in discover_installs(load_registry()).values() if not args.agent or r["agent"] == args.agent]
    doc = Doctor(quiet=args.json)
    doc.section("System")
    doc.add("PASS" if sys.version_info >= MIN_PYTHON else "FAIL", "python",
            "Python %s at %s" % (sys.version.split()[0], sys.executable), "install Python %d.%d or newer" % MIN_PYTHON)
    doctor_cli(doc, installs)
    doctor_environment(doc, installs)
    if not installs:
        doc.add("SKIP", "installs", "no fmapi install%s to check" % (" for " + AGENTS[args.agent].title if args.agent else ""))
    workspaces = {}
    for record in installs:
        workspaces.setdefault(record.get("host"), []).append(record)
    reachable, endpoints = {}, {}
    for host, records in workspaces.items():
        if host:
            doc.section("Workspace %s" % host)
            reachable[host] = doctor_workspace(doc, host, records)
    for record in installs:
        agent = AGENTS[record["agent"]]
        doc.section("%s (%s)" % (agent.title, tilde(record.get("settings") or record["dir"])))
        doctor_agent(doc, record)
        doctor_config(doc, record)
        doctor_files(doc, record)
        bearer = doctor_session(doc, record)
        host = record.get("host")
        if record.get("auth") != "oauth" and reachable.get(host):
            if dead_cached_pat(record):
                doc.add("FAIL", "token", "the cached PAT is no longer valid in the workspace (revoked or expired there).",
                        "Run: " + dead_pat_fix(record), record)
            else:
                doc.add("PASS", "token", "the workspace accepts the cached PAT (or none is cached)", record=record)
        if bearer and reachable.get(host):
            if host not in endpoints:
                try:
                    endpoints[host] = serving_endpoints(host, bearer)
                except FmapiError as exc:
                    endpoints[host] = None
                    doc.add("FAIL", "http", exc.message, exc.fix, record)
            if endpoints[host] is not None:
                doctor_models(doc, record, endpoints[host])
        else:
            doc.add("SKIP", "models", "not checked: %s" % ("no valid session" if not bearer else "the workspace is unreachable"), record=record)
    counts = {status: sum(1 for c in doc.checks if c["status"] == status) for status in ("PASS", "WARN", "FAIL", "SKIP")}
    ok = counts["FAIL"] == 0
    if args.json:
        say(json.dumps({"version": 1, "ok": ok, "counts": counts, "checks": doc.checks}, indent=2, sort_keys=True))
    else:
        say("\n%d passed, %d warnings, %d failed, %d skipped." % (counts["PASS"], counts["WARN"], counts["FAIL"], counts["SKIP"]))
    return 0 if ok else 1


# --------------------------------------------------------------------------------------
# 18. Command line and main()
# --------------------------------------------------------------------------------------

DESCRIPTION = (
    "Set up coding agents (Claude Code, OpenAI Codex, Gemini CLI, GitHub Copilot CLI, OpenCode, Pi) to use models "
    "served by Databricks Foundation Model API, with short-lived tokens that renew by themselves."
)
EPILOG = """\
examples:
  fmapi                                   set up Claude Code, asking for each answer
  fmapi setup --yes --host https://my-workspace.cloud.databricks.com
  fmapi setup --agent codex               set up OpenAI Codex
  fmapi setup --agent gemini              set up Gemini CLI, then start it with: fmapi gemini
  fmapi setup --agent copilot             set up GitHub Copilot CLI, then start it with: fmapi copilot
  fmapi setup --agent opencode            set up OpenCode (a plugin runs its helper before every request)
  fmapi setup --agent pi                  set up Pi (its helper runs before every request)
  fmapi token                             print the current token of the ~/.claude install
  fmapi status                            list installs and their tokens
  fmapi doctor                            check everything, with a fix for each problem
  fmapi models                            the workspace's models the agents can use
  fmapi reauth                            sign in to Databricks again for every install
  fmapi --uninstall                       remove everything fmapi wrote

`fmapi help COMMAND` shows a command's options; `man fmapi` is the manual."""


def min_remaining_minutes(text):
    """--min-remaining: whole minutes, 1 to MAX_MIN_REMAINING."""
    import argparse

    try:
        minutes = int(text)
    except ValueError:
        minutes = 0
    if not 1 <= minutes <= MAX_MIN_REMAINING // 60:
        raise argparse.ArgumentTypeError("give whole minutes from 1 to %d, e.g. --min-remaining 15" % (MAX_MIN_REMAINING // 60))
    return minutes


def build_parser():
    """The whole command line (also the source of the man page)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [-h] [--version] [--uninstall] [COMMAND] [options]",
    )
    parser.add_argument("--version", action="version", version="%s %s" % (PROG, __version__))
    parser.add_argument("--uninstall", action="store_true",
                        help="same as `fmapi uninstall`; setup options given without a command mean `fmapi setup`")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    # prog=PROG: each command's usage line reads `fmapi setup [-h] ...`, not the top-level usage
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", prog=PROG)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    parser.command_parsers = {}
    add_parser = commands.add_parser

    def add_command(name, **kwargs):
        command = add_parser(name, parents=[common], **kwargs)
        parser.command_parsers[name] = command
        return command

    commands.add_parser = add_command

    def agent_option(p, what):
        p.add_argument("--agent", choices=sorted(AGENTS), default="claude",
                       help="which coding agent to %s (default: claude)" % what)

    setup = commands.add_parser(
        "setup", help="set up a coding agent against the workspace (the default command)",
        description="Install what is missing, sign in to Databricks, get a credential (a PAT, or the "
                    "CLI's OAuth access token with --auth oauth) and write the agent's "
                    "configuration. Flags answer the questions; with --yes or without a terminal, "
                    "nothing is asked and missing answers take their defaults (a re-run's defaults "
                    "are the existing install's values).")
    agent_option(setup, "set up")
    setup.add_argument("--host", metavar="URL", help="workspace URL, https://... (http only for 127.0.0.1/localhost/[::1])")
    setup.add_argument("--profile", metavar="NAME",
                       help="Databricks CLI profile: a browser-login profile of this workspace or a new name "
                            "(default: one you have for the workspace, else one named after it)")
    setup.add_argument("--model", metavar="M", help="primary model (serving endpoint name)")
    setup.add_argument("--opus", metavar="M", help="Claude Code: Opus model (default databricks-claude-opus-4-6)")
    setup.add_argument("--sonnet", metavar="M", help="Claude Code: Sonnet model (default databricks-claude-sonnet-4-6)")
    setup.add_argument("--haiku", metavar="M", help="Claude Code: Haiku model (default databricks-claude-haiku-4-5)")
    setup.add_argument("--settings-location", metavar="home|cwd|PATH",
                       help="Claude Code: where .claude/settings.json goes: home (~/.claude), cwd (./.claude) or PATH/.claude")
    setup.add_argument("--auth", choices=AUTH_MODES, metavar="pat|oauth",
                       help="what the agents get: a personal access token (pat: the default for a new install) or "
                            "the Databricks CLI's OAuth access token (oauth: no PAT; 1-hour tokens); re-runs keep "
                            "the install's, switching from pat revokes its PAT")
    setup.add_argument("--pat-lifetime", type=int, choices=PAT_LIFETIMES, metavar="1|3|5|7",
                       help="PAT mode: lifetime of each personal access token, in days (default 1; lowered to the "
                            "workspace's maximum)")
    setup.add_argument("--min-remaining", type=min_remaining_minutes, metavar="MINUTES",
                       help="safety margin: a cached token is handed out only if it outlives the agent's own "
                            "token cache by this many minutes (default %d, at most %d)"
                            % (MIN_REMAINING // 60, MAX_MIN_REMAINING // 60))
    setup.add_argument("--write-env", action=argparse.BooleanOptionalAction, default=None,
                       help="Gemini CLI: also keep the token in ~/.gemini/.env so a bare `gemini` works "
                            "(kept on re-runs; --no-write-env takes it out again)")
    setup.add_argument("--skip-model-check", action="store_true",
                       help="keep the models as given even when the workspace does not list them as "
                            "serving endpoints for the agent")
    setup.add_argument("--link", action=argparse.BooleanOptionalAction, default=None,
                       help="when `fmapi` is not on PATH, put a small fmapi launcher in ~/.local/bin (or the first "
                            "PATH folder in your home); --no-link never does (default: ask at a terminal)")
    setup.add_argument("--no-install", action="store_true",
                       help="never install a missing agent or Databricks CLI: say what to install and stop")
    setup.add_argument("-y", "--yes", action="store_true", help="ask nothing; take defaults for what is missing")

    token = commands.add_parser(
        "token", help="print a valid token for an install (what the agents' helper does)",
        description="Print a valid token for the install (its PAT, or its OAuth access token in OAuth mode) on "
                    "stdout and nothing else, renewing it when "
                    "needed. On failure the reason and the fix go to stderr and the exit status is non-zero.")
    agent_option(token, "serve")
    token.add_argument("--settings-location", metavar="home|cwd|PATH", help="Claude Code: which install (default home)")

    uninstall = commands.add_parser(
        "uninstall", help="remove everything fmapi wrote (same as --uninstall)",
        description="Find every install (settings files, helpers, caches, old shell wrappers), list "
                    "them, and remove fmapi's part after you confirm; the rest of your files stays.")
    uninstall.add_argument("-y", "--yes", action="store_true", help="remove without asking")
    revoke = uninstall.add_mutually_exclusive_group()
    revoke.add_argument("--revoke", dest="revoke", action="store_true", default=None,
                        help="also revoke every FMAPI PAT of the profiles found (also other machines' ones)")
    revoke.add_argument("--no-revoke", dest="revoke", action="store_false", help="do not revoke any PAT")

    gemini = commands.add_parser(
        "gemini", help="start Gemini CLI with a fresh token (arguments go to gemini)",
        description="PAT mode: make sure the Gemini install's token outlives a working session, then "
                    "replace this process with `gemini ARGS...` and the environment it needs. OAuth "
                    "mode (1-hour tokens): run `gemini ARGS...` behind a relay that listens on 127.0.0.1 "
                    "only (a port picked for this launch) and accepts only the random key Gemini CLI is "
                    "started with; it forwards each request to the workspace with the OAuth token "
                    "current then, so a session outlives its token. The relay ends with gemini, whose "
                    "exit status fmapi returns.")
    gemini.add_argument("args", nargs=argparse.REMAINDER, help="arguments for gemini")

    copilot = commands.add_parser(
        "copilot", help="start GitHub Copilot CLI on the workspace (arguments go to copilot)",
        description="Check the Copilot install's token (signing in again on a terminal), then replace this "
                    "process with `copilot ARGS...` and the provider environment, whose key command is "
                    "fmapi's helper.")
    copilot.add_argument("args", nargs=argparse.REMAINDER, help="arguments for copilot")

    reauth = commands.add_parser(
        "reauth", help="sign in to Databricks again for the installs, then check each serves a token",
        description="Run `databricks auth login --host H --profile P` (your browser opens) for the profile of "
                    "each install (or only --agent's), then prove each install's helper serves a token: one "
                    "line per install.")
    reauth.add_argument("--agent", choices=sorted(AGENTS), help="only this agent's installs (default: all)")

    status = commands.add_parser(
        "status", help="list installs and the state of their tokens",
        description="One block per install: the agent, where its files are, workspace, profile, "
                    "credential, models, the cached token's expiry and whether the Databricks session "
                    "can renew it, and what to run for each problem. Exit status 1 when an install "
                    "cannot serve a token.")
    status.add_argument("--check", action="store_true",
                        help="also ask the Databricks CLI whether each session is valid (default: a local look)")
    status.add_argument("--json", action="store_true", help="print one JSON object (see README, \"JSON output\"); never a token")

    models = commands.add_parser(
        "models", help="list the workspace's serving endpoints the agents can use",
        description="List the workspace's serving endpoints: name, task, state and which agents they "
                    "suit (from the API types the workspace lists for each endpoint, else from its "
                    "name); chat models first, the ones an install uses marked with *.")
    models.add_argument("--agent", choices=sorted(AGENTS), help="only the endpoints this agent can use")
    models.add_argument("--profile", metavar="NAME", help="Databricks CLI profile to ask (default: the installs' one)")
    models.add_argument("--host", metavar="URL", help="workspace URL (default: the installs' or the profile's)")
    models.add_argument("--json", action="store_true", help="print one JSON object (see README, \"JSON output\")")

    doctor = commands.add_parser(
        "doctor", help="check the setup and say how to fix each problem",
        description="Check Python, the Databricks CLI and each agent (versions), credentials in the "
                    "environment and settings files that beat fmapi's, each configuration file, helper "
                    "(present, 0700, answering in time) and file mode, the profile and its session, the "
                    "workspace (DNS, connect, TLS, HTTP), whether each agent trusts its certificate, and "
                    "each configured model. Prints PASS, WARN, FAIL or SKIP with a one-line fix; exit "
                    "status 1 when a check failed.")
    doctor.add_argument("--agent", choices=sorted(AGENTS), help="check only this agent's installs")
    doctor.add_argument("--json", action="store_true", help="print one JSON object (see README, \"JSON output\")")

    helper = commands.add_parser("help", help="show the help of fmapi or of one command",
                                 description="Show fmapi's help, or a command's: fmapi help setup.")
    helper.add_argument("topic", nargs="?", metavar="COMMAND", help="the command to explain")
    parser._manpage = man_sections()  # read by argparse-manpage (./build.sh)
    return parser


VERBOSE_HELP = "log each Databricks CLI call and HTTP request (never a token) on stderr"

# The man page's extra sections (./build.sh hands the parser to argparse-manpage, which
# prints parser._manpage after the options): kept here, beside the parser, so they change
# with it. Each is (heading, [(term, text)]) or (heading, text).
MAN_SECTIONS = (
    ("EXAMPLES", [
        ("fmapi", "Set up Claude Code, asking for each answer (workspace, profile, models, settings location)."),
        ("fmapi setup --yes --host https://my-workspace.cloud.databricks.com",
         "The same without questions: every other answer takes its default or the previous install's value."),
        ("fmapi setup --agent codex --model databricks-gpt-5-2", "Set up OpenAI Codex with that model."),
        ("fmapi setup --agent gemini && fmapi gemini", "Set up Gemini CLI, then start it with a fresh token."),
        ("fmapi status --check", "Every install, its models and token, and whether its Databricks session still renews it."),
        ("fmapi doctor --agent claude", "Check Claude Code's install and say how to fix each problem."),
        ("fmapi models --agent codex --json", "The workspace's endpoints that Codex can use, as JSON."),
        ("fmapi --verbose token", "Print the token, logging each CLI call and HTTP request on stderr."),
        ("fmapi --uninstall --yes --revoke", "Remove everything fmapi wrote and revoke its PATs."),
    ]),
    ("EXIT STATUS", [
        ("0", "Success; for status and doctor: every install can serve a token and no check failed."),
        ("1", "A failure fmapi explains on stderr with what to do; for status, an install that cannot serve "
              "a token; for doctor, a check that failed."),
        ("2", "Bad command-line input, an unknown command, or (with --yes) a model the workspace does not serve."),
        ("130", "Interrupted (Ctrl-C); files are as they were or complete."),
        ("141", "The reader of fmapi's output went away (a closed pipe, as with SIGPIPE)."),
    ]),
    ("FILES", [
        ("~/.claude/settings.json", "Claude Code's settings: apiKeyHelper and the env table (CLAUDE_CONFIG_DIR moves ~/.claude)."),
        ("~/.codex/config.toml", "Codex's configuration: fmapi's provider table and the keys that select it (CODEX_HOME)."),
        ("~/.gemini/settings.json, ~/.gemini/.env", "Gemini CLI's settings and, with setup --write-env, its environment (GEMINI_CLI_HOME)."),
        ("fmapi-key-helper.sh", "Beside each agent's settings: the 0700 helper the agent runs for a token."),
        (".fmapi-pat-cache", "Beside each agent's settings: the current PAT and its expiry, mode 0600."),
        ("~/.local/share/fmapi/installs.json", "The record of every install; runtime/ holds the copy of fmapi the helpers run (XDG_DATA_HOME)."),
        ("~/.databrickscfg", "The Databricks CLI's profiles (DATABRICKS_CONFIG_FILE)."),
    ]),
    ("ENVIRONMENT", [
        ("CLAUDE_CONFIG_DIR", "Where Claude Code keeps its settings instead of ~/.claude."),
        ("CODEX_HOME", "Where Codex keeps config.toml instead of ~/.codex."),
        ("GEMINI_CLI_HOME", "The home directory Gemini CLI uses for ~/.gemini."),
        ("DATABRICKS_CONFIG_FILE", "The Databricks CLI's profile file instead of ~/.databrickscfg."),
        ("XDG_DATA_HOME", "Where fmapi keeps its install record (default ~/.local/share)."),
        ("REQUESTS_CA_BUNDLE, SSL_CERT_FILE", "CA certificates fmapi trusts for the workspace (a TLS-inspecting proxy's). "
         "Node-based agents need NODE_EXTRA_CA_CERTS, Codex CODEX_CA_CERTIFICATE or SSL_CERT_FILE; fmapi doctor checks each."),
        ("ANTHROPIC_API_KEY, ANTHROPIC_AUTH_TOKEN", "Beat fmapi's helper in Claude Code: fmapi doctor reports them."),
        ("DATABRICKS_TOKEN, DATABRICKS_HOST, DATABRICKS_CONFIG_PROFILE", "Change what the Databricks CLI does: fmapi doctor reports them."),
        ("SHIV_ROOT", "Where the .pyz extracts itself (default ~/.shiv, or a private temporary folder when HOME is read-only)."),
        ("NO_COLOR", "When set, fmapi prints no colour."),
        ("BROWSER", "The Databricks CLI's sign-in opens this browser; BROWSER=none prints the URL instead."),
    ]),
)


def _roff(text):
    return text.replace("\\", "\\e").replace("-", "\\-").replace("'", "\\(aq")


def man_sections():
    """MAN_SECTIONS as argparse-manpage's extra sections (roff)."""
    sections = []
    for heading, items in MAN_SECTIONS:
        lines = []
        for term, text in items:
            lines += [".TP", "\\fB%s\\fR" % _roff(term), _roff(text)]
        sections.append({"heading": heading, "content": "\n".join(lines)})
    return sections
COMMAND_NAMES = ("setup", "token", "uninstall", "gemini", "copilot", "status", "doctor", "models", "help",
                 "reauth")
LAUNCHERS = {"gemini": "run_gemini", "copilot": "run_copilot"}  # `fmapi AGENT ARGS...`: every argument is the agent's
GLOBAL_FLAGS = ("--verbose",)


def normalize_argv(argv):
    """(argv for the parser, verbose): `fmapi` and `fmapi --host ...` mean setup,
    `fmapi --uninstall ...` means uninstall, and a leading --verbose applies to any command.

    Raises UsageError for a word that is no command, naming the commands and the closest.
    """
    argv = list(argv)
    verbose = False
    while argv and argv[0] in GLOBAL_FLAGS:
        verbose = argv.pop(0) == "--verbose" or verbose
    if argv and argv[0] in COMMAND_NAMES:
        return argv, verbose
    if "--uninstall" in argv:
        return ["uninstall"] + [a for a in argv if a != "--uninstall"], verbose
    if any(a in ("-h", "--help", "--version") for a in argv[:1]):
        return argv, verbose
    if argv and not argv[0].startswith("-"):
        near = close_names(argv[0], COMMAND_NAMES, 1)
        raise UsageError("'%s' is not a command. Commands: %s." % (argv[0], ", ".join(COMMAND_NAMES)),
                         fix=("Did you mean: fmapi %s? " % near[0] if near else "") + "See: fmapi help")
    return ["setup"] + argv, verbose


def cmd_help(args):
    parser = build_parser()
    if not args.topic:
        parser.print_help()
        return 0
    if args.topic not in parser.command_parsers:
        near = close_names(args.topic, parser.command_parsers, 1)
        raise UsageError("no command '%s'. Commands: %s." % (args.topic, ", ".join(sorted(parser.command_parsers))),
                         fix="Did you mean: fmapi help %s" % near[0] if near else "See: fmapi help")
    parser.command_parsers[args.topic].print_help()
    return 0


def main(argv=None):
    if sys.version_info < MIN_PYTHON:
        sys.stderr.write("fmapi: needs Python %d.%d or newer (this is %s).\n" % (MIN_PYTHON + (sys.version.split()[0],)))
        return 1
    import signal

    global INHERITED_UMASK, VERBOSE
    INHERITED_UMASK = os.umask(0o077)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        argv, VERBOSE = normalize_argv(sys.argv[1:] if argv is None else argv)
        if argv and argv[0] in LAUNCHERS and argv[0] in AGENTS:
            handler = globals()[LAUNCHERS[argv[0]]]
            args = argv[1:]
        else:
            args = build_parser().parse_args(argv)
            VERBOSE = VERBOSE or bool(getattr(args, "verbose", False))
            handler = COMMANDS[args.command]
        return handler(args)
    except BrokenPipeError:  # the reader went away (`fmapi status | head -1`): end quietly, as on SIGPIPE
        quiet_stdout()
        return 128 + signal.SIGPIPE
    except FmapiError as exc:
        print(error_text(exc.render()), file=sys.stderr, flush=True)
        return exc.code
    except KeyboardInterrupt:
        print("\n" + error_text("fmapi: interrupted; files are as they were or complete, never half-written."),
              file=sys.stderr, flush=True)
        return 130
    except OSError as exc:  # a file fmapi must write or read: one line, no traceback
        print(error_text(FmapiError(*os_error_text(exc)).render()), file=sys.stderr, flush=True)
        return 1


COMMANDS = {"setup": cmd_setup, "token": cmd_token, "uninstall": cmd_uninstall, "status": cmd_status,
            "doctor": cmd_doctor, "models": cmd_models, "help": cmd_help, "reauth": cmd_reauth}


if __name__ == "__main__":
    sys.exit(main())
