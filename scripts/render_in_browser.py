"""Render an HTML report in a real headless Chromium and print what a reader sees.

    python scripts/render_in_browser.py runs/quickstart/report.html [--browser PATH]

Talks to the browser over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
commands on fd 3, replies on fd 4, each a JSON message ending in NUL), so it needs no
Python package and no network port. Prints the page's rendered text (`innerText`) and
exits 1 when an embedded image failed to decode. Used by tests/report/test_html_browser.py.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


class DevTools:
    """A headless browser driven over its DevTools pipe."""

    def __init__(self, browser: str, timeout: float = 60.0) -> None:
        self.timeout = timeout
        to_browser_r, self._send = os.pipe()
        self._read, from_browser_w = os.pipe()
        self.profile = tempfile.TemporaryDirectory()

        def wire_pipes():  # in the child: the browser expects fd 3 (commands in) and 4 (replies out)
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.process = subprocess.Popen(
            [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={self.profile.name}", "about:blank"],
            preexec_fn=wire_pipes, pass_fds=(3, 4, to_browser_r, from_browser_w),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer, self._next_id = b"", 0

    def call(self, method: str, session: str | None = None, **params):
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._send, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            while b"\0" in self._buffer:
                raw, self._buffer = self._buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self._next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply["result"]
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed its DevTools pipe")
            self._buffer += chunk
        raise TimeoutError(f"{method}: no reply in {self.timeout:g} s")

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        os.close(self._send)
        os.close(self._read)
        self.profile.cleanup()


def render(path: Path, browser: str) -> dict:
    """{'text': rendered text, 'images': count, 'broken_images': count} of the page at `path`."""
    tools = DevTools(browser)
    try:
        target = tools.call("Target.createTarget", url=path.resolve().as_uri())["targetId"]
        session = tools.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        url, ready = path.resolve().as_uri(), "location.href + ' ' + document.readyState"
        state, deadline = "", time.monotonic() + tools.timeout
        while state != f"{url} complete" and time.monotonic() < deadline:  # the new page, not about:blank
            state = tools.call("Runtime.evaluate", session, expression=ready, returnByValue=True)["result"]["value"]
            time.sleep(0.05)
        if state != f"{url} complete":
            raise TimeoutError(f"{url} did not finish loading in {tools.timeout:g} s (last state: {state})")
        expression = ("({text: document.body.innerText, images: document.images.length, "
                      "broken_images: Array.from(document.images).filter(i => !i.complete || !i.naturalWidth).length})")
        return tools.call("Runtime.evaluate", session, expression=expression, returnByValue=True)["result"]["value"]
    finally:
        tools.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("--browser", default=None, help=f"browser binary; default the first of {', '.join(BROWSERS)}")
    args = parser.parse_args()
    browser = args.browser or find_browser()
    if browser is None:
        print(f"no headless browser found (looked for {', '.join(BROWSERS)}); e.g. apt-get install chromium",
              file=sys.stderr)
        return 2
    page = render(args.html, browser)
    print(page["text"])
    if page["broken_images"]:
        print(f"{page['broken_images']} of {page['images']} images did not decode", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
