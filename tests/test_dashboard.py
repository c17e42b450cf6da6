"""optnas dashboard, and the HTML report, seen in a real browser (headless Chromium).

Needs Debian's ``chromium`` and the ``playwright`` package (no browser download: it drives
``/usr/bin/chromium``). Where they are missing the browser tests skip, unless
``OPTNAS_REQUIRE_BROWSER=1`` (set by ``.ci/run``) makes that a failure. Screenshots go to the
test's tmp dir, and also to ``$OPTNAS_SCREENSHOTS`` when set.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from optnas.cli import main
from optnas.report import report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    reason = _missing_browser()
    if reason:
        if os.environ.get("OPTNAS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"OPTNAS_REQUIRE_BROWSER=1, but {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _missing_browser() -> str | None:
    if not Path(CHROMIUM).exists():
        return "no chromium (apt-get install chromium)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "no playwright (pip install playwright)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the dashboard exited: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"the dashboard did not answer at {url} in {seconds} s")


@contextlib.contextmanager
def _dashboard_on(storage: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """``python -m optnas dashboard`` on ``storage`` and a free local port, once it answers:
    the process and its address."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "optnas", "dashboard", "--storage", storage, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for(f"http://127.0.0.1:{port}/api/studies", process)
        yield process, f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def served(finished_study):
    """``python -m optnas dashboard`` on the finished study, on a free local port."""
    _, storage, _ = finished_study
    with _dashboard_on(storage) as (_, address):
        yield address


def _save(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("OPTNAS_SCREENSHOTS"):
        shutil.copy(path, Path(os.environ["OPTNAS_SCREENSHOTS"]) / name)
    return path


def test_dashboard_shows_the_study_its_trials_and_a_diagram(browser, served, finished_study,
                                                            tmp_path):  # fmt: skip
    study, _, _ = finished_study
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{served}/dashboard")
    page.get_by_text(study.study_name).first.wait_for(timeout=30_000)

    page.goto(f"{served}/dashboard/studies/1/trials")
    for trial in study.trials:
        page.get_by_text(f"Trial {trial.number}", exact=True).first.wait_for(timeout=30_000)
    page.get_by_text(study.trials[0].user_attrs["arch"]).first.wait_for(timeout=30_000)
    diagram = page.locator("img[src*='/artifacts/']").first
    diagram.wait_for(timeout=30_000)
    page.wait_for_function(
        "() => [...document.images].some(i => i.src.includes('/artifacts/') && "
        "i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
    page.get_by_text("architecture.svg").first.wait_for()
    # What the dashboard serves is the trial's SVG diagram.
    svg = page.request.get(served + diagram.get_attribute("src"))
    assert svg.ok and svg.text().startswith("<svg") and "ConvBNAct" in svg.text()
    shot = _save(page, tmp_path, "dashboard-trial.png")
    assert shot.stat().st_size > 10_000
    page.close()


def test_report_renders_every_figure_offline(browser, finished_study, tmp_path):
    study, _, _ = finished_study
    path = report(study, tmp_path / "report.html")
    context = browser.new_context(offline=True, viewport={"width": 1200, "height": 1000})
    page = context.new_page()
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_function("() => window.Plotly !== undefined", timeout=30_000)
    page.wait_for_function(
        "() => document.querySelectorAll('.js-plotly-plot .main-svg').length >= 4",
        timeout=30_000,
    )
    assert failed == []
    _save(page, tmp_path, "report.png")
    context.close()


def test_dashboard_shows_over_budget_trials_as_infeasible(tmp_path):
    # optuna-dashboard 0.21 reads the constraints list Optuna 4 kept; Optuna 5 records one
    # system attr per budget, so every trial looked feasible.
    import json

    import optuna

    url = f"sqlite:///{tmp_path}/b.db"
    study = optuna.create_study(storage=url, study_name="b", directions=["maximize", "minimize"])
    study.set_metric_names(["accuracy", "params"])
    for params in (900, 1_500):
        trial = study.ask()
        trial.set_constraint("params", params - 1_000)
        study.tell(trial, [0.9, params])
    with _dashboard_on(url) as (_, address):
        api = f"{address}/api/studies/{study._study_id}"
        with urllib.request.urlopen(api, timeout=10) as answer:
            trials = json.loads(answer.read())["trials"]
    assert [t["constraints"] for t in trials] == [[-100], [500]]


def test_dashboard_ends_at_once_on_sigterm(tmp_path):
    # SIGTERM used to raise inside the server, which can swallow it mid-request (wsgiref
    # catches every exception of a request): the dashboard then served on, unkillable.
    import signal

    import optuna

    url = f"sqlite:///{tmp_path}/s.db"
    optuna.create_study(storage=url, study_name="s")
    with _dashboard_on(url) as (process, _):
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == -signal.SIGTERM


def test_dashboard_command_without_a_database_is_a_clear_error(tmp_path, capsys):
    missing = f"sqlite:///{tmp_path}/none.db"
    assert main(["dashboard", "--storage", missing]) == 1
    assert "no such file" in capsys.readouterr().err


def test_dashboard_serves_the_artifacts_of_the_study_named(tmp_path, monkeypatch, capsys):
    import optuna_dashboard
    from conftest import tiny_space

    import optnas

    storage = f"sqlite:///{tmp_path}/two.db"
    for name in ("a", "b"):
        optnas.search(tiny_space, "digits", n_trials=1, epochs=1, storage=storage,
                      study_name=name, artifacts=tmp_path / f"{name}-files")  # fmt: skip
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **kwargs: None)
    assert main(["dashboard", "--storage", storage, "--study-name", "b"]) == 0
    assert f"(artifacts: {tmp_path / 'b-files'})" in capsys.readouterr().out


def test_dashboard_command_refuses_a_study_that_is_not_there_and_a_taken_port(
    finished_study, capsys
):
    _, storage, _ = finished_study
    assert main(["dashboard", "--storage", storage, "--study-name", "nosuch"]) == 1
    assert "No study named 'nosuch'" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["dashboard", "--storage", storage, "--port", port]) == 1
    err = capsys.readouterr().err
    assert "optnas dashboard: error: " in err
    assert f"port {port} of 127.0.0.1 is taken; choose another" in err
    assert "Traceback" not in err
    with pytest.raises(SystemExit):
        main(["dashboard", "--storage", storage, "--port", "80000"])
    assert "ports go from 1 to 65535" in capsys.readouterr().err
