"""Issue 17: nothing fmapi writes can be hijacked or half-written, and no input ends in a
traceback or a lost value. Each input of the issue is a test here: a nearly full disk (a small
tmpfs, RLIMIT_FSIZE), directories other users can write to (chowned to uid 65534, fmapi run as
root and as another uid), planted symlinks and caches, wrong-typed keys, a killed uninstall, and
long or credentialed workspace hosts."""

import json
import marshal
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import pytest

from conftest import FMAPI, TESTS_DIR, age_cache, cache_of, make_stub, run_fmapi

sys.path.insert(0, str(TESTS_DIR.parent))
import fmapi  # noqa: E402

OTHER_UID = 65534  # nobody: "another user"
CLAUDE_STUB = "#!/bin/sh\necho '2.1.331 (Claude Code)'\n"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another uid")


@pytest.fixture
def claude_stub(home_bin):
    return make_stub(home_bin, "claude", CLAUDE_STUB)


@pytest.fixture
def setup(home, workspace, logged_in, claude_stub):
    def run(*extra, check=True, **kw):
        proc = run_fmapi("setup", "--yes", "--host", workspace.url, "--profile", logged_in, *extra, **kw)
        if check:
            assert proc.returncode == 0, proc.stderr
        return proc
    return run


def data_home(home):
    return home / ".local" / "share" / "fmapi"


def runtime_pyc(home):
    pycache = data_home(home) / "runtime" / "__pycache__"
    found = list(pycache.glob("fmapi.*.pyc"))
    assert len(found) == 1, found
    return found[0]


def helper(home):
    return home / ".claude" / "fmapi-key-helper.sh"


def run_helper(path, **kw):
    return subprocess.run(["/bin/sh", "-c", str(path)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, **kw)


def one_line_error(stderr):
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert 1 <= len(lines) <= 2, stderr  # the error, and at most one line saying what to do
    return stderr


@lru_cache(maxsize=None)
def unshare_mount_works():
    try:
        r = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
                           capture_output=True, timeout=30)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# --- a "successful" setup never leaves a broken helper -----------------------------------

def test_nearly_full_disk_fails_setup_naming_the_file_and_free_space(home, workspace, logged_in, claude_stub):
    """A small tmpfs holds the runtime source but not its compiled copy: setup must not say Done."""
    if not unshare_mount_works():
        pytest.skip("no `unshare -rm` with tmpfs mounts here")
    data = data_home(home)
    data.mkdir(parents=True)
    # room for the runtime source and a little more, never for its compiled copy as well
    size_k = (FMAPI.stat().st_size + 32 * 1024) // 4096 * 4
    script = ('mount -t tmpfs -o size=%dk,mode=0700 tmpfs "$1" && shift && "$@"; rc=$?; '
              'echo "rc=$rc"; ls -R "$0" >&2; exit 0') % size_k
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script, str(data), str(data), sys.executable, str(FMAPI),
         "setup", "--yes", "--host", workspace.url, "--profile", logged_in],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert "rc=1" in proc.stdout, proc.stdout + proc.stderr
    assert "Done" not in proc.stdout
    err = proc.stderr
    assert "Traceback" not in err and "read-only" not in err
    assert "fmapi.cpython" in err and "free there" in err and "No space left" in err
    # Nothing was minted and the agent was not pointed at a helper.
    assert not workspace.pat_values()
    assert not helper(home).exists()
    assert not (home / ".claude" / "settings.json").exists()


def test_file_size_limit_truncating_the_compiled_copy_is_an_error_not_done(home, workspace, setup):
    """RLIMIT_FSIZE: the byte-compiler's own write would stop short without an error."""
    setup()
    pyc = runtime_pyc(home)
    pyc.unlink()

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    proc = subprocess.run(
        [sys.executable, str(FMAPI), "setup", "--yes", "--host", workspace.url, "--profile", "fake-profile"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, preexec_fn=limit)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Done" not in proc.stdout
    one_line_error(proc.stderr)
    assert "fmapi.cpython" in proc.stderr and "free there" in proc.stderr and "read-only" not in proc.stderr
    assert not pyc.exists()  # never a short file
    assert list(pyc.parent.glob("*.fmapi-tmp")) == []
    # The helper still works (from the source) and status does not claim all is well.
    assert run_helper(helper(home)).stdout.strip() == cache_of(home / ".claude")["token"]


def test_damaged_compiled_copy_falls_back_to_the_source_and_is_repaired(home, workspace, setup):
    setup()
    pyc = runtime_pyc(home)
    good = pyc.read_bytes()
    pyc.write_bytes(good[:100])  # what a full disk left: a header and the start of the code

    status = run_fmapi("status")
    assert status.returncode == 1 and "broken" in status.stdout and "fmapi setup" in status.stdout
    token = run_fmapi("token")
    assert token.stdout.strip() == cache_of(home / ".claude")["token"]
    assert "broken" in token.stderr and "fmapi setup" in token.stderr

    proc = run_helper(helper(home))
    assert proc.returncode == 0 and proc.stdout.strip() == cache_of(home / ".claude")["token"]
    assert "Traceback" not in proc.stderr and "marshal" not in proc.stderr
    repaired = pyc.read_bytes()  # the helper rewrote the compiled copy (marshal output varies by a few bits)
    assert repaired[:16] == good[:16] and len(repaired) == len(good)
    marshal.loads(repaired[16:])
    assert run_fmapi("status").returncode == 0
    assert run_helper(helper(home)).stderr == ""


def test_damaged_compiled_copy_that_cannot_be_repaired_says_what_to_run(home, workspace, setup):
    setup()
    pyc = runtime_pyc(home)
    pyc.write_bytes(pyc.read_bytes()[:100])

    def limit():  # the disk is still full: the repair cannot write
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = run_helper(helper(home), preexec_fn=limit)
    assert proc.returncode == 0 and proc.stdout.strip() == cache_of(home / ".claude")["token"]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "run: fmapi setup" in proc.stderr and "EOFError" in proc.stderr


def test_missing_runtime_source_is_one_line(home, workspace, setup):
    setup()
    shutil.rmtree(data_home(home) / "runtime")
    proc = run_helper(helper(home))
    assert proc.returncode == 1 and proc.stdout == ""
    one_line_error(proc.stderr)
    assert "fmapi setup" in proc.stderr


# --- places other users can write to --------------------------------------------------------

def nothing_written(home, workspace):
    assert not workspace.pat_values()
    assert not data_home(home).exists()


@as_root
def test_world_writable_claude_dir_of_another_user_is_refused(home, workspace, setup):
    d = home / ".claude"
    d.mkdir()
    d.chmod(0o777)
    os.chown(d, OTHER_UID, OTHER_UID)
    proc = setup(check=False)
    assert proc.returncode == 1
    one_line_error(proc.stderr)
    assert "refusing" in proc.stderr and "uid %d" % OTHER_UID in proc.stderr
    assert os.listdir(d) == []
    nothing_written(home, workspace)


def test_world_writable_claude_dir_of_ones_own_is_refused(home, workspace, setup):
    d = home / ".claude"
    d.mkdir()
    d.chmod(0o777)
    proc = setup(check=False)
    assert proc.returncode == 1 and "other users can write" in proc.stderr
    assert os.listdir(d) == []
    nothing_written(home, workspace)


@as_root
def test_symlink_to_another_users_0777_dir_is_refused(home, workspace, setup, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    os.chown(shared, OTHER_UID, OTHER_UID)
    (home / ".claude").symlink_to(shared)
    proc = setup(check=False)
    assert proc.returncode == 1 and "refusing" in proc.stderr
    assert os.listdir(shared) == []
    nothing_written(home, workspace)


@as_root
def test_settings_location_another_user_prepared_is_refused(home, workspace, setup, tmp_path):
    prepared = tmp_path / "x"
    (prepared / ".claude").mkdir(parents=True)
    os.chown(prepared, OTHER_UID, OTHER_UID)
    os.chown(prepared / ".claude", OTHER_UID, OTHER_UID)
    (prepared / ".claude").chmod(0o755)
    proc = setup("--settings-location", str(prepared), check=False)
    assert proc.returncode == 1 and "refusing" in proc.stderr
    assert os.listdir(prepared / ".claude") == []
    nothing_written(home, workspace)


SYSTEM_PYTHON = "/usr/bin/python3"  # one an ordinary user may run (the test's own may live in /root)


@as_root
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="no system python3 for another uid")
def test_refused_also_when_run_as_an_ordinary_user(tmp_path, claude_stub, home_bin):
    """fmapi run as uid 1000 (not root): ~/.claude links to a 0777 directory of uid 65534."""
    base = Path(tempfile.mkdtemp(prefix="fmapi-uid-"))
    try:
        base.chmod(0o755)
        user_home = base / "home"
        user_home.mkdir()
        shared = base / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        os.chown(shared, OTHER_UID, OTHER_UID)
        (user_home / ".claude").symlink_to(shared)
        os.lchown(user_home / ".claude", 1000, 1000)
        os.chown(user_home, 1000, 1000)
        env = {"HOME": str(user_home), "PATH": "%s:/usr/bin:/bin" % home_bin}
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
            env[name] = str(user_home / name.lower())
        proc = subprocess.run(
            [SYSTEM_PYTHON, str(FMAPI), "setup", "--yes", "--host", "https://x.cloud.databricks.com",
             "--profile", "p"], capture_output=True, text=True, timeout=60, env=env,
            stdin=subprocess.DEVNULL, preexec_fn=lambda: (os.setgid(1000), os.setuid(1000)))
        assert proc.returncode == 1, proc.stdout + proc.stderr
        one_line_error(proc.stderr)
        assert "refusing" in proc.stderr and "uid %d" % OTHER_UID in proc.stderr
        assert os.listdir(shared) == []
        assert sorted(os.listdir(user_home)) == [".claude"]
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_planted_lock_symlink_is_not_followed(home, workspace, setup, tmp_path):
    setup()
    d = home / ".claude"
    victim = tmp_path / "victim"
    (d / ".fmapi-pat-cache.lock").unlink(missing_ok=True)
    (d / ".fmapi-pat-cache.lock").symlink_to(victim)
    age_cache(d, 30)  # forces the slow path, which takes the lock
    proc = run_helper(helper(home))
    assert not victim.exists()
    assert "Traceback" not in proc.stderr and "symbolic link" in proc.stderr
    # It still hands out the cached PAT, which has a few seconds left? No: 30 s is under the margin.
    assert proc.returncode != 0 and proc.stdout == ""


@pytest.mark.parametrize("plant", ["mode-0644", "symlink"] + (["other-owner"] if os.geteuid() == 0 else []))
def test_planted_cache_is_never_served(home, workspace, setup, tmp_path, plant):
    setup()
    d = home / ".claude"
    cache = d / ".fmapi-pat-cache"
    data = json.loads(cache.read_text())
    data["token"] = "dapi-planted"
    text = json.dumps(data, indent=2) + "\n"
    cache.unlink()
    if plant == "symlink":
        elsewhere = tmp_path / "elsewhere"
        elsewhere.write_text(text)
        elsewhere.chmod(0o600)
        cache.symlink_to(elsewhere)
    else:
        cache.write_text(text)
        cache.chmod(0o644 if plant == "mode-0644" else 0o600)
        if plant == "other-owner":
            os.chown(cache, OTHER_UID, OTHER_UID)
    proc = run_helper(helper(home))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() != "dapi-planted"
    assert proc.stdout.strip() in workspace.pat_values()
    assert run_fmapi("token").stdout.strip() == proc.stdout.strip()


@as_root
def test_settings_symlink_to_another_users_file_is_not_followed(home, workspace, setup, tmp_path):
    target = tmp_path / "theirs.json"
    target.write_text('{"theme": "dark"}\n')
    target.chmod(0o644)
    os.chown(target, OTHER_UID, OTHER_UID)
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").symlink_to(target)
    proc = setup(check=False)
    assert proc.returncode == 1 and "another user" in proc.stderr
    one_line_error(proc.stderr)
    assert target.read_text() == '{"theme": "dark"}\n' and (target.stat().st_mode & 0o777) == 0o644
    nothing_written(home, workspace)


@as_root
def test_gemini_env_symlink_to_another_users_file_is_not_followed(home, workspace, logged_in, home_bin, tmp_path):
    make_stub(home_bin, "gemini", "#!/bin/sh\necho 0.61.0\n")
    target = tmp_path / "their.env"
    target.write_text("THEIRS=1\n")
    target.chmod(0o644)
    os.chown(target, OTHER_UID, OTHER_UID)
    (home / ".gemini").mkdir()
    (home / ".gemini" / ".env").symlink_to(target)
    proc = run_fmapi("setup", "--agent", "gemini", "--yes", "--write-env", "--host", workspace.url, "--profile", logged_in)
    assert proc.returncode == 1 and "another user" in proc.stderr
    one_line_error(proc.stderr)
    assert target.read_text() == "THEIRS=1\n"
    assert not workspace.pat_values()


def test_settings_symlink_to_ones_own_file_keeps_working(home, workspace, setup, tmp_path):
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "claude.json").write_text('{"theme": "dark"}\n')
    (home / ".claude").mkdir()
    (home / ".claude" / "settings.json").symlink_to(dotfiles / "claude.json")
    setup()
    assert (home / ".claude" / "settings.json").is_symlink()
    merged = json.loads((dotfiles / "claude.json").read_text())
    assert merged["theme"] == "dark" and "fmapi-key-helper.sh" in merged["apiKeyHelper"]


def test_check_private_dir_allows_the_users_own_and_roots_sticky_tmp(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    fmapi.check_private_dir(str(mine / "not-yet" / ".claude"))
    fmapi.check_private_dir(str(mine))
    missing_under_tmp = Path(tempfile.gettempdir()) / ("fmapi-missing-%d" % os.getpid()) / ".claude"
    if os.stat(tempfile.gettempdir()).st_mode & 0o1002 == 0o1002:  # sticky, world-writable /tmp
        fmapi.check_private_dir(str(missing_under_tmp))  # HOME=/tmp in a container: created 0700, checked again
        with pytest.raises(fmapi.FmapiError, match="other users can write"):
            fmapi.check_private_dir(tempfile.gettempdir())  # never /tmp itself
    group = tmp_path / "group"
    group.mkdir()
    group.chmod(0o770)
    os.chown(group, os.geteuid(), 4242)  # a group that is not the user's own
    with pytest.raises(fmapi.FmapiError, match="group"):
        fmapi.check_private_dir(str(group))


# --- values never silently lost ---------------------------------------------------------------

@pytest.mark.parametrize("settings", ['{"env": ["FOO=bar"]}\n', '{"env": "FOO=bar", "theme": "dark"}\n',
                                      '{"apiKeyHelper": ["my-helper"]}\n'])
def test_wrong_typed_known_key_stops_setup_and_keeps_the_file(home, workspace, setup, settings):
    d = home / ".claude"
    d.mkdir()
    (d / "settings.json").write_text(settings)
    proc = setup(check=False)
    assert proc.returncode == 1
    one_line_error(proc.stderr)
    key = "env" if "env" in settings else "apiKeyHelper"
    assert '"%s"' % key in proc.stderr and "untouched" in proc.stderr
    assert (d / "settings.json").read_text() == settings
    assert not workspace.pat_values()


def test_wrong_typed_onboarding_mark_is_left_alone(home, workspace, setup):
    state = home / ".claude.json"
    state.write_text('{"hasCompletedOnboarding": "yes", "theme": "dark"}\n')
    proc = setup()
    assert "hasCompletedOnboarding" in proc.stderr
    assert state.read_text() == '{"hasCompletedOnboarding": "yes", "theme": "dark"}\n'


@pytest.mark.parametrize("left", ["runtime copy", "empty folders", "temporary file"])
def test_runtime_folder_without_a_record_is_removed_by_uninstall(home, workspace, setup, left):
    """What an uninstall killed at the wrong instant left: fmapi's data folder, no record in it."""
    setup()
    assert run_fmapi("uninstall", "--yes").returncode == 0
    setup()
    (data_home(home) / "installs.json").unlink()
    for name in ("fmapi-key-helper.sh", ".fmapi-pat-cache", ".fmapi-pat-cache.lock", "settings.json"):
        (home / ".claude" / name).unlink(missing_ok=True)
    runtime = data_home(home) / "runtime"
    if left != "runtime copy":
        for path in [runtime_pyc(home), runtime / "fmapi.py"]:
            path.unlink()
    if left == "temporary file":
        shutil.rmtree(runtime)
        (data_home(home) / ".installs.json.abc123.fmapi-tmp").write_text("{}")
    proc = run_fmapi("uninstall", "--yes")
    assert proc.returncode == 0, proc.stderr
    assert "Removed" in proc.stdout
    assert not data_home(home).exists()
    assert run_fmapi("uninstall", "--yes").stdout == "Nothing to uninstall.\n"


def test_killed_uninstall_never_leaves_an_orphan_runtime(home, workspace, setup):
    """A scripted kill loop: SIGKILL uninstall at random instants, then uninstall again."""
    rng = random.Random(17)
    env = dict(os.environ)
    setup()
    started = time.monotonic()
    assert run_fmapi("uninstall", "--yes").returncode == 0
    window = time.monotonic() - started  # kills land anywhere in a whole uninstall
    for _ in range(15):
        setup()
        proc = subprocess.Popen([sys.executable, str(FMAPI), "uninstall", "--yes"], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0, window))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        again = run_fmapi("uninstall", "--yes")
        assert again.returncode == 0, again.stdout + again.stderr
        assert not data_home(home).exists(), (again.stdout, os.listdir(data_home(home)))
        assert not helper(home).exists()
        assert run_fmapi("uninstall", "--yes").stdout == "Nothing to uninstall.\n"


# --- no traceback, no secret in an error ------------------------------------------------------

@pytest.mark.parametrize("url", ["https://" + "a" * 64 + ".cloud.databricks.com",
                                 "https://" + ("abc." * 1300) + "com",
                                 "https://x.com/" + "p" * 5000,
                                 "https://a..b.com",
                                 "https://bad$host.com"])
def test_hosts_no_parser_accepts_are_refused_in_one_short_line(url):
    with pytest.raises(fmapi.UsageError) as err:
        fmapi.normalize_host(url)
    assert "\n" not in err.value.message and len(err.value.message) < 200


def test_longest_labels_and_idna_hosts_are_accepted():
    assert fmapi.normalize_host("https://" + "a" * 63 + ".cloud.databricks.com") == \
        "https://" + "a" * 63 + ".cloud.databricks.com"
    assert fmapi.normalize_host("https://Bücher.example.com:8443/x") == "https://xn--bcher-kva.example.com:8443"


@pytest.mark.parametrize("url", ["https://alice:s3cr3t-pw@x.cloud.databricks.com",
                                 "https://alice:s3cr3t-pw@x.cloud.databricks.com:notaport",
                                 "https://s3cr3t-pw@x.cloud.databricks.com"])
def test_credentials_in_the_url_are_refused_and_never_echoed(home, claude_stub, url):
    proc = run_fmapi("setup", "--yes", "--host", url, "--profile", "p")
    assert proc.returncode == 2
    assert "s3cr3t" not in proc.stdout + proc.stderr
    assert "user name or password" in proc.stderr
    one_line_error(proc.stderr)


def write_old_helper(path, spec_json):
    """A helper script as fmapi writes it, for a spec setup would no longer accept."""
    code = ("import sys, json, fmapi; spec = fmapi.TokenSpec(**{k: v for k, v in json.loads(sys.argv[1]).items() "
            "if k in fmapi.TokenSpec.FIELDS}); text = fmapi.helper_script(spec, 'Claude Code'); "
            "sys.stdout.write(text.replace(fmapi.shlex_quote(spec.to_json()), fmapi.shlex_quote(sys.argv[1])))")
    text = subprocess.run([sys.executable, "-c", code.replace("fmapi.shlex_quote", "__import__('shlex').quote"), spec_json],
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(FMAPI.parent)),
                          check=True).stdout
    path.write_text(text)
    path.chmod(0o700)
    return path


@pytest.mark.parametrize("change", [{"host": "https://" + "a" * 64 + ".com"}, {"from_a_newer_fmapi": 1}])
def test_unexpected_error_on_the_helper_path_is_one_line(home, workspace, setup, change):
    """Helpers fmapi would not write today (an unchecked host, a newer helper protocol): one line each."""
    setup()
    spec = json.loads(fmapi.TokenSpec(agent="claude", dir=str(home / ".claude"), host=workspace.url,
                                      profile="fake-profile", lifetime_days=1, min_left=600,
                                      comment="Claude Code FMAPI").to_json())
    spec.update(change)
    (home / ".claude" / ".fmapi-pat-cache").unlink()  # the slow path
    proc = run_helper(write_old_helper(home / "old-helper.sh", json.dumps(spec)))
    assert proc.returncode != 0 and proc.stdout == ""
    one_line_error(proc.stderr)
    if "from_a_newer_fmapi" in change:
        assert "fmapi token" in proc.stderr and "/issues" in proc.stderr and "TypeError" in proc.stderr
