"""Page render times with N browser sessions at once (the app under a class's load).

Starts `streamlit run app.py` on a free port (temporary checkpoints, no CIFAR-10, so every
session sees the same app), opens every page once to warm the server, then opens the chosen
pages in N headless Chromium sessions at the same time, each session visiting them in turn.
A render time is from navigation to the page's title drawn and the script run finished.

    python benchmarks/concurrent_pages.py                    # 10 sessions, ~1-2 min on 2 cores
    python benchmarks/concurrent_pages.py --sessions 1       # the same pages, one session
    python benchmarks/concurrent_pages.py --out FILE.json    # also write the figures

Needs Chromium (`make test` installs one) and the dev requirements (Playwright).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import streamlit
from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from resnet_core.common.files import write_json_atomic  # noqa: E402

PAGES = {"build": "", "gradients": "gradients", "lecture": "lecture"}
SETTLED = "[data-testid=stApp][data-test-script-state=notRunning]"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(port: int, scratch: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "RESNET_EXPLORER_CHECKPOINTS": str(scratch / "checkpoints"),
        "RESNET_EXPLORER_DATA": str(scratch / "no-data"),
    }
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    log = open(scratch / "server.log", "w")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit(f"the app did not start; see {scratch / 'server.log'}")


async def _open(page, url: str) -> float:
    started = time.perf_counter()
    await page.goto(url)
    await page.wait_for_selector("h1", timeout=300_000)
    await page.wait_for_selector(SETTLED, timeout=300_000)
    return time.perf_counter() - started


async def _session(browser, base: str, pages: list[str]) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1800})
    page = await context.new_page()
    times = {name: await _open(page, f"{base}/{PAGES[name]}") for name in pages}
    await context.close()
    return times


async def _measure(base: str, sessions: int, pages: list[str]) -> list[dict[str, float]]:
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        await _session(browser, base, list(PAGES))  # warm-up: imports, first traces
        results = await asyncio.gather(*(_session(browser, base, pages) for _ in range(sessions)))
        await browser.close()
    return list(results)


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _table(results: list[dict[str, float]], pages: list[str]) -> list[dict]:
    rows = []
    for name in pages:
        times = [result[name] for result in results]
        rows.append(
            {
                "page": name,
                "median_s": round(statistics.median(times), 2),
                "max_s": round(max(times), 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        port = _free_port()
        server = _start_server(port, Path(scratch))
        try:
            started, cpu_before = time.perf_counter(), _cpu_seconds(server.pid)
            results = asyncio.run(_measure(f"http://127.0.0.1:{port}", args.sessions, args.pages))
            wall = time.perf_counter() - started
            cpu_after = _cpu_seconds(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    rows = _table(results, args.pages)
    server_cpu = None if cpu_before is None else round(cpu_after - cpu_before, 1)
    print(f"{args.sessions} sessions at once, {os.cpu_count()} CPUs, wall {wall:.1f} s")
    if server_cpu is not None:  # the rest of the CPU time went to the browser tabs
        print(f"app server CPU: {server_cpu:.1f} s of {wall * (os.cpu_count() or 1):.1f} CPU-s")
    print(f"{'page':<10} {'median (s)':>10} {'max (s)':>8}")
    for row in rows:
        print(f"{row['page']:<10} {row['median_s']:>10.2f} {row['max_s']:>8.2f}")
    if args.out:
        record = {
            "sessions": args.sessions,
            "rows": rows,
            "wall_s": round(wall, 1),
            "server_cpu_s": server_cpu,
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "streamlit": streamlit.__version__,
            "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        write_json_atomic(args.out, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
