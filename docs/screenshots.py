"""Screenshots of what a sweep's user sees: the MLflow run table, a trial's charts, the front.

    make screenshots                                  # a fresh smoke sweep, then the pictures
    python docs/screenshots.py --sweep runs/demo      # the pictures of an existing sweep folder

It starts `mlflow ui` on 127.0.0.1 against the sweep's own store, opens the run-table URL the
sweep prints in headless Chromium (Debian's package, /usr/bin/chromium) driven by Playwright,
expands the sweep's parent run, and saves docs/screenshots/{run-table,front-runs,trial-overview,
trial-charts,trial-cells,front}.png, which the README shows. Run it again whenever what the UI
shows changes (the tags, params, metrics or tables a sweep logs, the front's page).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# Chromium as root, with no network beyond loopback: no sandbox, no background connections
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1600, "height": 900}
WAIT_S = 60


def fail(message: str) -> None:
    print(f"screenshots: error: {message}", file=sys.stderr)
    sys.exit(2)


def say(message: str) -> None:
    print(f"[screenshots] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------- the sweep and its UI


def smoke_sweep(out: Path) -> None:
    say(f"running the smoke GMCWD sweep into {out} (a few minutes)")
    cmd = [sys.executable, str(REPO / "sweeps" / "gmcwd_weights.py"), "--smoke", f"--out={out}"]
    if subprocess.run(cmd, cwd=REPO).returncode != 0:
        fail("the smoke sweep failed; its output is above")


@contextlib.contextmanager
def mlflow_ui(sweep: Path) -> Iterator[str]:
    """`mlflow ui` on a free port of 127.0.0.1 over the sweep's mlflow.db, ready when yielded."""
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    store = f"sqlite:///{(sweep / 'mlflow.db').resolve()}"
    cmd = [str(mlflow), "ui", "--backend-store-uri", store, "--host", "127.0.0.1", "--port", str(port)]
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:  # ready when its REST API answers, not when the port is open
            if proc.poll() is not None:
                log.seek(0)
                fail(f"mlflow ui exited ({proc.returncode}): {log.read().decode(errors='replace')[-500:]}")
            try:
                api(base, "experiments/search", {"max_results": 1})
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    fail(f"mlflow ui did not answer on {base} within {WAIT_S} s")
                time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def api(base: str, endpoint: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"{base}/api/2.0/mlflow/{endpoint}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def front_trial(base: str, experiment_id: str) -> dict:
    """The child run of the front's first trial (rank 1, lowest trial number), found with the
    README's search."""
    from robustmm.tracking import FRONT_SEARCH

    found = api(
        base,
        "runs/search",
        {"experiment_ids": [experiment_id], "filter": FRONT_SEARCH, "max_results": 100},
    ).get("runs", [])
    tags = lambda run: {t["key"]: t["value"] for t in run["data"].get("tags", [])}  # noqa: E731
    children = [r for r in found if tags(r).get("robustmm.kind") == "trial"]
    if not children:
        fail("the sweep has no trial on its front (pareto_rank 1); run a sweep whose trials complete")
    return min(children, key=lambda r: int(tags(r).get("trial_number", "0") or 0))


# ------------------------------------------------------------------------- the pictures


def close_assistant(page) -> None:
    """Close MLflow's assistant panel, which opens a moment after the page on a first visit."""
    close = page.get_by_role("button", name="Close")
    try:
        close.first.wait_for(state="visible", timeout=3000)
    except Exception:
        return
    close.first.click()
    page.wait_for_timeout(300)


def show_columns(page, names: list[str]) -> None:
    """Toggle each column in the run table's Columns menu, opening the menu afresh for each (one
    menu searched many times loses its matches as the table redraws behind it)."""
    for name in names:
        page.get_by_test_id("column-selection-dropdown").filter(visible=True).first.click()
        menu = page.get_by_role("dialog").last
        page.get_by_placeholder("Search columns").fill(name)
        page.wait_for_timeout(500)
        leaves = menu.locator(".du-bois-light-tree-treenode:has(.du-bois-light-tree-switcher-noop)")
        for i in range(leaves.count()):
            if leaves.nth(i).locator(".du-bois-light-tree-title").inner_text().strip() == name:
                leaves.nth(i).locator(".du-bois-light-tree-checkbox").click()
                break
        else:
            say(f"no column {name!r} in the run table's Columns menu")
        page.keyboard.press("Escape")
        page.wait_for_timeout(500)


def shoot(sweep: Path, base: str) -> list[Path]:
    from playwright.sync_api import sync_playwright

    from robustmm.tracking import FRONT_SEARCH, run_table_url
    from robustmm.tune.mlflow_views import ROWS_TABLE
    from robustmm.tune.space import parse_sweep

    meta = json.loads((sweep / "sweep.json").read_text())
    name = meta["experiment"]
    experiment = api(base, "experiments/search", {"max_results": 1000, "filter": f"name = '{name}'"})
    experiments = experiment.get("experiments", [])
    if not experiments:
        fail(f"no MLflow experiment named {name!r} in {sweep / 'mlflow.db'}")
    eid = experiments[0]["experiment_id"]
    child = front_trial(base, eid)
    spec = parse_sweep(yaml.safe_load((sweep / "sweep.yaml").read_text()))
    columns = [o.key for o in spec.objectives] + [p.key for p in spec.params]
    SHOTS.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)

        run_name, run_id = child["info"]["run_name"], child["info"]["run_id"]
        run_page = f"{base}/#/experiments/{eid}/runs/{run_id}"

        def expand_parent() -> None:
            """Show the trials under the parent (the UI remembers whether it was expanded)."""
            page.wait_for_timeout(1500)
            expand = page.locator("button[data-component-id*='runnamecellrenderer']")
            if not page.locator(f"text={run_name}").count() and expand.count():
                expand.first.click()
            page.wait_for_selector(f"text={run_name}", timeout=WAIT_S * 1000)
            page.wait_for_timeout(1000)

        say("the run table, at the address the sweep prints")
        page.goto(run_table_url(base, eid))
        page.wait_for_selector(f"text={name}", timeout=WAIT_S * 1000)
        close_assistant(page)
        # off: Dataset and Models (empty for a sweep); on: the objectives, params and rank
        show_columns(page, ["Dataset", "Models", *columns, "pareto_rank"])
        expand_parent()
        shots.append(SHOTS / "run-table.png")
        page.screenshot(path=shots[-1])

        say("the front's runs, at the filtered address the sweep prints")
        page.goto(run_table_url(base, eid, FRONT_SEARCH))
        page.wait_for_selector(f"text={name}", timeout=WAIT_S * 1000)
        close_assistant(page)
        expand_parent()
        shots.append(SHOTS / "front-runs.png")
        page.screenshot(path=shots[-1])

        def snap(what: str, file: str, url: str, ready: str | None, settle_ms: int, full_page: bool = False) -> None:
            say(what)
            page.goto(url)
            if ready:
                page.wait_for_selector(ready, timeout=WAIT_S * 1000)
            page.wait_for_timeout(settle_ms)
            close_assistant(page)
            shots.append(SHOTS / file)
            page.screenshot(path=shots[-1], full_page=full_page)

        ml = "workflowType=machine_learning"
        overview = f"the overview of {run_name}: its description and params"
        snap(overview, "trial-overview.png", f"{run_page}?{ml}", "text=Sampled", 1000, full_page=True)
        cells = f"the grid cells of {run_name}, as a table"
        snap(cells, "trial-cells.png", f"{run_page}/artifacts/{ROWS_TABLE}?{ml}", None, 4000)
        charts = f"{run_page}/model-metrics?{ml}"
        snap(f"the charts of {run_name}", "trial-charts.png", charts, "canvas, svg.main-svg, .js-plotly-plot", 2000)

        say("the front")
        page.goto((sweep / "front.html").resolve().as_uri())
        page.wait_for_timeout(2000)
        points = page.locator(".scatterlayer .point")  # the front's trace is drawn last
        if points.count():
            # Plotly's drag layer lies over the points: move the mouse there, it shows the hover
            box = points.last.bounding_box()
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            page.wait_for_timeout(800)
        shots.append(SHOTS / "front.png")
        page.screenshot(path=shots[-1])
        browser.close()
    return shots


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", type=Path, help="an existing sweep folder (default: a fresh smoke sweep)")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).is_file():
        fail(f"{CHROMIUM} not found; install Debian's Chromium: apt-get install chromium")
    try:
        import playwright  # noqa: F401
    except ImportError:
        fail("Playwright is not installed; install it with: .venv/bin/pip install -e '.[screenshots]'")
    with tempfile.TemporaryDirectory(prefix="robustmm-shots-") as tmp:
        sweep = args.sweep
        if sweep is None:
            sweep = Path(tmp) / "gmcwd_weights"
            smoke_sweep(sweep)
        elif not (sweep / "sweep.json").is_file() or not (sweep / "mlflow.db").is_file():
            fail(f"{sweep} is not a finished sweep folder with its own mlflow.db; give --sweep DIR of one")
        with mlflow_ui(sweep) as base:
            shots = shoot(sweep, base)
    for shot in shots:
        say(f"wrote {shot.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
