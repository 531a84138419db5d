"""`textseq serve` for real: a server process on a free loopback port, its JSON API, a bounded load,
and the page driven in headless Chromium (skipped, with the reason, where Chromium is not installed)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from textseq.cli import cli
from textseq.errors import UserError
from textseq.inference import LanguageModel, Translator, prediction_record
from textseq.serve.requests import MAX_BODY_BYTES, MAX_TEXT_CHARACTERS, MAX_TEXT_TOKENS
from textseq.serve.server import bind, is_loopback

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NO_BROWSER = "Chromium is not installed (Debian: apt-get install chromium chromium-driver)"


class Server:
    """`textseq serve RUN --port 0` in a subprocess; `stop()` sends Ctrl-C (SIGINT)."""

    def __init__(self, run: Path, *options: str):
        self.process = subprocess.Popen([sys.executable, "-m", "textseq", "serve", str(run), "--port", "0", *options],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        for line in self.process.stderr:  # the URL line comes once the run is loaded and the port bound
            self.lines.append(line)
            if " at http://" in line:
                self.url = line.split(" at ")[1].split()[0]
                break
        else:
            raise AssertionError("the server ended without serving:\n" + "".join(self.lines))

    def post(self, endpoint: str, body: dict | bytes | str) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        return self.request(endpoint, data)

    def request(self, path: str, data: bytes | None = None, method: str | None = None) -> tuple[int, dict]:
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def stop(self) -> tuple[int, str]:
        self.process.send_signal(signal.SIGINT)
        _, rest = self.process.communicate(timeout=30)
        return self.process.returncode, "".join(self.lines) + rest


def serving(run: Path):
    server = Server(run)
    yield server
    if server.process.poll() is None:
        server.stop()


@pytest.fixture(scope="module")
def lm_server(lm_run):
    yield from serving(lm_run)


@pytest.fixture(scope="module")
def translation_server(trained_run):
    yield from serving(trained_run)


def test_the_api_answers_as_the_library_does(lm_run, lm_server):
    model = LanguageModel.from_run(lm_run)
    status, info = lm_server.request("api/info")
    assert status == 200 and info["task"] == "language_model" and info["level"] == "word"
    assert info["limits"] == {"characters": MAX_TEXT_CHARACTERS, "tokens": MAX_TEXT_TOKENS, "body_bytes": MAX_BODY_BYTES}
    long_text = " ".join(["a man in a red shirt"] * 80)  # 480 tokens: far over the context, under the limit
    for text in ["a man is", "", "   ", "qqqzx zzyqq", "男人 在 骑 自行车", "a café", long_text]:
        status, answer = lm_server.post("api/predict", {"text": text, "suggestions": 4})
        assert status == 200, answer
        expected = prediction_record(model, text, 4)
        assert answer["text"] == text and answer["unknown"] == expected["unknown"]
        assert [p["token"] for p in answer["predictions"]] == [p["token"] for p in expected["predictions"]]
        np.testing.assert_allclose([p["probability"] for p in answer["predictions"]],
                                   [p["probability"] for p in expected["predictions"]], rtol=1e-5)
    status, old_name = lm_server.post("api/predict", {"text": "a man is", "top_k": 2})  # the field's old name
    assert status == 200 and len(old_name["predictions"]) == 2
    assert lm_server.post("api/predict", {"text": "qqqzx zzyqq"})[1]["unknown"] == ["qqqzx", "zzyqq"]

    status, answer = lm_server.post("api/generate", {"text": "two dogs", "max_tokens": 7, "temperature": 0.9,
                                                     "top_k": 20, "seed": 3})
    assert status == 200
    assert answer == {"text": "two dogs", "continuation": model.generate("two dogs", 7, 0.9, 20, None, 3)}


@pytest.mark.parametrize("endpoint, body, status, message", [
    ("api/predict", b"{not json", 400, "not valid JSON"),
    ("api/predict", b"[1, 2]", 400, "expected a JSON object"),
    ("api/predict", {"text": "a", "topk": 3}, 400, 'unknown field "topk"; this endpoint takes: text, suggestions'),
    ("api/predict", {"text": 5}, 400, 'field "text": expected a string, got 5'),
    ("api/predict", {"text": "a", "suggestions": "3"}, 400, 'field "suggestions": expected an integer'),
    ("api/predict", {"text": "a", "suggestions": 0}, 400, 'field "suggestions": 0 is out of range; expected at least 1'),
    ("api/predict", {"text": "a", "suggestions": True}, 400, 'field "suggestions": expected an integer, got true'),
    ("api/generate", {"text": "a", "top_p": 0}, 400, 'field "top_p": 0 is out of range; expected above 0 and at most 1'),
    ("api/generate", {"text": "a", "max_tokens": 10_000}, 400, "expected at least 0 and at most 500"),
    ("api/predict", {"text": "a" * (MAX_TEXT_CHARACTERS + 1)}, 413, f"at most {MAX_TEXT_CHARACTERS} are accepted"),
    ("api/predict", {"text": "a " * (MAX_TEXT_TOKENS + 1)}, 413, f"{MAX_TEXT_TOKENS + 1} tokens; at most"),
    ("api/predict", b'{"text": "' + b"a" * MAX_BODY_BYTES + b'"}', 413, "request body too large"),
    ("api/predict", b"\xff\xfe", 400, "not valid JSON"),
    ("api/predict", b"", 400, "the request body is empty"),
    ("api/generate", b"  ", 400, "the request body is empty"),
    ("api/translate", {"text": "a"}, 404, "needs a translate run"),
    ("api/predict", b'{"suggestions": ' + b"9" * 4301 + b"}", 400, "a number of thousands of digits"),
    ("api/predict", b'{"suggestions": ' + b"9" * 400 + b"}", 400, 'field "suggestions": 999999999999... is out of range'),
    ("api/predict", b"[" * 30_000 + b"]" * 30_000, 400, "the request body nests too deeply"),
    ("api/predict", b'{"text": ' + b"[" * 200 + b"]" * 200 + b"}", 400, 'field "text": expected a string, got a list'),
    ("api/predict", {"text": "a", "suggestions": {"n": 3}}, 400, 'field "suggestions": expected an integer, got an object'),
    ("api/predict", b'{"text": "a \\ud800 b"}', 400, 'field "text": character 3 is an unpaired surrogate ("\\ud800")'),
    ("api/predict", b'{"\\udfff": 1}', 400, 'unknown field "\\udfff"'),
    ("api/generate", b'{"text": "a", "temperature": NaN}', 400, 'field "temperature": expected a finite number'),
    ("api/generate", b'{"text": "a", "temperature": Infinity}', 400, 'field "temperature": expected a finite number'),
    ("api/generate", {"text": "a", "temperature": 1e-300}, 400, "expected at least 0.001 and at most 100"),
    ("api/generate", {"text": "a", "top_p": 1e400}, 400, 'field "top_p": expected a finite number'),
    ("api/generate", {"text": "a", "seed": -1}, 400, "expected at least 0 and at most 4294967295"),
])
def test_bad_requests_get_json_4xx_errors(lm_server, endpoint, body, status, message):
    got, answer = lm_server.post(endpoint, body)
    assert (got, answer["status"]) == (status, status)
    assert message in answer["error"]


def test_json_about_a_thousand_deep_is_a_client_error(lm_server):
    # Whether the parser or the field check stops it depends on the stack it runs on: 400 either way.
    for body in (b"[" * 1000 + b"]" * 1000, b'{"text": ' + b"[" * 1000 + b"]" * 1000 + b"}"):
        status, answer = lm_server.post("api/predict", body)
        assert (status, answer["status"]) == (400, 400)
        assert answer["error"].startswith(("the request body nests too deeply", 'field "text": expected a string',
                                           "expected a JSON object"))


def raw_request(url: str, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    """One request with exactly these headers (urllib would add its own): (status, JSON answer)."""
    import http.client

    host, port = url.split("//")[1].rstrip("/").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    if "Host" not in (headers or {}):
        connection._http_vsn_str = "HTTP/1.0"  # HTTP/1.1 requires a Host header; 1.0 may go without
    connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    for name, value in (headers or {}).items():
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders(body)
    response = connection.getresponse()
    answer = response.status, json.loads(response.read())
    connection.close()
    return answer


def test_web_pages_cannot_post_or_rebind_their_way_in(lm_server):
    host = lm_server.url.split("//")[1].rstrip("/")
    body = json.dumps({"text": "a man is riding a"}).encode()
    assert raw_request(lm_server.url, "POST", "/api/predict", body,
                       {"Host": host, "Content-Type": "application/json; charset=utf-8"})[0] == 200
    # What a page on another site may send unasked: text/plain, a form, or no type at all.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        headers = {"Host": host, **({"Content-Type": content_type} if content_type else {})}
        status, answer = raw_request(lm_server.url, "POST", "/api/predict", body, headers)
        assert (status, answer["status"]) == (415, 415), content_type
        assert 'send the body as JSON with the header "Content-Type: application/json"' in answer["error"]
    # DNS rebinding: the page's own name pointed at 127.0.0.1; its requests still carry that name.
    for foreign in ("attacker.example:" + host.split(":")[1], "attacker.example", "127.0.0.1.nip.io"):
        for method, path, payload in [("POST", "/api/predict", body), ("GET", "/api/info", b""), ("GET", "/", b"")]:
            headers = {"Host": foreign, "Content-Type": "application/json"}
            status, answer = raw_request(lm_server.url, method, path, payload, headers)
            assert (status, answer["status"]) == (403, 403), (foreign, path)
            assert "is not served here; this server answers requests to 127.0.0.1, [::1], localhost" in answer["error"]
    status, answer = raw_request(lm_server.url, "GET", "/api/info", b"", {})  # no Host header at all
    assert (status, answer["status"]) == (403, 403) and 'Host "missing" is not served here' in answer["error"]
    for allowed in ("localhost:1234", "LOCALHOST", "[::1]:80"):
        assert raw_request(lm_server.url, "GET", "/api/info", b"", {"Host": allowed})[0] == 200


@pytest.mark.slow
def test_idle_and_slow_connections_are_closed_after_the_idle_timeout_and_ctrl_c_stops_cleanly(trained_run):
    server = Server(trained_run, "--idle-timeout", "1", "--allowed-host", "translate.example.org")
    try:
        host, port = server.url.split("//")[1].rstrip("/").rsplit(":", 1)
        assert raw_request(server.url, "GET", "/api/info", b"", {"Host": "translate.example.org"})[0] == 200
        idle = [socket.create_connection((host, int(port))) for _ in range(50)]
        trickling = [socket.create_connection((host, int(port))) for _ in range(70)]
        for connection in trickling:
            connection.sendall(b"GET /api/info HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and the rest never comes
        opened = time.monotonic()
        # They hold no place among the requests in progress: another client is answered meanwhile.
        assert server.request("api/info")[0] == 200 and time.monotonic() - opened < 1
        for connection in [*idle, *trickling]:
            connection.settimeout(10)
            assert connection.recv(1024) == b"", "the server sent something instead of closing"  # closed
        assert time.monotonic() - opened < 5
        assert server.request("api/info")[0] == 200  # and it still serves
    finally:
        for connection in [*idle, *trickling]:
            connection.close()
        code, output = server.stop()  # Ctrl-C
    assert code == 0 and output.rstrip().endswith("stopped") and "Traceback" not in output, output
    result = CliRunner().invoke(cli, ["serve", str(trained_run), "--idle-timeout", "nan"])
    assert result.exit_code == 2 and "--idle-timeout nan: expected seconds" in result.stderr, result.output


def test_unknown_paths_and_methods_get_json_errors_and_no_file_is_served(lm_server):
    for path, method, status in [("api/predict", "GET", 405), ("nope", "GET", 404), ("api/", "GET", 404),
                                 ("..%2f..%2fetc%2fpasswd", "GET", 404), ("static/../recipe.yaml", "GET", 404),
                                 ("recipe.yaml", "GET", 404), ("api/info", "POST", 405)]:
        got, answer = lm_server.request(path, b"{}" if method == "POST" else None, method)
        assert (got, answer["status"]) == (status, status), path
        assert answer["error"]


def test_a_bounded_load_gets_no_errors(lm_server, record_property):
    """8 concurrent clients, 500 requests to /api/predict, on loopback: every one answered 200."""
    texts = ["a man", "two dogs are", "a woman in a red", "", "children play in the"]
    latencies, failures, lock = [], [], threading.Lock()

    def client(index: int, count: int):
        for i in range(count):
            started = time.perf_counter()
            status, answer = lm_server.post("api/predict", {"text": texts[(index + i) % len(texts)]})
            with lock:
                latencies.append(time.perf_counter() - started)
                if status != 200 or len(answer["predictions"]) != 5:
                    failures.append((status, answer))

    counts = [63] * 4 + [62] * 4  # 500 in all
    threads = [threading.Thread(target=client, args=(i, n)) for i, n in enumerate(counts)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    assert failures == [] and len(latencies) == 500
    p50, p99 = np.percentile(latencies, [50, 99]) * 1000
    record_property("predict_p50_ms", round(float(p50), 2))
    record_property("predict_p99_ms", round(float(p99), 2))
    print(f"\n/api/predict under 8 clients: 500 requests in {wall:.1f} s, p50 {p50:.1f} ms, p99 {p99:.1f} ms")


def test_translation_api_returns_the_translation_and_its_attention(trained_run, translation_server):
    translator = Translator.from_run(trained_run)
    status, answer = translation_server.post("api/translate", {"text": "3rd of March 1998", "beam_size": 2, "n_best": 2})
    assert status == 200
    expected = translator.n_best(["3rd of March 1998"], translator.options(beam_size=2, n_best=2))[0]
    assert answer["translation"] == expected[0].text
    assert [h["text"] for h in answer["hypotheses"]] == [h.text for h in expected]
    attention = answer["attention"]
    weights = np.array(attention["weights"])
    assert weights.shape == (len(attention["output_tokens"]), len(attention["source_tokens"]))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-4)
    assert translation_server.post("api/predict", {"text": "a"})[0] == 404
    assert translation_server.post("api/translate", {"text": "  "})[1] == {
        "error": 'field "text": empty; give the text to translate', "status": 400}
    assert translation_server.post("api/translate", {"text": "a", "beam_size": 2, "n_best": 3})[1]["error"] == (
        "decode.n_best: 3 is more than decode.beam_size 2; ask for at most beam_size hypotheses")


def test_the_score_api_answers_as_the_library_does(trained_run, translation_server, lm_run, lm_server):
    status, answer = translation_server.post("api/score", {"text": "3rd of March 1998", "target": "1998-03-03"})
    assert status == 200
    expected = Translator.from_run(trained_run).score([("3rd of March 1998", "1998-03-03")])[0]
    assert answer == pytest.approx(expected)
    text = "a man is riding a bike .\ntwo dogs play ."
    status, answer = lm_server.post("api/score", {"text": text})
    assert status == 200 and answer["lines"] == pytest.approx(LanguageModel.from_run(lm_run).score(text))
    assert lm_server.post("api/score", {"text": "a", "target": "b"})[0] == 400


def test_loopback_only_unless_asked_and_a_busy_port_is_a_user_error():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match=f"--port {port}: cannot listen on 127.0.0.1:{port}.*--port 0"):
            bind("127.0.0.1", port)


# ---- the page, in a real browser ----


@pytest.fixture
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip(NO_BROWSER)
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def shown_predictions(browser, text: str, timeout: float = 60) -> list[tuple[str, float]]:
    """The predictions the page shows once it shows them for `text`."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, timeout).until(lambda b: b.find_element(By.ID, "predictions").get_attribute("data-text")
                                          == text)
    return [(item.get_attribute("data-token"), float(item.get_attribute("data-probability")))
            for item in browser.find_elements(By.CSS_SELECTOR, "#predictions li")]


@pytest.mark.slow
def test_the_page_shows_what_textseq_predict_prints(lm_run, lm_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(lm_server.url)
    box = WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "lm-text"))
    shown_predictions(browser, "")  # the page asks for the first word at once
    box.send_keys("a man is")  # key by key: every keystroke schedules a request, stale ones are cancelled
    shown = shown_predictions(browser, "a man is")

    predicted = CliRunner().invoke(cli, ["predict", str(lm_run), "a man is", "--json"])
    assert predicted.exit_code == 0, predicted.output
    printed = json.loads(predicted.stdout)["predictions"]
    assert [token for token, _ in shown] == [p["token"] for p in printed]
    np.testing.assert_allclose([p for _, p in shown], [p["probability"] for p in printed], rtol=1e-5)
    screenshot = tmp_path / "serve-lm.png"
    browser.save_screenshot(str(screenshot))
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Clicking a word appends it, and the predictions follow.
    first = next(token for token, _ in shown if token not in ("</s>", "<unk>"))
    browser.find_element(By.CSS_SELECTOR, f'#predictions li[data-token="{first}"] button').click()
    assert box.get_attribute("value") == f"a man is {first}"
    shown_predictions(browser, f"a man is {first}")

    # "Continue" generates with the page's settings: the same text the library generates.
    model = LanguageModel.from_run(lm_run)
    for field, value in (("gen-max-tokens", "6"), ("gen-temperature", "0.8"), ("gen-seed", "7")):
        browser.find_element(By.ID, field).clear()
        browser.find_element(By.ID, field).send_keys(value)
    browser.find_element(By.ID, "continue").click()
    continuation = model.generate(f"a man is {first}", 6, temperature=0.8, seed=7)
    WebDriverWait(browser, 60).until(lambda b: box.get_attribute("data-continuation") is not None)
    assert box.get_attribute("data-continuation") == continuation
    assert box.get_attribute("value") == f"a man is {first} {continuation}"


def test_the_page_translates_and_draws_the_attention(trained_run, translation_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(translation_server.url)
    source = WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "source"))
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "translation").is_displayed())
    source.send_keys("3rd of March 1998")
    browser.find_element(By.ID, "translate").click()
    target = browser.find_element(By.ID, "target")
    WebDriverWait(browser, 60).until(lambda b: target.get_attribute("data-source") == "3rd of March 1998")
    translator = Translator.from_run(trained_run)
    assert target.text == translator.translate(["3rd of March 1998"])[0]
    found = translator.attention("3rd of March 1998")
    canvas = browser.find_element(By.ID, "heatmap")
    assert (int(canvas.get_attribute("data-rows")), int(canvas.get_attribute("data-columns"))) == found.weights.shape
    # The heatmap is drawn: its darkest cell has the shade of the largest weight, white stays white.
    darkest, lightest = browser.execute_script("""
        const canvas = document.getElementById("heatmap");
        const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
        let low = 255, high = 0;
        for (let i = 0; i < pixels.length; i += 4) {
          if (pixels[i + 2] === 255) { low = Math.min(low, pixels[i]); high = Math.max(high, pixels[i]); }
        }
        return [low, high];""")
    assert abs(darkest - round(255 * (1 - found.weights.max()))) <= 1 and lightest == 255
    browser.save_screenshot(str(tmp_path / "serve-translation.png"))


def test_another_host_than_loopback_is_warned_about_and_a_missing_run_is_a_user_error(tmp_path):
    from textseq.serve import serve

    said = []
    with pytest.raises(UserError):
        serve(tmp_path / "no-run", host="0.0.0.0", port=0, say=said.append)
    assert said == ["warning: listening on 0.0.0.0: anyone who can reach this machine on port 0 can use the model; "
                    "there is no authentication"]


def test_every_number_a_request_sets_has_an_upper_bound():
    from textseq.serve.requests import GENERATE, PREDICT, TRANSLATE

    for endpoint in (PREDICT, GENERATE, TRANSLATE):
        for name, field in endpoint.items():
            if field.kind != "text":
                assert field.high is not None, name
                with pytest.raises(Exception, match=f'field "{name}": .* is out of range; expected .*at most'):
                    field.check(name, field.high + 1)


def test_requests_beyond_the_limit_get_503_with_retry_after_and_json():
    import asyncio

    from textseq.serve.server import RequestLimit

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b""}

    asyncio.run(RequestLimit(None, 0)({"type": "http", "method": "GET", "path": "/api/info"}, receive, send))
    headers = dict(sent[0]["headers"])
    assert sent[0]["status"] == 503 and headers[b"retry-after"] == b"1"
    assert json.loads(sent[1]["body"]) == {"status": 503, "error": "the server is answering 0 requests; try again "
                                                                   "in a moment"}
