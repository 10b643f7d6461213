#!/usr/bin/env python3
"""Benchmark of the generated token helper (not a test: pytest does not collect this file).

    python3 tests/bench_helper.py [--runs N] [--renewals N]

Runs `fmapi.py setup --yes` for Claude Code (a stub `claude`: setup only asks its version) in a
temporary HOME, against the fake workspace (tests/fakeworkspace.py) and the fake `databricks`
CLI (tests/fakebin); the real HOME is never read or written. Then:

1. Cache hit. The generated ~/.claude/fmapi-key-helper.sh against a reference helper written the
   way the original bash setup wrote it (POSIX sh with `set -eu`, umask and trap, two `jq` reads
   of the same cache and `date +%s`), and a leaner one-`jq` variant. Each is run as a whole
   process, `/bin/sh HELPER` with stdin from /dev/null, alternating in rotating order, N runs
   each after a warm-up; prints the medians and the ratios.
2. Renewal. The cached PAT is moved close to its expiry (in the cache, not the system clock),
   the workspace answers every request 100 ms late, and the helper mints a new PAT. Prints the
   time until the token is printed and until the helper exits, the HTTP requests the workspace
   saw before and after the token, the `databricks` processes started (the fake CLI's log) and,
   with strace, every process in the helper's tree. The replaced PAT's revocation is timed
   separately: it must land after the helper has handed out the token and exited.
3. OAuth mode (`setup --auth oauth`, a second install). Its cache hit against the PAT install's,
   alternating, N runs each: the same path (one file read), so the same cost. Then renewals: the
   cached OAuth access token is moved to 60 s left and the helper runs once; prints the time until
   the token is printed and the `databricks` processes each renewal started (exactly one,
   `databricks auth token --force-refresh`).
"""

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
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

PROFILE = "bench"
LATENCY = 0.1  # seconds added by the fake workspace to every request during the renewal runs

# The original helper's cache-hit path, reading fmapi's cache (whose expiry field is "expiry").
REFERENCE_SEED = """#!/bin/sh
set -eu
umask 077
_tmp=""
_cleanup() { [ -n "$_tmp" ] && rm -f "$_tmp" 2>/dev/null || true; }
trap _cleanup EXIT INT TERM
CACHE=%(cache)s
cached_token() {
  [ -f "$CACHE" ] || return 1
  token=$(jq -r '.token // empty' "$CACHE" 2>/dev/null) || return 1
  expiry=$(jq -r '.expiry // 0' "$CACHE" 2>/dev/null) || return 1
  now=$(date +%%s)
  if [ -n "$token" ] && [ "$now" -lt "$((expiry - %(min_left)d))" ]; then
    echo "$token"
    return 0
  fi
  return 1
}
cached_token || exit 1
"""

# The same check done by a single jq process (the least a sh+jq helper can spend).
REFERENCE_ONE_JQ = """#!/bin/sh
CACHE=%(cache)s
token=$(jq -r --arg host %(host)s --argjson min %(min_left)d \
  'select(.host == $host and (.expiry - now) >= $min) | .token // empty' "$CACHE" 2>/dev/null) || exit 1
[ -n "$token" ] || exit 1
echo "$token"
"""


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def ms(seconds):
    return "%.1f ms" % (seconds * 1000)


class Install:
    """A temp HOME with fmapi set up for Claude Code against a started fake workspace."""

    def __init__(self, root, auth="pat"):
        self.root = root
        self.home = os.path.join(root, "home")
        self.bin = os.path.join(root, "bin")
        os.makedirs(self.home)
        os.makedirs(self.bin)
        with open(os.path.join(self.bin, "claude"), "w") as handle:  # setup only asks its version
            handle.write("#!/bin/sh\necho '2.1.331 (Claude Code)'\n")
        os.chmod(os.path.join(self.bin, "claude"), 0o755)
        self.cli_log = os.path.join(root, "databricks-calls.log")
        self.workspace = FakeWorkspace().start()
        python_dir = os.path.dirname(os.path.realpath(sys.executable))  # the fake CLI's python3, no shim
        self.env = {
            "HOME": self.home,
            "PATH": os.pathsep.join([FAKEBIN, self.bin, python_dir, "/usr/bin", "/bin"]),
            "XDG_CONFIG_HOME": os.path.join(self.home, ".config"),
            "XDG_DATA_HOME": os.path.join(self.home, ".local", "share"),
            "XDG_CACHE_HOME": os.path.join(self.home, ".cache"),
            "FAKE_DATABRICKS_LOG": self.cli_log,
            "BROWSER": "none",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "LANG": "C.UTF-8",
        }
        proc = subprocess.run([sys.executable, FMAPI, "setup", "--yes", "--host", self.workspace.url,
                               "--profile", PROFILE, "--auth", auth], env=self.env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise SystemExit("fmapi setup failed:\n%s%s" % (proc.stdout, proc.stderr))
        self.dir = os.path.join(self.home, ".claude")
        self.helper = os.path.join(self.dir, "fmapi-key-helper.sh")
        self.cache_path = os.path.join(self.dir, ".fmapi-pat-cache")

    def cache(self):
        with open(self.cache_path) as handle:
            return json.load(handle)

    def set_expiry(self, seconds_left):
        """Move the cached PAT's clock (the file's layout is kept, only the number changes)."""
        with open(self.cache_path) as handle:
            text = handle.read()
        data = json.loads(text)
        new = int(time.time()) + seconds_left
        changed = text.replace('"expiry": %d' % data["expiry"], '"expiry": %d' % new, 1)
        if changed == text:
            data["expiry"] = new
            changed = json.dumps(data, indent=2) + "\n"
        with open(self.cache_path, "w") as handle:
            handle.write(changed)

    def cli_calls(self):
        if not os.path.exists(self.cli_log):
            return []
        with open(self.cli_log) as handle:
            return [json.loads(line) for line in handle if line.strip()]

    def stop(self):
        self.workspace.stop()


def helper_words(path):
    """The generated helper's exec command as words: interpreter, flags, -c code, arguments."""
    with open(path) as handle:
        text = handle.read()
    return shlex.split(text[text.index("\nexec ") + 6:])


def helper_spec(path):
    """The TokenSpec the helper carries: the JSON that is the last word of its exec command."""
    return json.loads(helper_words(path)[-1])


def run_once(argv, env):
    start = time.perf_counter()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit("%s failed (%d): %s" % (" ".join(argv), proc.returncode, proc.stderr.decode(errors="replace")))
    return elapsed, proc.stdout


# ------------------------------------------------------------------------------ strace
def trace(argv, env, timeout=60):
    """Run argv under strace -f; returns (CompletedProcess, processes) where processes maps each
    pid in the tree to {"parent": pid or None, "execs": [program, ...]} (threads left out)."""
    handle, out = tempfile.mkstemp(prefix="fmapi-bench-strace-")
    os.close(handle)
    try:
        proc = subprocess.run(["strace", "-f", "-qq", "-s", "256", "-e", "trace=execve,clone,clone3,fork,vfork",
                               "-o", out] + argv, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                              timeout=timeout)
        with open(out) as handle:
            lines = handle.read().splitlines()
    finally:
        if os.path.exists(out):
            os.unlink(out)
    processes, threads, pending = {}, set(), {}
    for line in lines:
        match = re.match(r"(\d+)\s+(.*)$", line)
        if not match:
            continue
        pid, rest = int(match.group(1)), match.group(2)
        processes.setdefault(pid, {"parent": None, "execs": []})
        call = re.match(r"(?:<\.\.\. )?(execve|clone3?|v?fork)\b", rest)
        if not call:
            continue
        name = call.group(1)
        if not rest.startswith("<..."):
            head = rest
            if "<unfinished" in rest:
                pending[(pid, name)] = rest
                continue
        else:
            head = pending.pop((pid, name), "")
        result = re.search(r"=\s+(-?\d+)", rest.rsplit(")", 1)[-1] if ")" in rest else rest)
        value = int(result.group(1)) if result else -1
        if name == "execve":
            program = re.match(r'execve\("([^"]*)"', head)
            if value == 0 and program:
                processes[pid]["execs"].append(program.group(1))
        elif value > 0:
            if "CLONE_THREAD" in head:
                threads.add(value)
            else:
                processes.setdefault(value, {"parent": None, "execs": []})["parent"] = pid
    for tid in threads:
        processes.pop(tid, None)
    return proc, processes


# ------------------------------------------------------------------------------ 1. cache hit
TARGET = 0.6  # fmapi's helper at most this fraction of the sh+jq reference's time


def bench_cache_hit(install, runs, warmup):
    jq = shutil.which("jq", path="/usr/bin:/bin:/usr/local/bin")
    words = helper_words(install.helper)
    min_left = helper_spec(install.helper)["min_left"]
    token = install.cache()["token"]
    env = {"HOME": install.home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}  # the hit needs no PATH
    helpers = [("fmapi helper", install.helper)]
    if jq:
        for name, text in (("sh+jq reference (seed)", REFERENCE_SEED), ("sh+jq reference (one jq)", REFERENCE_ONE_JQ)):
            path = os.path.join(install.root, name.split("(")[1].rstrip(")").replace(" ", "-") + "-helper.sh")
            with open(path, "w") as handle:
                handle.write(text % {"cache": shlex.quote(install.cache_path), "min_left": min_left,
                                     "host": shlex.quote(install.workspace.url)})
            os.chmod(path, 0o700)
            helpers.append((name, path))
    else:
        print("\nSKIPPED the sh+jq reference: jq is not installed (apt-get install jq, or brew install jq);"
              " only fmapi's helper is timed.")
    for name, path in helpers:  # all must hand out the same token, or the race means nothing
        _, out = run_once(["/bin/sh", path], env)
        if out.decode().strip() != token:
            raise SystemExit("%s printed %r, not the cached token" % (name, out))
    floor = "%s -I -S -c pass" % os.path.basename(words[0])
    contestants = [(name, ["/bin/sh", path]) for name, path in helpers] + [(floor, [words[0], "-I", "-S", "-c", "pass"])]
    times = {name: [] for name, _ in contestants}
    for _ in range(warmup):
        for _, argv in contestants:
            run_once(argv, env)
    for i in range(runs):  # alternate, rotating who goes first
        shift = i % len(contestants)
        for name, argv in contestants[shift:] + contestants[:shift]:
            times[name].append(run_once(argv, env)[0])

    print("\n== Cache hit: `/bin/sh HELPER` as a whole process, %d alternating runs each after %d warm-up runs =="
          % (runs, warmup))
    print("   %-28s %9s %9s %9s" % ("", "median", "p10", "p90"))
    for name, _ in contestants:
        values = times[name]
        note = "  (the interpreter alone, no sh: the floor for any Python helper)" if name == floor else ""
        print("   %-28s %9s %9s %9s%s" % (name, ms(statistics.median(values)), ms(percentile(values, 0.1)),
                                          ms(percentile(values, 0.9)), note))
    ours = times["fmapi helper"]
    for name, _ in helpers[1:]:
        ratio = statistics.median(ours) / statistics.median(times[name])
        paired = statistics.median(a / b for a, b in zip(ours, times[name]))
        print("   fmapi / %-26s %.2fx (ratio of medians; median of paired ratios %.2fx)%s"
              % (name.replace("sh+jq reference", "reference") + ":", ratio, paired,
                 "  target <= %.1fx: %s" % (TARGET, "met" if ratio <= TARGET else "NOT met") if "seed" in name else ""))
    if shutil.which("strace"):
        print("   processes per call (strace -f):")
        for name, path in helpers:
            _, processes = trace(["/bin/sh", path], env)
            execs = [os.path.basename(p) for info in processes.values() for p in info["execs"]]
            print("     %-26s %d (exec'd: %s)" % (name, len(processes), " ".join(execs)))
    return times


# ------------------------------------------------------------------------------ 2. renewal
def one_renewal(install):
    """Age the cache, run the helper once; returns a dict of timings and what it caused."""
    install.set_expiry(60)  # a minute left: below min_left, so the helper must mint
    old = install.cache()
    requests_before = len(install.workspace.requests)
    calls_before = len(install.cli_calls())
    start = time.perf_counter()
    wall_start = time.time()
    proc = subprocess.Popen(["/bin/sh", install.helper], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=install.env)
    line = proc.stdout.readline()
    t_token = time.perf_counter() - start
    proc.stdout.read()  # EOF: every copy of the pipe closed (the revoking child must not hold it)
    t_eof = time.perf_counter() - start
    proc.wait(timeout=60)
    t_exit = time.perf_counter() - start
    stderr = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0 or not line.strip():
        raise SystemExit("the helper failed to renew (%s): %s" % (proc.returncode, stderr))
    new_token = line.decode().strip()
    deadline = time.perf_counter() + 30
    while old["token_id"] in install.workspace.tokens and time.perf_counter() < deadline:
        time.sleep(0.001)
    t_revoked = time.perf_counter() - start
    revoked = old["token_id"] not in install.workspace.tokens
    time.sleep(0.05)  # let a straggling request land before counting
    # The helper writes the cache, then prints the token: a request the workspace received
    # before the cache was written is on the token's critical path; one after it is not.
    cached_at = os.stat(install.cache_path).st_mtime_ns / 1e9
    requests = [(r["method"], r["path"], r["time"] - wall_start, r["time"] < cached_at)
                for r in install.workspace.requests[requests_before:]]
    return {
        "token_ok": new_token == install.cache()["token"] != old["token"],
        "t_token": t_token, "t_eof": t_eof, "t_exit": t_exit,
        "t_revoked": t_revoked if revoked else None,
        "requests": requests,
        "cli_calls": [c["argv"] for c in install.cli_calls()[calls_before:]],
    }


def bench_renewal(install, renewals):
    cli_alone = []
    for _ in range(5):  # the fake CLI by itself, for the breakdown
        start = time.perf_counter()
        subprocess.run(["databricks", "auth", "token", "--profile", PROFILE, "-o", "json"], env=install.env,
                       stdin=subprocess.DEVNULL, capture_output=True, check=True)
        cli_alone.append(time.perf_counter() - start)
    install.workspace.latency = LATENCY
    results = [one_renewal(install) for _ in range(renewals)]
    install.workspace.latency = 0
    if not all(r["token_ok"] for r in results):
        raise SystemExit("a renewal did not hand out the newly cached PAT")
    med = lambda key: statistics.median(r[key] for r in results)  # noqa: E731
    revoked = [r["t_revoked"] for r in results if r["t_revoked"] is not None]
    last = results[-1]
    before = [(m, p, t) for m, p, t, critical in last["requests"] if critical]
    after = [(m, p, t) for m, p, t, critical in last["requests"] if not critical]
    cli_counts = sorted({len(r["cli_calls"]) for r in results})
    print("\n== Renewal: the cached PAT has 60 s left; the workspace answers every request %d ms late; %d runs =="
          % (LATENCY * 1000, renewals))
    print("   token printed after         %s (median; min %s, max %s)"
          % (ms(med("t_token")), ms(min(r["t_token"] for r in results)), ms(max(r["t_token"] for r in results))))
    print("   helper exited after         %s (stdout closed after %s): what an agent waits for"
          % (ms(med("t_exit")), ms(med("t_eof"))))
    print("   replaced PAT revoked after  %s (in %d of %d runs; always after the helper exited: %s)"
          % (ms(statistics.median(revoked)) if revoked else "never", len(revoked), len(results),
             "yes" if len(revoked) == len(results) and all(r["t_revoked"] > r["t_exit"] for r in results) else "NO"))
    print("   HTTP requests before the token: %d  %s" % (len(before), ", ".join(
        "%s %s (received at %s)" % (m, p, ms(t)) for m, p, t in before)))
    print("   HTTP requests after the token:  %d  %s" % (len(after), ", ".join(
        "%s %s (received at %s)" % (m, p, ms(t)) for m, p, t in after)))
    print("   `databricks` processes:          %s per renewal (%s)" % (
        "/".join(map(str, cli_counts)), "; ".join("databricks " + " ".join(argv) for argv in last["cli_calls"])))
    print("   breakdown: %d round trip(s) x %d ms + the fake `databricks auth token` alone %s (a Python script"
          " here; the real CLI is a Go binary) + the helper's own Python"
          % (len(before), LATENCY * 1000, ms(statistics.median(cli_alone))))
    if not shutil.which("strace"):
        print("   processes: not counted (strace is not installed)")
        return results
    install.set_expiry(60)
    proc, processes = trace(["/bin/sh", install.helper], install.env)
    if proc.returncode != 0:
        raise SystemExit("the traced renewal failed: %s" % proc.stderr.decode(errors="replace"))
    root = min(processes)
    cli = helper_spec(install.helper).get("cli") or "databricks"
    print("   processes in the helper's tree (strace -f, one more renewal; threads are not processes): %d"
          % len(processes))
    for pid in sorted(processes):
        info = processes[pid]
        execs = [os.path.basename(p) for p in info["execs"]]
        if pid == root:
            role = "the helper: /bin/sh, which execs the interpreter in the same process"
        elif any(os.path.realpath(p) == os.path.realpath(cli) for p in info["execs"]):
            role = "`databricks auth token` (its interpreter only because the fake CLI is a Python script)"
        elif not info["execs"]:
            role = "a fork of the helper (no new interpreter): revokes the replaced PAT once the token is out"
        else:
            role = "unexpected"
        print("     %-26s %s" % ("[%s]" % (" -> ".join(execs) or "fork"), role))
    return results


# ------------------------------------------------------------------------------ 3. OAuth mode
def bench_oauth(pat, oauth, runs, warmup, renewals):
    """The OAuth install's cache hit against the PAT install's; then its renewals."""
    env = {"HOME": oauth.home, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    contestants = [("PAT mode helper", ["/bin/sh", pat.helper], dict(env, HOME=pat.home)),
                   ("OAuth mode helper", ["/bin/sh", oauth.helper], env)]
    for name, argv, e in contestants:
        expected = (pat if name.startswith("PAT") else oauth).cache()["token"]
        if run_once(argv, e)[1].decode().strip() != expected:
            raise SystemExit("%s did not print its cached token" % name)
    times = {name: [] for name, _, _ in contestants}
    for _ in range(warmup):
        for _, argv, e in contestants:
            run_once(argv, e)
    for i in range(runs):
        shift = i % len(contestants)
        for name, argv, e in contestants[shift:] + contestants[:shift]:
            times[name].append(run_once(argv, e)[0])
    print("\n== OAuth mode: cache hit, `/bin/sh HELPER`, %d alternating runs each after %d warm-up runs ==" % (runs, warmup))
    print("   %-28s %9s %9s %9s" % ("", "median", "p10", "p90"))
    for name, _, _ in contestants:
        values = times[name]
        print("   %-28s %9s %9s %9s" % (name, ms(statistics.median(values)), ms(percentile(values, 0.1)),
                                      ms(percentile(values, 0.9))))
    print("   OAuth / PAT: %.2fx (ratio of medians)" % (statistics.median(times["OAuth mode helper"])
                                                     / statistics.median(times["PAT mode helper"])))
    results = []
    for _ in range(renewals):
        oauth.set_expiry(60)  # a minute left: below min_left, so the helper must renew
        old = oauth.cache()["token"]
        calls_before = len(oauth.cli_calls())
        requests_before = len(oauth.workspace.requests)
        start = time.perf_counter()
        proc = subprocess.run(["/bin/sh", oauth.helper], stdin=subprocess.DEVNULL, capture_output=True,
                              env=oauth.env, timeout=60)
        elapsed = time.perf_counter() - start
        token = proc.stdout.decode().strip()
        if proc.returncode != 0 or token == old or token != oauth.cache()["token"]:
            raise SystemExit("an OAuth renewal failed: %s" % proc.stderr.decode(errors="replace"))
        results.append((elapsed, [c["argv"] for c in oauth.cli_calls()[calls_before:]],
                        [(r["method"], r["path"]) for r in oauth.workspace.requests[requests_before:]]))
    counts = sorted({len(calls) for _, calls, _ in results})
    print("\n== OAuth mode: renewal, the cached access token has 60 s left; %d runs ==" % renewals)
    print("   token printed after         %s (median; min %s, max %s)" % (
        ms(statistics.median(r[0] for r in results)), ms(min(r[0] for r in results)), ms(max(r[0] for r in results))))
    print("   `databricks` processes:          %s per renewal (%s)" % (
        "/".join(map(str, counts)), "; ".join("databricks " + " ".join(argv) for argv in results[-1][1])))
    print("   HTTP requests fmapi itself made: %d (the workspace saw only the CLI's: %s)" % (
        len([r for r in results[-1][2] if not r[1].startswith("/oidc/")]),
        ", ".join("%s %s" % r for r in results[-1][2])))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="timed cache-hit runs per helper (default 50, at least 30)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--renewals", type=int, default=5, help="renewal runs (default 5)")
    args = parser.parse_args(argv)
    if args.runs < 30:
        parser.error("--runs must be at least 30")
    root = tempfile.mkdtemp(prefix="fmapi-bench-")
    install = None
    try:
        install = Install(root)
        jq = shutil.which("jq", path="/usr/bin:/bin:/usr/local/bin")
        print("fmapi helper benchmark: %s, Python %s, %s cores; jq: %s"
              % (platform.platform(), platform.python_version(), os.cpu_count(),
                 subprocess.run([jq, "--version"], capture_output=True, text=True).stdout.strip() if jq else "missing"))
        words = helper_words(install.helper)
        flags = words[1:words.index("-c")]
        print("helper: exec %s %s -c %s ..." % (words[0], " ".join(flags), shlex.quote(words[words.index("-c") + 1])))
        bench_cache_hit(install, args.runs, args.warmup)
        bench_renewal(install, args.renewals)
        oauth = Install(os.path.join(root, "oauth"), auth="oauth")
        try:
            bench_oauth(install, oauth, args.runs, args.warmup, args.renewals)
        finally:
            oauth.stop()
    finally:
        if install:
            install.stop()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
