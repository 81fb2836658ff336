#!/usr/bin/env python3
"""Runs every test binary of the workspace, several at a time.

`cargo test --workspace` runs its test binaries one after another. Most of
ours spend their time waiting on the servers they start (PostgreSQL
checkpoints and WAL replay, the S3 and MongoDB-compatible stand-ins), so on
a small machine running a few binaries at once finishes much sooner.
Within a binary, tests run exactly as `cargo test` runs them (one process,
its own servers shared by its tests), so nothing about a test changes.

    python3 .ci/run-tests.py [--jobs N] [--timeout SECONDS]

Builds with `cargo test --workspace --no-run`, runs each binary from its
package directory (as cargo does), prints each binary's whole output when it
ends, then runs the doc tests with `cargo test --workspace --doc`. Exits
non-zero if anything failed or timed out, after listing what.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

# Binaries known to run longest start first, so the pool does not end on one
# long binary running alone. Names are the test targets' names; anything
# not listed starts after these, in cargo's order.
LONG_FIRST = [
    "standin_server",
    "crash",
    "pitr_timeline",
    "incremental",
    "pitr_prune",
    "pitr",
    "postgres",
    "dedup",
    "backupctl_pitr",
    "backupd",
    "physical",
    "backupctl_physical",
    "properties",
]


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def build():
    """Builds every test target; returns [(target, label, package dir, exe)]."""
    cmd = [
        "cargo", "test", "--workspace", "--no-run",
        "--message-format=json-render-diagnostics",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    binaries = []
    for line in proc.stdout:
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:
            continue
        if msg.get("reason") != "compiler-artifact":
            continue
        if not msg.get("profile", {}).get("test") or not msg.get("executable"):
            continue
        target = msg["target"]
        package_dir = os.path.dirname(msg["manifest_path"])
        kind = target["kind"][0]
        name = target["name"] if kind == "test" else f"{target['name']} ({kind} unit tests)"
        label = f"{os.path.basename(package_dir)}: {name}"
        binaries.append((target["name"], label, package_dir, msg["executable"]))
    if proc.wait() != 0:
        log("cargo test --no-run failed")
        sys.exit(1)
    return binaries


def ordered(binaries):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    return sorted(
        enumerate(binaries),
        key=lambda ib: (rank.get(ib[1][0], len(rank)), ib[0]),
    )


class Pool:
    def __init__(self, jobs, timeout):
        self.jobs = jobs
        self.timeout = timeout
        self.lock = threading.Lock()
        self.failed = []

    def run_one(self, _target, name, package_dir, exe):
        started = time.monotonic()
        with tempfile.TemporaryFile(mode="w+") as out:
            # Its own process group, so a timeout stops the binary and
            # whatever it started that did not stop with it.
            proc = subprocess.Popen(
                [exe],
                cwd=package_dir,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=self.timeout)
                verdict = "ok" if code == 0 else f"FAILED (exit {code})"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = -1
                verdict = f"TIMED OUT after {self.timeout} s"
            out.seek(0)
            text = out.read()
        took = time.monotonic() - started
        with self.lock:
            print(f"\n     Ran {name} ({os.path.relpath(exe)})", flush=True)
            print(text, end="", flush=True)
            log(f"{name}: {verdict} in {took:.1f} s")
            if code != 0:
                self.failed.append(f"{name}: {verdict}")

    def run(self, binaries):
        queue = [b for _, b in ordered(binaries)]
        qlock = threading.Lock()

        def worker():
            while True:
                with qlock:
                    if not queue:
                        return
                    item = queue.pop(0)
                self.run_one(*item)

        threads = [threading.Thread(target=worker) for _ in range(self.jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def free_space(path):
    """Free bytes (for an unprivileged user) on the file system holding `path`."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskWatch:
    """Samples the free space of the temp dir while the tests run, so a run
    that fails for want of disk says so (the tests' throwaway clusters, WAL
    and restores live there)."""

    def __init__(self, path):
        self.path = path
        self.lowest = free_space(path)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self):
        while not self.stop.wait(2):
            self.lowest = min(self.lowest, free_space(self.path))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jobs", type=int,
        default=int(os.environ.get("BACKUP_TEST_JOBS", "3")),
        help="test binaries at once (default 3, or BACKUP_TEST_JOBS)",
    )
    parser.add_argument(
        "--timeout", type=int, default=1200,
        help="seconds one binary may run before it is killed (default 1200)",
    )
    args = parser.parse_args()
    if args.jobs < 1 or args.timeout < 1:
        parser.error("--jobs and --timeout must be at least 1")

    binaries = build()
    tmp = tempfile.gettempdir()
    gib = 1024 ** 3
    log(f"running {len(binaries)} test binaries, {args.jobs} at a time; "
        f"{free_space(tmp) / gib:.1f} GiB free in {tmp}")
    started = time.monotonic()
    pool = Pool(args.jobs, args.timeout)
    with DiskWatch(tmp) as disk:
        pool.run(binaries)
    log(f"test binaries done in {time.monotonic() - started:.0f} s; "
        f"lowest free space in {tmp} while they ran: {disk.lowest / gib:.1f} GiB")

    log("doc tests")
    if subprocess.call(["cargo", "test", "--workspace", "--doc"]) != 0:
        pool.failed.append("doc tests")

    if pool.failed:
        log("FAILED:")
        for f in pool.failed:
            print(f"    {f}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
