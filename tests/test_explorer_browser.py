"""The investigator explorer in a real browser: Debian's headless Chromium driven by
Playwright, against a real uvicorn serving the API and the built page at /explore.

Needs the bundle (`make` builds api/static/explore from explorer/) and /usr/bin/chromium
(`apt-get install chromium`); without them these tests fail and say so. Screenshots go
to tests/artifacts/.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.client import RiskGraphClient
from api.server import EXPLORE_DIR, create_app
from api.settings import Settings, new_api_key, parse_api_keys
from graph.embedded import EmbeddedStore
from tests.api_graph import load_small_graph
from tests.bolt_server import free_port

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
TIMEOUT_MS = 20_000


@dataclass
class Served:
    url: str
    investigator: str
    admin: str

    def client(self, key: str) -> RiskGraphClient:
        return RiskGraphClient(self.url + "/graphql", key, timeout=10)


@dataclass
class Console:
    """What the page said on its console, and every URL it asked for."""

    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def _playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright for Python is not installed: pip install the dev extras",
                    pytrace=False)
    return sync_playwright


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not (EXPLORE_DIR / "index.html").is_file():
        pytest.fail(f"the explorer is not built in {EXPLORE_DIR}; run `make`", pytrace=False)
    root = tmp_path_factory.mktemp("explorer")
    store = EmbeddedStore(root / "graph")
    store.init()
    load_small_graph(store)
    made = {role: new_api_key(role) for role in ("investigator", "admin")}
    settings = Settings(home=root / "home",
                        api_keys=parse_api_keys(",".join(e for _, e in made.values())))
    app = create_app(store, settings)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None,
                                        access_log=False, lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    running = Served(f"http://127.0.0.1:{port}", made["investigator"][0], made["admin"][0])
    # The limit engine cuts u01's limit (frozen on fraud risk) and records why.
    with running.client(running.admin) as rg:
        decision = rg.decide("u01", dry_run=False)
    assert decision["action"] == "freeze", decision
    yield running
    srv.should_exit = True
    thread.join(10)
    store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium", pytrace=False)
    with _playwright()() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[tuple[Any, Console]]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    console = Console()
    pg.on("console", lambda m: console.errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda exc: console.errors.append(f"uncaught: {exc}"))
    pg.on("request", lambda r: console.requests.append(r.url))
    yield pg, console
    context.close()


def shot(pg: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    pg.screenshot(path=str(ARTIFACTS / f"explorer-{name}.png"), full_page=True)


def settle(pg: Any) -> None:
    """Wait until no API call of the page is in flight."""
    pg.wait_for_function("() => document.body.dataset.pending === '0'")


def sign_in(pg: Any, served: Served, key: str) -> None:
    pg.goto(served.url + "/explore")
    pg.locator("#key-dialog").wait_for(state="visible")
    pg.fill("#key-input", key)
    pg.click("#key-form button[type=submit]")


def graph_users(pg: Any) -> list[str]:
    return pg.evaluate("explorer.network.users()")  # type: ignore[no-any-return]


def node_point(pg: Any, key: str) -> tuple[float, float]:
    p = pg.evaluate("""key => {
        const n = explorer.network.cy.getElementById(key);
        if (n.empty()) return null;
        const at = n.renderedPosition();
        const box = document.querySelector('#cy').getBoundingClientRect();
        return [box.left + at.x, box.top + at.y];
    }""", key)
    assert p is not None, f"{key} is not in the network"
    return p[0], p[1]


def test_investigator_finds_a_ring_member_and_flags_them(page: tuple[Any, Console],
                                                        served: Served) -> None:
    pg, console = page
    sign_in(pg, served, served.investigator)
    pg.locator("#whoami").filter(has_text="investigator").wait_for()
    assert pg.evaluate("sessionStorage.getItem('riskgraph.apiKey')") == served.investigator

    # Search a ring member: the network shows the ring's members, grouped in the ring.
    pg.fill("#search", "u02")
    pg.press("#search", "Enter")
    pg.locator("article[data-user='u02']").wait_for()
    settle(pg)
    assert graph_users(pg) == ["u01", "u02", "u03", "u04"]
    ring = pg.evaluate("explorer.network.cy.getElementById('ring:u01').children()"
                       ".filter(n => n.data('kind') === 'User').map(n => n.data('uid')).sort()")
    assert ring == ["u01", "u02", "u03", "u04"]
    edge_labels = pg.evaluate("explorer.network.cy.edges().map(e => e.data('label')).sort()")
    assert set(edge_labels) == {"USES", "HAS_PHONE"}
    for uid in ("u01", "u02", "u03", "u04"):
        assert pg.locator(f"#node-list [data-uid='{uid}']").is_visible()
    details = pg.locator("#details")
    assert details.get_by_test_id("ring-id").inner_text() == "ring:u01"
    assert details.get_by_test_id("risk-fraud").inner_text() == "0.70"
    assert "Pay Later" in details.inner_text()
    assert "#user=u02" in pg.url
    shot(pg, "1-ring-member")

    # Click a node in the graph (on the canvas) to open that user: why the limit was cut.
    x, y = node_point(pg, "User:u01")
    pg.mouse.click(x, y)
    pg.locator("article[data-user='u01']").wait_for()
    settle(pg)
    latest = details.get_by_test_id("decision-latest")
    text = latest.inner_text()
    assert "freeze" in text and "applied" in text and "refer: fraud investigation" in text
    assert "FRAUD_HOLD" in text and "Fraud risk 0.90 is at or above 0.85" in text  # why
    assert "欺诈风险 0.90" in text  # the reason in Chinese too
    assert "fraud risk at or below 0.84" in text  # what would change it
    assert "¥20,000" in text and "−¥20,000" in text  # the cash-loan line: was, change
    assert pg.evaluate("explorer.network.cy.$(':selected').map(n => n.id())") == ["User:u01"]
    shot(pg, "2-decision")

    # Flag the user with a reason, and see the flag come back from the API.
    reason = "shares device d1 with u02 and u03; limit frozen on fraud risk"
    pg.fill("#flag-reason", reason)
    pg.click("#flag-form button[type=submit]")
    pg.locator("#flag-list li", has_text=reason).wait_for()
    settle(pg)
    assert "investigator:" in pg.locator("#flag-list li").first.inner_text()
    assert pg.locator("#flag-badge").inner_text() == "⚑ 1"
    assert pg.evaluate("explorer.network.cy.getElementById('User:u01').hasClass('flagged')")
    with served.client(served.investigator) as rg:
        stored = rg.execute('{ user(id: "u01") { flags { reason } } }')["user"]["flags"]
    assert [f["reason"] for f in stored] == [reason]
    pg.locator("#flag-list").scroll_into_view_if_needed()
    shot(pg, "3-flagged")

    assert console.errors == []
    assert all(u.startswith(served.url) or u.startswith("data:") for u in console.requests), \
        [u for u in console.requests if not u.startswith(served.url)]


def test_depth_control_and_expanding_a_node(page: tuple[Any, Console], served: Served) -> None:
    pg, console = page
    sign_in(pg, served, served.investigator)
    pg.locator("#whoami").filter(has_text="investigator").wait_for()
    pg.fill("#search", "u01")
    pg.press("#search", "Enter")
    pg.locator("article[data-user='u01']").wait_for()
    settle(pg)
    assert graph_users(pg) == ["u01", "u02", "u03", "u04"]  # depth 2 reaches u04 via p1

    pg.select_option("#depth", "1")
    pg.wait_for_function("() => explorer.network.users().length === 3")
    settle(pg)
    assert graph_users(pg) == ["u01", "u02", "u03"]
    assert "2 linked within depth 1" in pg.inner_text("#graph-summary")

    # Double-click u03 to expand its links: u04 appears, through phone p1.
    x, y = node_point(pg, "User:u03")
    pg.mouse.dblclick(x, y)
    pg.wait_for_function("() => explorer.network.users().length === 4")
    settle(pg)
    assert graph_users(pg) == ["u01", "u02", "u03", "u04"]
    assert pg.evaluate("explorer.network.cy.getElementById('Phone:p1').nonempty()")
    # u04 is in u01's ring: it joins the ring's box.
    assert pg.evaluate("explorer.network.cy.getElementById('User:u04').data('parent')") \
        == "ring:u01"
    shot(pg, "4-expanded")

    # A device opens with the accounts that use it.
    x, y = node_point(pg, "Device:d1")
    pg.mouse.click(x, y)
    pg.locator("article[data-item='Device:d1']").wait_for()
    assert "3 accounts use it" in pg.inner_text("#details")
    assert console.errors == []


def test_a_ring_by_id_and_a_user_with_no_ring(page: tuple[Any, Console], served: Served) -> None:
    pg, console = page
    sign_in(pg, served, served.investigator)
    pg.locator("#whoami").filter(has_text="investigator").wait_for()
    pg.fill("#search", "ring:u05")
    pg.press("#search", "Enter")
    pg.locator("article[data-ring='ring:u05']").wait_for()
    settle(pg)
    assert graph_users(pg) == ["u05", "u06", "u07"]
    labels = sorted(pg.evaluate("explorer.network.cy.edges().map(e => e.data('label'))"))
    assert labels == ["REFERRED", "TRANSFERRED ×2"]
    shot(pg, "5-ring")

    pg.fill("#search", "u09")
    pg.press("#search", "Enter")
    pg.locator("article[data-user='u09']").wait_for()
    settle(pg)
    assert graph_users(pg) == ["u09", "u10"]
    assert "Not in a group." in pg.inner_text("#details")
    assert pg.get_by_test_id("risk-fraud").inner_text() == "not scored"
    # No decision recorded: the investigator can ask what the policy would do now.
    assert "No decision recorded" in pg.inner_text("#details")
    pg.get_by_role("button", name="Preview the decision now (dry run)").click()
    preview = pg.get_by_test_id("decision-preview")
    preview.wait_for()
    assert "keep" in preview.inner_text() and "dry run, not applied" in preview.inner_text()
    assert "NOT_SCORED" in preview.inner_text()

    pg.fill("#search", "nobody")
    pg.press("#search", "Enter")
    pg.locator("#status.error").wait_for()
    assert "nobody" in pg.inner_text("#status")
    assert console.errors == []


def test_a_wrong_key_is_refused_and_the_page_asks_again(page: tuple[Any, Console],
                                                       served: Served) -> None:
    pg, console = page
    sign_in(pg, served, "rg_not-a-key")
    pg.locator("#key-error").filter(has_text="refused").wait_for()
    assert pg.locator("#key-dialog").is_visible()
    assert pg.evaluate("sessionStorage.getItem('riskgraph.apiKey')") is None
    # The browser reports the 401 itself; nothing else may go wrong.
    assert all("401" in e for e in console.errors), console.errors
    shot(pg, "6-wrong-key")


def test_the_page_is_served_without_anything_from_elsewhere(served: Served) -> None:
    with urllib.request.urlopen(served.url + "/explore", timeout=10) as r:
        html = r.read().decode()
        csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp
    assert "http://" not in html and "https://" not in html
    with urllib.request.urlopen(served.url + "/explore/app.js", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/javascript")
        assert b"cytoscape" in r.read()
    for bad in ("/explore/../server.py", "/explore/nope.js", "/explore/%2e%2e/server.py"):
        try:
            urllib.request.urlopen(served.url + bad, timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code == 404, bad
        else:
            raise AssertionError(f"{bad} was served")
