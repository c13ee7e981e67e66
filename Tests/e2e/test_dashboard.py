#!/usr/bin/env python3
"""End-to-end tests of the dashboard in a real headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium), against a real `streampulse serve` watching the real test cameras (GStreamer RTSP
server, multipart MJPEG server) on 127.0.0.1.

Run by scripts/test after `swift test`:  PYTHONPATH=.build/e2e-python /usr/bin/python3 Tests/e2e/test_dashboard.py
Environment: STREAMPULSE_BIN_DIR (built binaries), SP_SCREENSHOTS (folder for screenshots; default a temp dir).
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CAMERAS = os.path.join(ROOT, "scripts", "test-cameras")
CAMERA_USER, CAMERA_PASSWORD = "viewer", "s3cret-Pa55"
XSS_NAME = "<img src=x onerror=alert(1)>"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(script, *args):
    """Starts a test camera and waits for its READY line; returns (process, ports)."""
    proc = subprocess.Popen(["/usr/bin/python3", os.path.join(CAMERAS, script), *args], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        raise RuntimeError(f"{script} did not start: {line!r}")
    ports = {k: int(v) for k, v in (p.split("=") for p in line.split()[1:])}
    return proc, ports


def wait_for(predicate, timeout=30, step=0.25, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as error:  # the page may be mid-render
            last = error
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Dashboard(unittest.TestCase):
    """Tests run in name order and share one server, one browser and one signed-in admin."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="sp-e2e-")
        cls.shots = os.environ.get("SP_SCREENSHOTS") or os.path.join(cls.tmp, "screenshots")
        os.makedirs(cls.shots, exist_ok=True)
        bin_dir = os.environ.get("STREAMPULSE_BIN_DIR") or subprocess.check_output(["swift", "build", "--show-bin-path"], cwd=ROOT, text=True).strip()
        cls.binary = os.path.join(bin_dir, "streampulse")
        plugins = os.path.join(cls.tmp, "plugins.d")
        os.makedirs(plugins)
        shutil.copy(os.path.join(bin_dir, "libStreamPulseRTSP.so"), os.path.join(plugins, "rtsp.so"))
        shutil.copy(os.path.join(bin_dir, "libStreamPulseMJPEG.so"), os.path.join(plugins, "mjpeg.so"))

        cls.procs = []
        rtsp, rp = launch("rtsp_server.py", "--user", CAMERA_USER, "--password", CAMERA_PASSWORD)
        mjpeg, mp = launch("mjpeg_server.py", "--user", CAMERA_USER, "--password", CAMERA_PASSWORD)
        cls.doomed, dp = launch("mjpeg_server.py")
        cls.procs += [rtsp, mjpeg, cls.doomed]
        closed = free_port()
        cls.port = free_port()
        streams = [
            ("lobby", "Lobby", f"rtsp://127.0.0.1:{rp['port']}/normal", "ok", None),
            ("gate", "Gate (password)", f"rtsp://127.0.0.1:{rp['auth_port']}/normal", "ok", "cam"),
            ("gate-wrong", "Gate (wrong password)", f"rtsp://127.0.0.1:{rp['auth_port']}/normal", "degraded", "wrong"),
            ("stairs", "Stairs", f"rtsp://127.0.0.1:{rp['port']}/frozen", "degraded", None),
            ("garage", "Garage", f"rtsp://127.0.0.1:{rp['port']}/black", "degraded", None),
            ("office", "Office MJPEG", f"http://127.0.0.1:{mp['port']}/normal", "ok", None),
            ("doomed", "Doomed MJPEG", f"http://127.0.0.1:{dp['port']}/normal", "ok", None),
            ("unplugged", "Unplugged", f"http://127.0.0.1:{closed}/video", "down", None),
            ("xss", XSS_NAME, f"http://127.0.0.1:{mp['port']}/snapshot", "ok", None),
        ]
        cls.expected = {s[0]: s[3] for s in streams}
        lines = ["settings:", "  interval: 2s", "  deep_interval: 6s", "  timeout: 4s", "  retries: 1", "  backoff_cap: 3s",
                 "  timezone: Europe/Berlin", f"  listen: 127.0.0.1:{cls.port}", "  host_sessions: 4",
                 "  web: { max_previews: 2, preview_seconds: 5 }",
                 "credentials:", f"  cam: {{ username: {CAMERA_USER} }}", f"  wrong: {{ username: {CAMERA_USER} }}", "streams:"]
        groups = {"lobby": "lobby", "unplugged": "attic"}
        # Sites: the depot's own and one through its group (issue #17's site column, filter and counters).
        sites = {"lobby": "hq", "gate": "hq", "office": "depot"}
        for sid, name, url, _, cred in streams:
            lines += [f"  - id: {sid}", f"    name: {json.dumps(name)}", f"    url: {url}", "    tags: [e2e]"]
            if cred:
                lines.append(f"    credentials: {cred}")
            if sid in groups:
                lines.append(f"    group: {groups[sid]}")
            if sid in sites:
                lines.append(f"    site: {sites[sid]}")
        # Incidents open after 2 s of failure (no channels: nothing is sent); the attic is in maintenance.
        lines += ["notify:", "  open_after: 2s", "maintenance:",
                  '  - { name: attic rewiring, match: { groups: [attic] }, from: "2020-01-01 00:00", to: "2099-01-01 00:00" }']
        with open(os.path.join(cls.tmp, "config.yaml"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(cls.tmp, "secrets.yaml"), "w") as f:
            f.write(f"cam:\n  password: {CAMERA_PASSWORD}\nwrong:\n  password: not-the-password\n")
        cls.data = os.path.join(cls.tmp, "data")
        cls.log = open(os.path.join(cls.tmp, "serve.log"), "w+")
        cls.serve = subprocess.Popen([cls.binary, "serve", "--config", os.path.join(cls.tmp, "config.yaml"), "--data-dir", cls.data,
                                      "--plugins-dir", plugins], stdout=cls.log, stderr=subprocess.STDOUT)
        cls.procs.append(cls.serve)
        cls.base = f"http://127.0.0.1:{cls.port}"
        wait_for(lambda: urllib.request.urlopen(cls.base + "/healthz", timeout=2).status == 200, what="serve to answer /healthz")
        password_file = os.path.join(cls.data, "admin-password.txt")
        wait_for(lambda: os.path.exists(password_file), what="the generated admin password")
        cls.generated = [l.split(": ", 1)[1] for l in open(password_file).read().splitlines() if l.startswith("password: ")][0]
        cls.admin_password = "a-better-admin-password"

        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                    "--no-first-run", "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
            options.add_argument(arg)
        cls.downloads = os.path.join(cls.tmp, "downloads")
        os.makedirs(cls.downloads)
        options.add_experimental_option("prefs", {"download.default_directory": cls.downloads, "download.prompt_for_download": False})
        cls.driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        cls.driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": cls.downloads})

    @classmethod
    def tearDownClass(cls):
        try:
            cls.driver.quit()
        except Exception:
            pass
        for p in cls.procs:
            try:
                p.send_signal(signal.SIGKILL)
                p.wait(5)
            except Exception:
                pass
        cls.log.seek(0)
        cls.serve_log = cls.log.read()
        cls.log.close()
        leaked = CAMERA_PASSWORD in cls.serve_log or "not-the-password" in cls.serve_log
        if leaked:
            print("FAIL: a camera password reached the serve log", file=sys.stderr)
            sys.exit(1)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # ---------- helpers ----------
    @property
    def d(self):
        return self.driver

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def shot(self, name):
        self.d.save_screenshot(os.path.join(self.shots, name + ".png"))

    def stable(self, read):
        """Runs a read of the table again when live updates replaced the element under it."""
        for _ in range(50):
            try:
                return read()
            except StaleElementReferenceException:
                time.sleep(0.05)
        return read()

    def row_status(self, sid):
        def read():
            rows = self.d.find_elements(By.CSS_SELECTOR, f'tr[data-id="{sid}"]')
            return rows[0].get_attribute("data-status") if rows else None
        return self.stable(read)

    def text(self, css):
        return self.stable(lambda: self.d.find_element(By.CSS_SELECTOR, css).text)

    def click_row(self, sid):
        """Rows are redrawn by live updates at any moment: retry a click that lands on a replaced row."""
        self.click_css(f'tr[data-id="{sid}"]', what=f"a click on the {sid} row")

    def click_css(self, css, what=None):
        """Clicks the element `css` names, again if live updates replaced it between the lookup and the click."""
        def attempt():
            try:
                self.d.find_element(By.CSS_SELECTOR, css).click()
                return True
            except StaleElementReferenceException:
                return False
        wait_for(attempt, timeout=10, step=0.05, what=what or f"a click on {css}")

    def sign_in(self, name, password):
        self.d.get(self.base + "/")
        wait_for(lambda: self.d.find_element(By.ID, "login-view").is_displayed(), what="the sign-in form")
        self.d.find_element(By.ID, "login-name").clear()
        self.d.find_element(By.ID, "login-name").send_keys(name)
        self.d.find_element(By.ID, "login-password").send_keys(password)
        self.d.find_element(By.ID, "login-submit").click()

    def page_fetch(self, path, method="GET", body=None, csrf=True):
        """fetch() from inside the signed-in page: same cookies, optionally the CSRF header."""
        return self.js("""
            const [path, method, body, csrf] = arguments;
            const headers = {};
            if (body !== null) headers['Content-Type'] = 'application/json';
            if (csrf && window.__spCsrf) headers['X-CSRF-Token'] = window.__spCsrf();
            return fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)})
              .then(r => r.text().then(t => ({status: r.status, body: t})));
        """, path, method, body, csrf)

    def cookie(self):
        return next(c["value"] for c in self.d.get_cookies() if c["name"] == "sp_session")

    def http(self, path, method="GET", headers=None, body=None):
        request = urllib.request.Request(self.base + path, method=method, headers=headers or {},
                                         data=None if body is None else json.dumps(body).encode())
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    # ---------- tests ----------
    def test_01_wrong_password_is_rejected_and_rate_limited(self):
        self.sign_in("admin", "not-the-admin-password")
        wait_for(lambda: "wrong" in self.d.find_element(By.ID, "login-message").text, what="the wrong-password message")
        self.assertFalse(self.d.find_element(By.ID, "dash-view").is_displayed())
        statuses = [self.http("/api/login", "POST", {"Content-Type": "application/json"}, {"name": "ghost", "password": f"guess-{i}"})[0]
                    for i in range(6)]
        # Three free failures for one account from one address, the fourth starts a doubling wait.
        self.assertEqual(statuses[:4], [401] * 4)
        self.assertEqual(statuses[4:], [429, 429], "tries during the wait are throttled")

        def throttled_in_page():
            self.sign_in("ghost", "guess-again")
            return wait_for(lambda: self.d.find_element(By.ID, "login-message").text, what="a sign-in answer")
        wait_for(lambda: "too many" in throttled_in_page(), what="the throttling message in the page")

    def test_02_generated_password_signs_in_and_must_be_changed(self):
        self.assertIn("one-time password", open(os.path.join(self.tmp, "serve.log")).read())
        mode = os.stat(os.path.join(self.data, "admin-password.txt")).st_mode & 0o777
        self.assertEqual(mode, 0o600)
        self.sign_in("admin", self.generated)
        wait_for(lambda: self.d.find_element(By.ID, "change-view").is_displayed(), what="the forced password change")
        # The API refuses everything else until the password is changed.
        self.assertEqual(self.page_fetch("/api/streams")["status"], 403)
        self.d.find_element(By.ID, "change-current").send_keys(self.generated)
        self.d.find_element(By.ID, "change-new").send_keys(self.admin_password)
        self.d.find_element(By.ID, "change-again").send_keys(self.admin_password)
        self.d.find_element(By.ID, "change-submit").click()
        wait_for(lambda: self.d.find_element(By.ID, "dash-view").is_displayed(), what="the dashboard after the change")
        self.assertFalse(os.path.exists(os.path.join(self.data, "admin-password.txt")), "the one-time password file is removed")
        # The generated password no longer works.
        self.assertEqual(self.http("/api/login", "POST", {"Content-Type": "application/json"}, {"name": "admin", "password": self.generated})[0], 401)

    def test_03_fleet_shows_the_right_colours_and_reasons(self):
        def settled():
            return all(self.row_status(sid) == want for sid, want in self.expected.items())
        wait_for(settled, timeout=60, what="every stream to reach its expected status: " + json.dumps(self.expected))
        reasons = {sid: self.text(f'tr[data-id="{sid}"] .reason') for sid in ("gate-wrong", "stairs", "garage", "unplugged")}
        self.assertTrue(reasons["gate-wrong"].startswith("unauthorized"), reasons)
        self.assertTrue(reasons["stairs"].startswith("frozen"), reasons)
        self.assertTrue(reasons["garage"].startswith("black"), reasons)
        self.assertTrue(reasons["unplugged"].startswith("connection_refused"), reasons)
        colours = {sid: self.js("return getComputedStyle(document.querySelector(arguments[0])).backgroundColor", f'tr[data-id="{sid}"] .badge')
                   for sid in ("lobby", "stairs", "unplugged")}
        self.assertEqual(len(set(colours.values())), 3, f"green, yellow and red badges differ: {colours}")
        self.assertEqual(self.d.find_element(By.ID, "n-down").text, "1")
        self.assertIn("e2e", self.text('tr[data-id="lobby"]'))
        self.assertEqual(self.text('tr[data-id="lobby"] .proto'), "RTSP")
        self.assertEqual(self.text('tr[data-id="office"] .proto'), "MJPEG")
        # No page, API answer or row carries a camera password.
        self.assertNotIn(CAMERA_PASSWORD, self.d.page_source)
        self.assertNotIn(CAMERA_PASSWORD, self.page_fetch("/api/streams")["body"])
        self.shot("desktop-light")

    def test_04_a_hostile_stream_name_renders_as_text(self):
        wait_for(lambda: self.d.find_element(By.CSS_SELECTOR, 'tr[data-id="xss"] .name'), what="the xss row")
        self.assertEqual(self.text('tr[data-id="xss"] .name'), XSS_NAME)
        self.assertEqual(self.d.find_elements(By.CSS_SELECTOR, 'tr[data-id="xss"] img'), [])
        with self.assertRaises(NoAlertPresentException):
            self.d.switch_to.alert.text
        csp = urllib.request.urlopen(self.base + "/").headers["Content-Security-Policy"]
        self.assertIn("script-src 'self'", csp)

    def test_05_a_stream_going_down_turns_red_without_reload(self):
        self.js("window.__noReload = 'still here'")
        self.assertEqual(self.row_status("doomed"), "ok")
        self.doomed.send_signal(signal.SIGKILL)
        wait_for(lambda: self.row_status("doomed") == "down", timeout=30, what="the doomed camera to turn red")
        self.assertEqual(self.js("return window.__noReload"), "still here", "the page was not reloaded")
        self.assertEqual(self.d.find_element(By.ID, "live").text, "live")
        self.assertEqual(self.d.find_element(By.ID, "n-down").text, "2")

    def test_06_history_modal_shows_timeline_and_checks(self):
        self.click_row("doomed")
        wait_for(lambda: self.d.find_element(By.ID, "history").get_attribute("open") is not None, what="the history modal")
        wait_for(lambda: len(self.d.find_elements(By.CSS_SELECTOR, "#h-checks tr")) >= 2, what="checks in the history")
        statuses = {e.text for e in self.d.find_elements(By.CSS_SELECTOR, "#h-checks .badge")}
        self.assertIn("ok", statuses)
        self.assertTrue({"down", "pending"} & statuses, statuses)
        self.assertGreaterEqual(len(self.d.find_elements(By.CSS_SELECTOR, "#h-timeline span")), 2, "the timeline shows the change")
        self.assertIn("Doomed MJPEG", self.d.find_element(By.ID, "h-title").text)
        self.shot("history")
        self.d.find_element(By.CSS_SELECTOR, "#history [data-close]").click()

    def test_07_live_preview_shows_real_frames_shared_and_capped(self):
        before = json.loads(self.page_fetch("/api/settings/previews")["body"])["upstream_sessions_started"]
        self.click_row("lobby")
        wait_for(lambda: self.d.find_element(By.ID, "h-preview").is_displayed(), what="the preview button")
        self.d.find_element(By.ID, "h-preview").click()
        img = self.d.find_element(By.ID, "h-preview-img")
        wait_for(lambda: self.js("return arguments[0].naturalWidth", img) > 0, timeout=20, what="a preview frame")
        width = self.js("return arguments[0].naturalWidth", img)
        self.assertGreater(width, 0)
        self.assertLessEqual(width, 640)
        # A second viewer of the same stream joins the running upstream session.
        second = self.page_fetch("/api/streams/lobby/preview?seconds=1")
        self.assertEqual(second["status"], 200)
        after = json.loads(self.page_fetch("/api/settings/previews")["body"])["upstream_sessions_started"]
        self.assertEqual(after - before, 1, "two viewers, one upstream session")
        self.shot("preview")
        self.d.find_element(By.CSS_SELECTOR, "#history [data-close]").click()
        # The global cap (max_previews: 2): a third concurrent stream is refused with 429.
        statuses = self.js("""
            const ids = ['office', 'gate', 'stairs'];
            return Promise.all(ids.map((id, i) => new Promise(r => setTimeout(r, i * 300)).then(() =>
              fetch('/api/streams/' + id + '/preview?seconds=4').then(res => { const s = res.status; if (res.body) res.body.cancel(); return s; }))));
        """)
        self.assertEqual(sorted(statuses), [200, 200, 429], statuses)
        self.assertEqual(self.page_fetch("/api/streams/nope/preview")["status"], 404)

    def test_08_csv_download_has_rows_and_no_password(self):
        self.d.find_element(By.ID, "export").click()
        link = self.d.find_element(By.ID, "x-link")
        self.assertIn("/api/export.csv", link.get_attribute("href"))
        link.click()
        path = wait_for(lambda: next((os.path.join(self.downloads, f) for f in os.listdir(self.downloads) if f.endswith(".csv")), None),
                        what="the CSV download")
        time.sleep(0.5)
        text = open(path).read()
        lines = text.strip().splitlines()
        self.assertGreater(len(lines), 10, text[:500])
        self.assertIn("lobby", text)
        self.assertNotIn(CAMERA_PASSWORD, text)
        self.assertNotIn("not-the-password", text)
        self.assertIn("+01:00", text, "times in the chosen time zone (Europe/Berlin in November)")
        self.d.find_element(By.CSS_SELECTOR, "#export-dialog [data-close]").click()

    def test_09_dark_mode_persists_across_reload_and_phone_layout(self):
        self.assertEqual(self.js("return document.documentElement.dataset.theme"), "light")
        self.d.find_element(By.ID, "theme").click()
        self.assertEqual(self.js("return document.documentElement.dataset.theme"), "dark")
        self.d.refresh()
        wait_for(lambda: self.d.find_element(By.ID, "dash-view").is_displayed(), what="the dashboard after reload")
        wait_for(lambda: self.row_status("lobby") == "ok", what="rows after reload")
        self.assertEqual(self.js("return document.documentElement.dataset.theme"), "dark")
        bg = self.js("return getComputedStyle(document.body).backgroundColor")
        self.assertEqual(bg, "rgb(15, 18, 23)")
        self.shot("desktop-dark")
        self.d.set_window_size(375, 812)
        time.sleep(0.5)
        overflow = self.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        self.assertLessEqual(overflow, 0, "no sideways scrolling on a 375 px phone")
        self.assertTrue(self.stable(lambda: self.d.find_element(By.CSS_SELECTOR, 'tr[data-id="lobby"] .badge').is_displayed()))
        self.shot("phone-dark")
        self.d.find_element(By.ID, "theme").click()
        self.shot("phone-light")
        self.d.set_window_size(1280, 900)

    def test_10_legend_is_generated_from_the_status_model(self):
        self.d.find_element(By.ID, "info").click()
        wait_for(lambda: len(self.d.find_elements(By.CSS_SELECTOR, "#legend-reasons tr")) > 10, what="the legend")
        text = self.d.find_element(By.ID, "legend").text
        for word in ("frozen", "black", "unauthorized", "connection_refused", "pending"):
            self.assertIn(word, text)
        self.d.find_element(By.CSS_SELECTOR, "#legend [data-close]").click()

    def test_11_admin_adds_a_viewer_who_cannot_open_settings_or_call_admin_apis(self):
        # With no NTP server configured, the clock pill shows the kernel's own synchronisation state.
        expected = "Clock synced" if kernel_clock_synced() else "Clock unsynced"
        wait_for(lambda: self.d.find_element(By.ID, "ntp").text.startswith(expected), what=f"the clock pill saying {expected}")
        # With the default zone UTC (a fresh start's default), the Settings select shows it, not an empty box.
        self.assertEqual(self.page_fetch("/api/settings", "PUT", {"timezone_default": "UTC"})["status"], 200)
        self.d.find_element(By.ID, "settings").click()
        wait_for(lambda: self.d.find_element(By.ID, "settings-dialog").get_attribute("open") is not None, what="settings")
        wait_for(lambda: self.js("return document.getElementById('s-tz').value") == "UTC", what="UTC selected in Settings")
        self.assertEqual(self.js("const s = document.getElementById('s-tz'); return s.options[s.selectedIndex].text"), "UTC")
        self.assertEqual(self.page_fetch("/api/settings", "PUT", {"timezone_default": "Europe/Berlin"})["status"], 200)
        self.assertIn("rtsp", self.d.find_element(By.ID, "s-plugins").text)
        self.d.find_element(By.ID, "s-user-name").send_keys("olga")
        self.d.find_element(By.ID, "s-user-password").send_keys("first-password-olga")
        self.d.find_element(By.CSS_SELECTOR, "#s-user-form button").click()
        wait_for(lambda: "olga" in self.d.find_element(By.ID, "s-users").text, what="the new user in the list")
        self.d.find_element(By.ID, "s-token-name").send_keys("prometheus")
        self.d.find_element(By.CSS_SELECTOR, "#s-token-form button").click()
        token = wait_for(lambda: self.d.find_element(By.ID, "s-token-new").text.split(": ", 1)[1], what="the new token")
        self.assertTrue(token.startswith("spt_"))
        self.shot("settings")
        self.d.find_element(By.CSS_SELECTOR, "#settings-dialog [data-close]").click()
        # The token works for /metrics and read APIs, not for admin ones; it is stored only as a digest.
        self.assertEqual(self.http("/metrics", headers={"Authorization": "Bearer " + token})[0], 200)
        self.assertEqual(self.http("/metrics")[0], 401)
        self.assertEqual(self.http("/api/users", headers={"Authorization": "Bearer " + token})[0], 403)
        db = sqlite3.connect(os.path.join(self.data, "streampulse.db"))
        self.assertEqual(db.execute("SELECT COUNT(*) FROM api_tokens WHERE digest = ?", (hashlib.sha256(token.encode()).hexdigest(),)).fetchone()[0], 1)
        self.assertEqual(db.execute("SELECT COUNT(*) FROM api_tokens WHERE digest = ?", (token,)).fetchone()[0], 0)
        hashes = [r[0] for r in db.execute("SELECT password_hash FROM users")]
        self.assertTrue(all(h.startswith("$2") for h in hashes), "bcrypt hashes only")
        db.close()
        # Olga signs in, must choose her own password, then sees no settings and is refused admin APIs.
        self.d.find_element(By.ID, "logout").click()
        self.sign_in("olga", "first-password-olga")
        wait_for(lambda: self.d.find_element(By.ID, "change-view").is_displayed(), what="olga's forced change")
        self.d.find_element(By.ID, "change-current").send_keys("first-password-olga")
        self.d.find_element(By.ID, "change-new").send_keys("olgas-own-password")
        self.d.find_element(By.ID, "change-again").send_keys("olgas-own-password")
        self.d.find_element(By.ID, "change-submit").click()
        wait_for(lambda: self.d.find_element(By.ID, "dash-view").is_displayed(), what="olga's dashboard")
        self.assertFalse(self.d.find_element(By.ID, "settings").is_displayed())
        self.assertEqual(self.page_fetch("/api/users")["status"], 403)
        self.assertEqual(self.page_fetch("/api/settings", "PUT", {"timezone_default": "UTC"})["status"], 403)
        self.assertEqual(self.page_fetch("/api/streams/lobby/preview")["status"], 403)
        self.assertEqual(self.page_fetch("/api/streams")["status"], 200)

    def api(self, path, method="GET", body=None):
        """A call from inside the page, with its session cookie and CSRF token."""
        return self.d.execute_async_script("""
            const [path, method, body, done] = [arguments[0], arguments[1], arguments[2], arguments[arguments.length - 1]];
            const init = { method, credentials: "same-origin", headers: { "X-CSRF-Token": window.__spCsrf() } };
            if (body !== null) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
            fetch(path, init).then(async (r) => done({ status: r.status, body: await r.text() }));
        """, path, method, body)

    def test_13_incidents_view_lists_an_incident_and_acknowledges_it(self):
        # test_12 ended the session: sign in again as the admin.
        self.sign_in("admin", self.admin_password)
        wait_for(lambda: self.d.find_element(By.ID, "dash-view").is_displayed(), what="the dashboard")
        wait_for(lambda: self.row_status("lobby") == "ok", what="the table")
        # The unplugged stream is down but in maintenance: marked, and never an incident.
        wait_for(lambda: self.d.find_elements(By.CSS_SELECTOR, 'tr[data-id="unplugged"][data-maintenance="true"] .st-maintenance'),
                 what="the maintenance badge on the unplugged row")
        self.assertEqual(self.row_status("unplugged"), "down")
        wait_for(lambda: self.text("#n-incidents") not in ("", "0"), timeout=40, what="an open incident in the header count")
        self.d.find_element(By.ID, "incidents").click()
        rows = wait_for(lambda: self.d.find_elements(By.CSS_SELECTOR, '#i-rows tr[data-open="true"]'), what="an open incident row")
        self.shot("13-incidents")
        incident_id = rows[0].get_attribute("data-incident")
        listed = json.loads(self.api("/api/incidents?state=open")["body"])
        self.assertFalse(any("unplugged" in x["incident"]["streams"] for x in listed), "a stream in maintenance opened an incident")
        rows[0].find_element(By.CSS_SELECTOR, "input.ack-comment").send_keys("checking the switch")
        rows[0].find_element(By.CSS_SELECTOR, "button.ack").click()
        wait_for(lambda: "checking the switch" in self.text(f'#i-rows tr[data-incident="{incident_id}"] td.acked'), what="the acknowledgement shown")
        stored = [x["incident"] for x in json.loads(self.api("/api/incidents?state=open")["body"]) if str(x["incident"]["id"]) == incident_id][0]
        self.assertEqual(stored["acknowledged_by"], "admin")
        self.assertEqual(stored["acknowledge_comment"], "checking the switch")
        self.d.find_element(By.CSS_SELECTOR, "#incidents-dialog [data-close]").click()

    def test_14_an_admin_silences_a_group_for_an_hour(self):
        self.d.get(self.base + "/")
        wait_for(lambda: self.row_status("lobby") == "ok", what="the table")
        self.d.find_element(By.ID, "incidents").click()
        wait_for(lambda: self.d.find_element(By.ID, "i-silence-form").is_displayed(), what="the silence form (admin)")
        from selenium.webdriver.support.ui import Select
        Select(self.d.find_element(By.ID, "i-silence-group")).select_by_value("lobby")
        Select(self.d.find_element(By.ID, "i-silence-for")).select_by_value("3600")
        self.d.find_element(By.ID, "i-silence-comment").send_keys("lens cleaning")
        self.d.find_element(By.ID, "i-silence-submit").click()
        item = wait_for(lambda: self.d.find_elements(By.CSS_SELECTOR, "#i-silences li"), what="the silence listed")
        self.assertIn("group lobby", item[0].text)
        self.assertIn("lens cleaning", item[0].text)
        silences = json.loads(self.api("/api/silences")["body"])
        self.assertEqual([s["match"]["groups"] for s in silences], [["lobby"]])
        remaining = (time.mktime(time.strptime(silences[0]["until"], "%Y-%m-%dT%H:%M:%SZ")) - time.mktime(time.gmtime()))
        self.assertTrue(3500 < remaining <= 3600, remaining)
        self.d.find_element(By.CSS_SELECTOR, "#incidents-dialog [data-close]").click()
        # The lobby row shows the maintenance state (its verdict stays beside it).
        wait_for(lambda: self.d.find_elements(By.CSS_SELECTOR, 'tr[data-id="lobby"][data-maintenance="true"]'), timeout=15,
                 what="the lobby row in maintenance")
        self.assertEqual(self.row_status("lobby"), "ok")
        self.shot("14-silenced")

    def test_15_legend_explains_maintenance(self):
        self.d.get(self.base + "/")
        wait_for(lambda: self.d.find_element(By.ID, "info").is_displayed(), what="the legend button")
        self.d.find_element(By.ID, "info").click()
        text = wait_for(lambda: self.text("#legend-statuses"), what="the legend")
        self.assertIn("maintenance", text)
        self.assertIn("nothing is notified", text)
        self.d.find_element(By.CSS_SELECTOR, "#legend [data-close]").click()

    def test_16_picture_health_evidence_and_admin_buttons(self):
        self.d.get(self.base + "/")
        wait_for(lambda: self.row_status("stairs") == "degraded", what="the frozen stairs row")
        # A frozen stream's history shows the first and the last picture of its window, both real pictures.
        self.click_row("stairs")
        wait_for(lambda: self.d.find_element(By.ID, "history").get_attribute("open") is not None, what="the history modal")
        loaded = lambda css: self.d.execute_script(
            "return [...document.querySelectorAll(arguments[0])].filter((i) => i.complete && i.naturalWidth > 0).length", css)
        wait_for(lambda: loaded('#h-reference img[src*="/last.jpg"]') == 1 and loaded('#h-reference img[src*="/thumbnail.jpg"]') == 1,
                 timeout=20, what="the first and last picture of the frozen window")
        self.assertIn("last picture", self.text("#h-reference"))
        self.shot("16-frozen-evidence")
        self.d.find_element(By.CSS_SELECTOR, "#history [data-close]").click()
        # The lobby camera: once its profile is learned, the admin buttons set the reference and accept the profile.
        wait_for(lambda: json.loads(self.api("/api/streams/lobby/baseline")["body"]).get("profile_source") == "learned",
                 timeout=40, what="the lobby's learned profile")
        self.click_row("lobby")
        wait_for(lambda: self.d.find_element(By.ID, "h-baseline-tools").is_displayed(), what="the admin's picture buttons")
        self.assertIn("Profile (learned", self.text("#h-profile"))
        self.d.find_element(By.ID, "h-set-reference").click()
        wait_for(lambda: "reference" in self.text("#h-baseline-msg"), what="the reference request acknowledged")
        wait_for(lambda: json.loads(self.api("/api/streams/lobby/baseline")["body"]).get("reference_by") == "admin",
                 timeout=30, what="the reference set by the admin")
        self.d.find_element(By.ID, "h-accept-profile").click()
        wait_for(lambda: json.loads(self.api("/api/streams/lobby/baseline")["body"]).get("profile_source") == "accepted by admin",
                 timeout=10, what="the profile accepted by the admin")
        self.d.find_element(By.CSS_SELECTOR, "#history [data-close]").click()
        self.click_row("lobby")
        wait_for(lambda: "set by admin" in self.text("#h-reference"), timeout=15, what="the reference caption naming the admin")
        self.assertIn("accepted by admin", self.text("#h-profile"))
        self.shot("16-reference-set")
        self.d.find_element(By.CSS_SELECTOR, "#history [data-close]").click()

    def test_17_sites_have_a_column_a_filter_and_counters(self):
        wait_for(lambda: self.text('tr[data-id="unplugged"]'), what="the rows")
        self.assertEqual(self.text('tr[data-id="lobby"] td.c-site'), "hq")
        self.assertEqual(self.text('tr[data-id="office"] td.c-site'), "depot")
        self.assertEqual(self.text('tr[data-id="stairs"] td.c-site'), "–")
        # The counters are redrawn by live updates at any moment: read them in one script call.
        counters = self.js("return Object.fromEntries([...document.querySelectorAll('#site-counters .site-count')]"
                           ".map((b) => [b.dataset.site, b.innerText]))")
        self.assertEqual(sorted(counters), ["depot", "hq"], counters)
        self.assertTrue(counters["hq"].startswith("hq 2"), counters)
        # A click on a site's counter filters the list to it; a second click shows every stream again.
        self.click_css('#site-counters [data-site="depot"]')
        wait_for(lambda: self.js("return [...document.querySelectorAll('#rows tr')].map((r) => r.dataset.id)") == ["office"],
                 what="only the depot's stream listed")
        self.assertEqual(self.js("return document.getElementById('f-site').value"), "depot")
        self.click_css('#site-counters [data-site="depot"]')
        wait_for(lambda: len(self.d.find_elements(By.CSS_SELECTOR, "#rows tr")) > 1, what="every stream listed again")

    def test_12_csrf_forged_and_expired_cookies_are_rejected(self):
        cookie = self.cookie()
        jar = {"Cookie": f"sp_session={cookie}", "Content-Type": "application/json"}
        # A state-changing request with the session cookie but without the CSRF token is refused …
        self.assertEqual(self.http("/api/me/password", "POST", jar, {"current": "olgas-own-password", "new": "x" * 12})[0], 403)
        self.assertEqual(self.http("/api/logout", "POST", jar)[0], 403)
        # … and so is a wrong token; the session still works for reading.
        self.assertEqual(self.http("/api/logout", "POST", {**jar, "X-CSRF-Token": "forged"})[0], 403)
        self.assertEqual(self.http("/api/streams", headers=jar)[0], 200)
        # A forged cookie opens nothing.
        self.assertEqual(self.http("/api/streams", headers={"Cookie": "sp_session=" + "A" * 43})[0], 401)
        # An expired session is refused (expiry moved into the past in the real database).
        db = sqlite3.connect(os.path.join(self.data, "streampulse.db"))
        db.execute("UPDATE sessions SET expires_at = ? WHERE id_digest = ?", (time.time() - 1, hashlib.sha256(cookie.encode()).hexdigest()))
        db.commit()
        db.close()
        self.assertEqual(self.http("/api/streams", headers=jar)[0], 401)
        # The page notices and asks to sign in again.
        self.d.refresh()
        wait_for(lambda: self.d.find_element(By.ID, "login-view").is_displayed(), what="the sign-in form after expiry")
        set_cookie = urllib.request.urlopen(urllib.request.Request(self.base + "/api/login", method="POST",
            headers={"Content-Type": "application/json"}, data=json.dumps({"name": "admin", "password": self.admin_password}).encode())).headers["Set-Cookie"]
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
            self.assertIn(attribute, set_cookie)


def kernel_clock_synced():
    """The kernel's clock state as adjtimex(2) reports it: not TIME_ERROR and no STA_UNSYNC bit."""
    import ctypes

    class Timex(ctypes.Structure):
        _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long), ("maxerror", ctypes.c_long),
                    ("esterror", ctypes.c_long), ("status", ctypes.c_int), ("rest", ctypes.c_byte * 256)]

    t = Timex()
    state = ctypes.CDLL(None).adjtimex(ctypes.byref(t))
    return state != 5 and not (t.status & 0x40)


if __name__ == "__main__":
    unittest.main(verbosity=2)
