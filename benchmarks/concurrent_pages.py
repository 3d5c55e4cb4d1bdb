"""Page render times with N sessions at once (the app under a class's load).

Starts `streamlit run app.py` on a free port (temporary checkpoints, no CIFAR-10, so every
session sees the same app), opens every page once to warm the server, then opens the chosen
pages in N sessions at the same time, each session visiting them in turn. Two kinds of
client, each against its own server:

- `protocol`: a small client per session that speaks Streamlit's websocket protocol, asks
  for the page and waits for the script run to finish. This is the server's part of a page
  load, as ten students on their own laptops would see it.
- `browser`: headless Chromium tabs, each page opened by its address (a fresh load of the
  whole web app: title drawn and script run finished). The tabs draw the charts on the
  same cores as the server, so this overstates what a class would see.
- `in-app`: each tab opens the app once, then moves from page to page by clicking the
  sidebar's links, as a student does after the first load (no fresh load of the web app).

`--floor` adds the same browser load of a page that holds only a title and a line of text,
served the same way: what ten tabs cost on these cores before the app draws anything.

And two server settings, side by side: the app's own (.streamlit/config.toml) and
Streamlit's defaults for the two settings that decide it (file watcher, post-run GC).

    python benchmarks/concurrent_pages.py                    # 10 sessions, ~4 min on 2 cores
    python benchmarks/concurrent_pages.py --sessions 1       # the same pages, one session
    python benchmarks/concurrent_pages.py --clients protocol # the server's part only
    python benchmarks/concurrent_pages.py --out FILE.json    # also write the figures
    python benchmarks/concurrent_pages.py --class-server --sessions 30 --clients protocol \
        --pages build gradients lecture train runs --jobs 3   # a class: 30 students, 3 jobs

`--class-server` starts the app as a class server (a teacher token set; each protocol
session is a student of its own, by a signed cookie); `--jobs N` queues N small lockstep
groups of different students first, so the Train and Runs pages show live runs. The table
then adds each page's 95th percentile and the server's peak memory.

Needs the dev requirements (Playwright) and, for `browser`, Chromium (`make test` installs one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import secrets
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
import websockets
from playwright.async_api import async_playwright
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from resnet_core.common.classroom import (  # noqa: E402
    CLASS_ENV,
    COOKIE,
    TOKEN_ENV,
    student_cookie,
)
from resnet_core.common.files import write_json_atomic  # noqa: E402
from resnet_core.training.jobs import JobQueue  # noqa: E402

PAGES = {"build": "", "gradients": "gradients", "lecture": "lecture", "train": "train",
         "runs": "runs"}  # fmt: skip
MEMORY: dict[str, float | None] = {}  # the server's peak memory per setting, MB
CLASS = {"on": False}  # set by --class-server: every protocol session a student of its own
TOKEN = secrets.token_urlsafe(32)
SETTLED = "[data-testid=stApp][data-test-script-state=notRunning]"
# True once the page's title differs from `old` and its script run has finished.
_MOVED = """old => {
    const app = document.querySelector('[data-testid=stApp]');
    const title = document.querySelector('h1');
    return app && title && title.textContent !== old
        && app.getAttribute('data-test-script-state') === 'notRunning';
}"""
FLOOR_PAGE = 'import streamlit as st\nst.title("A title")\nst.write("and a line of text")\n'

# Streamlit's defaults for what .streamlit/config.toml changes for speed.
SETTINGS = {
    "app": [],
    "streamlit defaults": ["--server.fileWatcherType", "auto", "--runner.postScriptGC", "true"],
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_server(
    port: int, scratch: Path, flags: list[str], script: str = "app.py"
) -> subprocess.Popen:
    env = {
        **os.environ,
        "RESNET_EXPLORER_CHECKPOINTS": str(scratch / "checkpoints"),
        "RESNET_EXPLORER_DATA": str(scratch / "no-data"),
    }
    if CLASS["on"]:
        env |= {CLASS_ENV: "on", TOKEN_ENV: TOKEN}
    command = [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true"]
    command += ["--server.port", str(port), "--server.address", "127.0.0.1", *flags]
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


async def _click(page, path: str) -> float:
    """Move to a page by its sidebar link; seconds until its title and script run are done."""
    old = await page.locator("h1").first.text_content()
    started = time.perf_counter()
    await page.locator(f'a[data-testid=stPageLink-NavLink][href="{path}"]').first.click()
    await page.wait_for_function(_MOVED, arg=old, timeout=300_000, polling=50)
    return time.perf_counter() - started


async def _ask(base: str, path: str) -> float:
    """One page load over Streamlit's websocket: from connecting to the script run finished."""
    started = time.perf_counter()
    url = base.replace("http://", "ws://") + "/_stcore/stream"
    headers = {}
    if CLASS["on"]:  # a new student each time: the name form never shows (a cookie says who)
        headers["Cookie"] = f"{COOKIE}={student_cookie('Student', TOKEN)[1]}"
    async with websockets.connect(
        url, subprotocols=["streamlit"], origin=base, max_size=None, additional_headers=headers
    ) as socket_:
        message = BackMsg()
        message.rerun_script.page_name = path
        await socket_.send(message.SerializeToString())
        while True:
            reply = ForwardMsg()
            reply.ParseFromString(await asyncio.wait_for(socket_.recv(), 300))
            kind = reply.WhichOneof("type")
            if kind == "delta" and reply.delta.new_element.WhichOneof("type") == "exception":
                raise SystemExit(f"page {path!r} raised: {reply.delta.new_element.exception}")
            if kind == "script_finished":
                return time.perf_counter() - started


async def _protocol_session(base: str, pages: list[str]) -> dict[str, float]:
    return {name: await _ask(base, PAGES[name]) for name in pages}


async def _measure_protocol(base: str, sessions: int, pages: list[str]) -> list[dict]:
    await _protocol_session(base, list(PAGES))  # warm-up: imports, first traces
    return list(await asyncio.gather(*(_protocol_session(base, pages) for _ in range(sessions))))


async def _session(browser, base: str, pages: list[str]) -> dict[str, float]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1800})
    page = await context.new_page()
    times = {name: await _open(page, f"{base}/{PAGES[name]}") for name in pages}
    await context.close()
    return times


async def _in_app_session(browser, base: str, pages: list[str]) -> dict[str, float]:
    """Open the app on its first page, then click through the others (and back to it)."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1800})
    page = await context.new_page()
    first, *rest = pages
    times = {f"{first} (first load)": await _open(page, f"{base}/{PAGES[first]}")}
    for name in [*rest, first] if rest else []:
        times[name] = await _click(page, PAGES[name])
    await context.close()
    return times


async def _measure_browser(
    base: str, sessions: int, pages: list[str], session=_session
) -> list[dict]:
    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        await session(browser, base, pages)  # warm-up: imports, first traces
        results = await asyncio.gather(*(session(browser, base, pages) for _ in range(sessions)))
        await browser.close()
    return list(results)


async def _measure_in_app(base: str, sessions: int, pages: list[str]) -> list[dict]:
    return await _measure_browser(base, sessions, pages, _in_app_session)


MEASURES = {"protocol": _measure_protocol, "browser": _measure_browser, "in-app": _measure_in_app}


def _queue_jobs(checkpoints: Path, count: int) -> None:
    """`count` lockstep groups (plain-20 vs ResNet-20, synthetic, about a minute each on 2
    cores), each a different student's: the queue runs one on the CPU, the others wait."""
    queue = JobQueue(checkpoints)
    config = {"dataset": "synthetic", "subset": 5000, "epochs": 3, "batch_size": 128,
              "device": "cpu", "grad_norm_every": 10}  # fmt: skip
    for number in range(count):
        owner = student_cookie(f"Student {number}", TOKEN)[0]
        queue.submit_group(
            [{**config, "model": "plain20"}, {**config, "model": "resnet20"}], owner=owner
        )


def _peak_memory_mb(pid: int) -> float | None:
    """The server process's peak resident memory (VmHWM), in MB; None off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a process has used (Linux /proc), or None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _table(results: list[dict[str, float]], **labels) -> list[dict]:
    rows = []
    for name in results[0]:
        times = [result[name] for result in results]
        rows.append(
            {
                **labels,
                "page": name,
                "median_s": round(statistics.median(times), 2),
                "p95_s": round(statistics.quantiles(times, n=20)[-1], 2)
                if len(times) > 1
                else times[0],
                "max_s": round(max(times), 2),
            }
        )
    return rows


def _one_setting(
    clients: str,
    flags: list[str],
    sessions: int,
    pages: list[str],
    floor: bool = False,
    jobs: int = 0,
) -> tuple:
    """Rows of page times and the server's CPU seconds, for one kind of client and settings
    (`floor`: the minimal page instead of the app)."""
    measure = MEASURES[clients]
    with tempfile.TemporaryDirectory() as scratch:
        port = _free_port()
        script = "app.py"
        if floor:
            script = str(Path(scratch) / "floor.py")
            Path(script).write_text(FLOOR_PAGE)
        server = _start_server(port, Path(scratch), flags, script)
        _queue_jobs(Path(scratch) / "checkpoints", jobs)
        try:
            cpu_before = _cpu_seconds(server.pid)
            results = asyncio.run(measure(f"http://127.0.0.1:{port}", sessions, pages))
            cpu_after = _cpu_seconds(server.pid)
            MEMORY[f"{clients}, {' '.join(flags) or 'app'}"] = _peak_memory_mb(server.pid)
        finally:
            for job in JobQueue(Path(scratch) / "checkpoints").active():
                JobQueue(Path(scratch) / "checkpoints").cancel(job.job_id)
            server.terminate()
            server.wait(timeout=30)
    server_cpu = None if cpu_before is None else round(cpu_after - cpu_before, 1)
    return results, server_cpu


def _print(rows: list[dict], sessions: int) -> None:
    print(f"{sessions} sessions at once, {os.cpu_count()} CPUs, Streamlit {streamlit.__version__}")
    print(f"{'clients':<9} {'settings':<19} {'page':<22} {'median (s)':>10} {'p95 (s)':>8} "
          f"{'max (s)':>8}")  # fmt: skip
    for row in rows:
        print(
            f"{row['clients']:<9} {row['settings']:<19} {row['page']:<22} "
            f"{row['median_s']:>10.2f} {row['p95_s']:>8.2f} {row['max_s']:>8.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    parser.add_argument(
        "--clients", nargs="+", choices=list(MEASURES), default=["protocol", "browser"]
    )
    parser.add_argument(
        "--floor", action="store_true", help="add ten browser loads of a title-only page"
    )
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--out", default=None, help="also write the figures as JSON")
    parser.add_argument("--class-server", action="store_true", help="students by cookies")
    parser.add_argument("--jobs", type=int, default=0, help="groups queued before measuring")
    args = parser.parse_args(argv)
    CLASS["on"] = args.class_server
    rows, server_cpu = [], {}
    for clients in args.clients:
        for settings in args.settings:
            results, cpu = _one_setting(
                clients, SETTINGS[settings], args.sessions, args.pages, jobs=args.jobs
            )
            rows += _table(results, clients=clients, settings=settings)
            server_cpu[f"{clients}, {settings}"] = cpu  # warm-up session included
    if args.floor:
        results, _ = _one_setting("browser", SETTINGS["app"], args.sessions, ["build"], True)
        rows += _table(
            [{"title-only page": r["build"]} for r in results], clients="browser", settings="app"
        )
    _print(rows, args.sessions)
    print("server peak memory (MB): " + ", ".join(f"{k}: {v}" for k, v in MEMORY.items()))
    print(
        "app server CPU-s (warm-up included): "
        + ", ".join(f"{k}: {v}" for k, v in server_cpu.items())
    )
    if args.out:
        record = {
            "sessions": args.sessions,
            "rows": rows,
            "server_cpu_s": server_cpu,
            "server_peak_mb": MEMORY,
            "class_server": args.class_server,
            "jobs": args.jobs,
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
