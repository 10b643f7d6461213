#!/usr/bin/env python3
"""Kill and concurrency stress of fmapi's token path (not a test module: pytest does not collect it;
tests/test_stress.py runs it with a few trials so CI exercises it).

    python3 tests/stress.py [--trials 100] [--concurrency 128] [--only setup,renewal,uninstall,lock,concurrent]

Everything runs in temporary HOMEs against the fake workspace (tests/fakeworkspace.py) and the fake
`databricks` CLI (tests/fakebin), with stub `claude` and `codex` executables (setup only asks their
versions); the real HOME is never read or written.

Scenarios:
  setup      `fmapi setup --yes` re-run over a rich existing config (Claude Code's settings.json and
             ~/.claude.json, Codex's config.toml, all with the user's own keys), alternating agents,
             SIGKILLed at a random instant of its run.
  renewal    the helper renewing a cached PAT that is about to expire, SIGKILLed at a random instant.
  uninstall  `fmapi uninstall --yes` of both installs, SIGKILLed at a random instant.
  lock       a helper SIGKILLed while it holds the renewal lock (the workspace holds its token/create).
  concurrent N helpers at once on an expired cache.

After every kill: each watched file is byte-for-byte as before or as after an uninterrupted run,
parses (JSON/TOML), is never empty; then the same command runs again and must succeed; afterwards no
temporary file is left, the user's own keys are all there, and every live fmapi PAT in the workspace
is the cached one (a PAT minted by the killed run is found and revoked). Prints one line per
scenario: trials, failures and the failures' reasons; exits 1 when any trial failed.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TESTS = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(TESTS)
FMAPI = os.path.join(REPO, "fmapi.py")
FAKEBIN = os.path.join(TESTS, "fakebin")
sys.path.insert(0, TESTS)

from fakeworkspace import FakeWorkspace  # noqa: E402

PROFILE = "stress"
PREFIXES = ("Claude Code FMAPI", "Codex FMAPI")
USER_SETTINGS = {
    "permissions": {"allow": ["Bash(ls:*)"], "deny": []},
    "env": {"MY_OWN": "kept", "ANTHROPIC_SMALL_FAST_MODEL": "mine"},
    "theme": "dark",
    "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "echo hi"}]}]},
}
USER_STATE = {"numStartups": 42, "projects": {"/work": {"allowedTools": []}}, "userID": "abc"}
USER_TOML = """\
# my Codex settings \u2014 with a comment and unicode
model = "gpt-5.5"
approval_policy = "on-request"

[model_providers.mine]
name = "Mine"
base_url = "http://127.0.0.1:9/v1"
wire_api = "responses"

[mcp_servers.docs]
command = "docs-server"
args = ["--port", "0"]
"""
USER_MARKERS = {  # a file -> strings of the user's that must survive every run
    ".claude/settings.json": ["MY_OWN", "Bash(ls:*)", "PreToolUse"],
    ".claude.json": ["numStartups", "allowedTools"],
    ".codex/config.toml": ["my Codex settings", "[model_providers.mine]", "docs-server"],
}


class Home:
    """A temporary HOME with the user's rich config, the fake CLI signed in, and the workspace."""

    def __init__(self, root, workspace):
        self.root = root
        self.home = os.path.join(root, "home")
        self.bin = os.path.join(root, "bin")
        os.makedirs(self.home)
        os.makedirs(self.bin)
        for name, text in (("claude", "echo '2.1.331 (Claude Code)'"),
                           ("codex", "if [ \"$1\" = --version ]; then echo 'codex-cli 0.169.0'; fi")):
            path = os.path.join(self.bin, name)
            with open(path, "w") as handle:
                handle.write("#!/bin/sh\n%s\n" % text)
            os.chmod(path, 0o755)
        self.workspace = workspace
        python_dir = os.path.dirname(os.path.realpath(sys.executable))
        self.env = {
            "HOME": self.home, "PATH": os.pathsep.join([FAKEBIN, self.bin, python_dir, "/usr/bin", "/bin"]),
            "XDG_CONFIG_HOME": os.path.join(self.home, ".config"),
            "XDG_DATA_HOME": os.path.join(self.home, ".local", "share"),
            "XDG_CACHE_HOME": os.path.join(self.home, ".cache"),
            "BROWSER": "none", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "LANG": "C.UTF-8",
        }
        self.write(".claude/settings.json", json.dumps(USER_SETTINGS, indent=4) + "\n")
        self.write(".claude.json", json.dumps(USER_STATE) + "\n")
        self.write(".codex/config.toml", USER_TOML)
        self.pristine = self.snapshot()
        run = self.run([os.path.join(FAKEBIN, "databricks"), "auth", "login", "--host", workspace.url,
                        "--profile", PROFILE])
        if run.returncode != 0:
            raise SystemExit("fake login failed: %s" % run.stderr)

    def path(self, rel):
        return os.path.join(self.home, rel)

    def write(self, rel, text):
        os.makedirs(os.path.dirname(self.path(rel)), exist_ok=True)
        with open(self.path(rel), "w", encoding="utf-8") as handle:
            handle.write(text)

    def run(self, argv, timeout=120):
        return subprocess.run(argv, env=self.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout)

    def fmapi(self, *args):
        return [sys.executable, FMAPI] + list(args)

    def setup_argv(self, agent):
        return self.fmapi("setup", "--yes", "--agent", agent, "--host", self.workspace.url, "--profile", PROFILE)

    def helper(self, agent="claude"):
        return ["/bin/sh", self.path(".%s/fmapi-key-helper.sh" % agent)]

    def snapshot(self):
        """{relative path: bytes} of every file under HOME except the fake CLI's own state."""
        files = {}
        for directory, _, names in os.walk(self.home):
            for name in names:
                full = os.path.join(directory, name)
                rel = os.path.relpath(full, self.home)
                if rel.startswith((".databricks", ".databrickscfg", ".cache")) or "__pycache__" in rel:
                    continue
                with open(full, "rb") as handle:
                    files[rel] = handle.read()
        return files


def parse_problem(rel, data):
    """Why ``data`` is not a whole file of its kind, or None."""
    if rel.endswith((".lock", ".fmapi-pat-served", ".fmapi-pat-checked")):
        return None  # a lock file and the helper's two markers are empty by design
    if not data:
        return "%s is empty" % rel
    try:
        if rel.endswith(".toml"):
            import tomllib

            tomllib.loads(data.decode("utf-8"))
        elif rel.endswith(".json") or os.path.basename(rel) in (".fmapi-pat-cache", ".fmapi-pat-ledger"):
            json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, ImportError) as exc:
        return "%s does not parse: %s" % (rel, str(exc).splitlines()[0])
    return None


def whole_files(before, now, after):
    """Problems: a file that is neither as before nor as after an uninterrupted run, or broken."""
    problems = []
    for rel, data in now.items():
        if rel.endswith(".fmapi-tmp"):
            continue  # temp files are judged after the next run
        if data in (before.get(rel), after.get(rel)):
            continue
        problem = parse_problem(rel, data)
        if problem:
            problems.append(problem)
        elif not rel.endswith((".fmapi-pat-cache", ".fmapi-pat-ledger", "installs.json", "fmapi.py")):
            problems.append("%s is neither as before nor as after" % rel)
    return problems


def user_bytes_problems(home, files, reference=None):
    problems = []
    for rel, markers in USER_MARKERS.items():
        data = files.get(rel, b"").decode("utf-8", "replace")
        for marker in markers:
            if marker not in data:
                problems.append("%s lost the user's %r" % (rel, marker))
    if reference is not None:  # as an uninterrupted uninstall leaves them: TOML byte for byte, JSON value for value
        for rel in USER_MARKERS:
            mine, now = reference.get(rel), files.get(rel)
            same = now == mine or (rel.endswith(".json") and now is not None and json.loads(now) == json.loads(mine))
            if not same:
                problems.append("%s is not the user's own after uninstall" % rel)
    return problems


def settled(home, strict=False, timeout=15):
    """Problems with the workspace's fmapi PATs once background revocations had time to land.

    Every live one must be recorded: an install's cached PAT, or in its ledger (by id, or by
    the nonce in its comment: its token/create was still on its way when the last renewal
    looked; the next renewal revokes it). ``strict``: every live one is a cached PAT."""
    deadline = time.monotonic() + timeout
    while True:
        cached, ids, nonces = set(), set(), set()
        for agent in ("claude", "codex"):
            try:
                with open(home.path(".%s/.fmapi-pat-cache" % agent)) as handle:
                    cached.add(json.load(handle)["token"])
            except (OSError, ValueError, KeyError):
                pass
            try:
                with open(home.path(".%s/.fmapi-pat-ledger" % agent)) as handle:
                    for entry in json.load(handle)["pats"]:
                        ids.add(entry.get("token_id"))
                        nonces.add(entry.get("nonce"))
            except (OSError, ValueError, KeyError):
                pass
        live = [p for prefix in PREFIXES for p in home.workspace.pats_with_comment_prefix(prefix)]
        stray = [p for p in live if p["token_value"] not in cached]
        if not strict:
            stray = [p for p in stray if p["token_id"] not in ids
                     and not any(n and p["comment"].endswith("#%s)" % n) for n in nonces)]
        if not stray or time.monotonic() > deadline:
            return ["%d live PAT(s) that %s" % (len(stray), "no cache holds" if strict else "nothing records")] if stray else []
        time.sleep(0.1)


def final_renewal(home, agents=("claude",)):
    """One more renewal per install, then every live fmapi PAT must be a cached one."""
    problems = []
    for agent in agents:
        age_cache(home, agent, 60)
        proc = home.run(home.helper(agent))
        if proc.returncode != 0:
            problems.append("the final renewal failed: %s" % proc.stderr.strip()[-200:])
    return problems + settled(home, strict=True)


def leftovers(home, timeout=10):
    """Temporary files left behind. A background revocation may still be writing the ledger
    when the helper has exited: a temp file whose writer is alive gets ``timeout`` s to go."""
    deadline = time.monotonic() + timeout
    while True:
        temps = [rel for rel in home.snapshot() if rel.endswith(".fmapi-tmp")]
        if not temps or time.monotonic() > deadline:
            return ["temporary file left: %s" % rel for rel in temps]
        time.sleep(0.1)


def killed_run(home, argv, duration):
    """Start ``argv`` and SIGKILL its process group at a random instant of a ``duration`` run."""
    proc = subprocess.Popen(argv, env=home.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(random.uniform(0, duration))
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return proc.returncode


def timed(home, argv):
    start = time.monotonic()
    proc = home.run(argv)
    if proc.returncode != 0:
        raise SystemExit("%s failed: %s%s" % (" ".join(argv), proc.stdout, proc.stderr))
    return time.monotonic() - start


def age_cache(home, agent, seconds_left):
    path = home.path(".%s/.fmapi-pat-cache" % agent)
    with open(path) as handle:
        data = json.load(handle)
    data["expiry"] = int(time.time()) + seconds_left
    with open(path, "w") as handle:
        handle.write(json.dumps(data, indent=2) + "\n")


class Tally:
    def __init__(self, name):
        self.name, self.trials, self.failures, self.killed_before_end = name, 0, [], 0

    def add(self, problems, trial):
        self.trials += 1
        if problems:
            self.failures.append("trial %d: %s" % (trial, "; ".join(problems)))

    def final(self, problems):
        """The check after the last trial: one more renewal leaves no live PAT but the cached ones."""
        if problems:
            self.failures.append("after the last trial: %s" % "; ".join(problems))

    def line(self):
        return "%-11s trials: %3d  failures: %d%s" % (
            self.name, self.trials, len(self.failures), "".join("\n    " + f for f in self.failures[:10]))


def scenario_setup(root, trials):
    tally = Tally("setup")
    with FakeWorkspace() as workspace:
        home = Home(os.path.join(root, "setup"), workspace)
        durations = {agent: timed(home, home.setup_argv(agent)) for agent in ("claude", "codex")}
        for trial in range(trials):
            agent = ("claude", "codex")[trial % 2]
            if trial % 5 == 4:
                age_cache(home, agent, 60)  # now and then the re-run also renews the PAT
            before = home.snapshot()
            killed_run(home, home.setup_argv(agent), durations[agent])
            problems = whole_files(before, home.snapshot(), before)
            again = home.run(home.setup_argv(agent))
            if again.returncode != 0:
                problems.append("the next setup failed: %s" % again.stderr.strip().splitlines()[-1:])
            files = home.snapshot()
            problems += leftovers(home) + user_bytes_problems(home, files) + settled(home)
            problems += [p for p in (parse_problem(rel, data) for rel, data in files.items()) if p]
            tally.add(problems, trial)
        tally.final(final_renewal(home, ("claude", "codex")))
    return tally


def scenario_renewal(root, trials):
    tally = Tally("renewal")
    with FakeWorkspace() as workspace:
        home = Home(os.path.join(root, "renewal"), workspace)
        timed(home, home.setup_argv("claude"))
        age_cache(home, "claude", 60)
        duration = timed(home, home.helper())
        for trial in range(trials):
            if trial % 4 == 3:
                os.unlink(home.path(".claude/.fmapi-pat-cache"))  # a user cleaning up
            else:
                age_cache(home, "claude", 60)
            before = home.snapshot()
            killed_run(home, home.helper(), duration)
            problems = whole_files(before, home.snapshot(), before)
            again = home.run(home.helper())
            if again.returncode != 0 or not again.stdout.startswith("dapi"):
                problems.append("the next helper failed: %s" % again.stderr.strip()[-200:])
            # the next renewal (not only the next hit) clears whatever the killed one left
            age_cache(home, "claude", 60)
            again = home.run(home.helper())
            if again.returncode != 0:
                problems.append("the renewal after failed: %s" % again.stderr.strip()[-200:])
            files = home.snapshot()
            problems += leftovers(home) + settled(home)
            problems += [p for p in (parse_problem(rel, data) for rel, data in files.items()) if p]
            tally.add(problems, trial)
        tally.final(final_renewal(home))
    return tally


def scenario_uninstall(root, trials):
    tally = Tally("uninstall")
    with FakeWorkspace() as workspace:
        home = Home(os.path.join(root, "uninstall"), workspace)
        uninstall = home.fmapi("uninstall", "--yes")
        duration = None
        for trial in range(trials):
            for agent in ("claude", "codex"):
                timed(home, home.setup_argv(agent))
            if duration is None:
                duration = timed(home, uninstall)
                after = home.snapshot()
                for agent in ("claude", "codex"):
                    timed(home, home.setup_argv(agent))
            before = home.snapshot()
            killed_run(home, uninstall, duration)
            problems = whole_files(before, home.snapshot(), after)
            again = home.run(uninstall)
            if again.returncode != 0:
                problems.append("the next uninstall failed: %s" % (again.stdout + again.stderr).strip()[-300:])
            files = home.snapshot()
            problems += leftovers(home) + user_bytes_problems(home, files, after)
            if sorted(files) != sorted(after):
                problems.append("files after the repair run differ: %s" % sorted(set(files) ^ set(after)))
            tally.add(problems, trial)
    return tally


def scenario_lock(root, trials):
    tally = Tally("lock")
    with FakeWorkspace() as workspace:
        home = Home(os.path.join(root, "lock"), workspace)
        timed(home, home.setup_argv("claude"))
        for trial in range(trials):
            age_cache(home, "claude", 60)
            workspace.fault_next("POST", "/api/2.0/token/create", "hang", delay=3)
            holder = subprocess.Popen(home.helper(), env=home.env, stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            deadline = time.monotonic() + 20
            while workspace._failures and time.monotonic() < deadline:
                time.sleep(0.02)  # the holder's token/create has arrived: it holds the lock
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
            start = time.monotonic()
            again = home.run(home.helper())
            elapsed = time.monotonic() - start
            problems = []
            if again.returncode != 0 or not again.stdout.startswith("dapi"):
                problems.append("the next helper failed: %s" % again.stderr.strip()[-200:])
            if elapsed > 3:
                problems.append("the next helper waited %.1f s" % elapsed)
            problems += settled(home)
            tally.add(problems, trial)
        time.sleep(3.5)  # the killed holders' token/create calls have all been answered
        tally.final(final_renewal(home))
    return tally


def scenario_concurrent(root, trials, concurrency):
    tally = Tally("concurrent")
    with FakeWorkspace() as workspace:
        home = Home(os.path.join(root, "concurrent"), workspace)
        timed(home, home.setup_argv("claude"))
        for trial in range(max(1, trials // 10)):
            age_cache(home, "claude", -60)
            workspace.clear_requests()
            procs = [subprocess.Popen(home.helper(), env=home.env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE) for _ in range(concurrency)]
            results = [(p.communicate(timeout=120), p.returncode) for p in procs]
            problems = []
            failed = [err.decode(errors="replace").strip()[-120:] for (out, err), code in results if code != 0]
            if failed:
                problems.append("%d of %d helpers failed (%s)" % (len(failed), concurrency, failed[0]))
            tokens = {out.decode().strip() for (out, err), code in results if code == 0}
            if len(tokens) != 1:
                problems.append("%d distinct tokens" % len(tokens))
            mints = len(workspace.requests_to("/api/2.0/token/create", "POST"))
            if mints != 1:
                problems.append("%d PATs minted" % mints)
            problems += settled(home, strict=True)
            tally.add(problems, trial)
        tally.name = "concurrent"
        tally.detail = "%d helpers per trial" % concurrency
    return tally


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100, help="kill trials per scenario (default 100)")
    parser.add_argument("--concurrency", type=int, default=128, help="helpers started at once (default 128)")
    parser.add_argument("--only", default="setup,renewal,uninstall,lock,concurrent")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    random.seed(seed)
    root = tempfile.mkdtemp(prefix="fmapi-stress-")
    print("fmapi stress: %d trials per kill scenario, %d concurrent helpers, seed %d" % (args.trials, args.concurrency, seed))
    tallies = []
    try:
        for name in args.only.split(","):
            start = time.monotonic()
            if name == "concurrent":
                tally = scenario_concurrent(root, args.trials, args.concurrency)
            else:
                tally = globals()["scenario_" + name](root, args.trials)
            tallies.append(tally)
            print(tally.line() + "  (%.0f s%s)" % (time.monotonic() - start,
                                                   "; " + tally.detail if getattr(tally, "detail", "") else ""),
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if any(t.failures for t in tallies) else 0


if __name__ == "__main__":
    sys.exit(main())
