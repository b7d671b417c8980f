"""The app under a property-based API fuzzer: schemathesis reads the contract the app serves (GET /openapi.json) and
sends, to one running node of every strategy, requests that fit it (positive) and requests that break it
(negative). Every answer must be described by the document (status code, content type, JSON schema, X-Served-By),
never a 5xx; an invalid request must be refused (4xx) and a valid one never be a 400; and a refused request must
leave the session as it was.

Bounded: a fixed number of examples per operation and mode (no shrinking, no example database), each request with
a timeout, and the whole run of one strategy under a time limit that fails the test when exceeded.
"""

from __future__ import annotations

import json
import time
from http.cookies import SimpleCookie

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from harness.cluster import Cluster
from sample_app.app import create_app
from sample_app.settings import STRATEGIES, Settings
from tests.conftest import MEASURED

from .test_store_properties import json_equal

EXAMPLES = {"session": 50, "public": 10, "raw": 400}  # per operation and mode (operations that use a session get
# more), and raw bodies per strategy
SECONDS_PER_STRATEGY = 240.0  # a bound against a hang, far above the ~10-20 s it takes on a loaded 2-core machine
REQUEST_TIMEOUT = 10.0
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

CREDENTIAL = {True: ParameterLocation.HEADER, False: ParameterLocation.COOKIE}  # bearer: Authorization
FUZZ_SETTINGS = dict(
    deadline=None,
    database=None,
    derandomize=False,
    print_blob=True,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],  # no shrinking: a failure is reported as found
    suppress_health_check=list(hypothesis.HealthCheck),
)


@pytest.fixture(scope="module", params=STRATEGIES)
def node(request, backends):
    cluster = Cluster(request.param, backends, size=1).start()
    yield cluster
    cluster.destroy()


class Victim:
    """A fresh session for one example: its handle, and what reading it must show if the request was refused."""

    def __init__(self, url: str, bearer: bool, http: requests.Session):
        self.url, self.bearer, self.http = url, bearer, http
        response = http.post(url + "/login", json={"username": "fuzz"}, timeout=REQUEST_TIMEOUT)
        http.cookies.clear()  # the session goes only where install() puts it, never along with every request
        assert response.status_code == 200, response.text
        self.handle = self.handle_from(response)
        self.expected = {"user": "fuzz", "counter": 0, "data": {}}

    def handle_from(self, response) -> str | None:
        if self.bearer:
            return response.json().get("token") if response.status_code == 200 else None
        # a requests.Response (login), or schemathesis' Response (lower-case names, a list of values each)
        headers = (
            response.raw.headers.getlist("Set-Cookie")
            if hasattr(response, "raw")
            else response.headers.get("set-cookie", [])
        )
        for header in headers:
            cookie = SimpleCookie(header).get("SESSION")
            if cookie is not None:
                return cookie.value
        return None

    def install(self, case) -> None:
        """Put the real session into the generated request, in place of whatever was generated."""
        if self.bearer:
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {self.handle}"}
        else:
            case.cookies = {**(case.cookies or {}), "SESSION": self.handle}

    def read(self, handle: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {handle}"} if self.bearer else {"Cookie": f"SESSION={handle}"}
        return self.http.get(self.url + "/session", headers=headers, timeout=REQUEST_TIMEOUT)

    def check_after(self, case, response) -> None:
        label = f"{case.method} {case.formatted_path} -> {response.status_code}"
        if response.status_code >= 400:
            body = self.read(self.handle)
            assert body.status_code == 200, f"{label}: a refused request ended the session ({body.text[:200]})"
            seen = {name: body.json()[name] for name in self.expected}
            assert seen == self.expected, f"{label}: a refused request changed the session: {seen}"
        elif case.path not in ("/logout", "/logout/all"):
            # Accepted: the session (under the handle the client now holds) still reads, whatever was stored.
            body = self.read(self.handle_from(response) or self.handle)
            assert body.status_code == 200, f"{label}: the session no longer reads: {body.text[:200]}"


def plain_http() -> requests.Session:
    http = requests.Session()
    http.trust_env = False  # never a proxy from the environment
    return http


def fuzz_operation(operation, mode: GenerationMode, url: str, bearer: bool, deadline: float, counts: dict) -> None:
    uses_session = operation.path.startswith(("/session", "/login", "/logout"))
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @hypothesis.settings(max_examples=EXAMPLES["session" if uses_session else "public"], **FUZZ_SETTINGS)
    @hypothesis.given(case=operation.as_strategy(mode), real_session=st.sampled_from([True, True, True, False]))
    def run(case, real_session):
        assert time.monotonic() < deadline, f"the fuzz exceeded its bound of {SECONDS_PER_STRATEGY} s"
        victim = Victim(url, bearer, http) if uses_session else None
        # A real session in place of the generated one, unless the fuzzer made the credential itself invalid.
        negated = case.meta is not None and case.meta.is_negative_at(CREDENTIAL[bearer])
        if victim is not None and real_session and not negated:
            victim.install(case)
        response = case.call(base_url=url, session=http, timeout=REQUEST_TIMEOUT)
        http.cookies.clear()
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        case.validate_response(response, checks=checks)
        if mode is GenerationMode.POSITIVE:  # the document's schemas are the app's rule: what they allow is valid
            assert response.status_code != 400, (
                f"{case.method} {case.formatted_path}: the document allows what the app refused: {response.text[:300]}"
            )
        if victim is not None:
            victim.check_after(case, response)

    with plain_http() as http:  # closed after: an open keep-alive connection holds up the node's stop (drain)
        run()


def test_fuzz_every_operation(node):
    url, started = node.urls[0], time.monotonic()
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert {"POST /login", "GET /session", "PUT /session/data/{key}", "DELETE /session/data/{key}"} <= labels
    counts: dict[int, int] = {}
    for operation in operations:
        has_input = bool(operation.body) or any(True for _ in operation.iter_parameters())
        # Negative examples need something to make invalid: GET /ping has no input at all.
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE) if has_input else (GenerationMode.POSITIVE,):
            fuzz_operation(operation, mode, url, node.bearer, started + SECONDS_PER_STRATEGY, counts)
    elapsed = time.monotonic() - started
    MEASURED.append(
        f"fuzz {node.strategy}: {sum(counts.values())} schemathesis requests over {len(operations)} "
        f"operations in {elapsed:.1f} s, statuses {dict(sorted(counts.items()))}"
    )
    assert not any(status >= 500 for status in counts)
    assert counts.get(200, 0) > 0 and counts.get(400, 0) > 0, "the fuzz never got past (or never hit) validation"


def test_the_document_lists_every_route(node):
    """Every route the app serves is in its document, with the same methods, and nothing else is."""
    with plain_http() as http:
        document = http.get(node.urls[0] + "/openapi.json", timeout=REQUEST_TIMEOUT).json()
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    app = create_app(Settings.from_env({**node.env, "NODE_NAME": "document"})).app  # not started: no store used
    served = {(route.path, method) for route in app.routes for method in route.methods if method != "HEAD"}
    assert documented == served, (
        f"served, not documented: {served - documented}; documented, not served: {documented - served}"
    )


# -- any bytes as a JSON body: what schemathesis never sends (it sends valid JSON only) ---------------------------

ANY_TEXT = st.text(max_size=8)  # NUL and lone surrogates included
ANY_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,  # NaN and Infinity included
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _encode(value, ascii_only: bool) -> bytes:
    # ensure_ascii: lone surrogates as \ud800 escapes; without: as bytes that are not UTF-8
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _splice(body: bytes, at: int, junk: bytes) -> bytes:
    at %= len(body) + 1
    return body[:at] + junk + body[at:]


NESTED = st.one_of(
    st.integers(0, 3000).map(lambda depth: b"[" * depth + b"1" + b"]" * depth),
    st.integers(0, 3000).map(lambda depth: b'{"k":' * depth + b"1" + b"}" * depth),
    st.integers(0, 3000).map(lambda depth: b"[" * depth),
)
BODIES = st.one_of(
    st.builds(_encode, ANY_VALUE, st.booleans()),
    NESTED,
    st.sampled_from(
        [b"NaN", b"-Infinity", b"1e400", b"-1e999", b"1" * 4400, b'"\\u0000"', b'"\\udfff"', b"\xef\xbb\xbf1"]
    ),
    st.builds(_splice, st.builds(_encode, ANY_VALUE, st.booleans()), st.integers(0, 10**6), st.binary(max_size=3)),
    st.binary(max_size=64),
)


def test_any_bytes_as_a_value_or_a_login(node):
    """PUT /session/data/x and POST /login with any bytes: a JSON 200, 400 or 413; a refusal changes nothing, and
    what is accepted reads back as the same JSON value."""
    url, bearer, statuses = node.urls[0], node.bearer, {}

    @hypothesis.settings(max_examples=EXAMPLES["raw"], **FUZZ_SETTINGS)
    @hypothesis.given(body=BODIES, path=st.sampled_from(["/session/data/x", "/login"]))
    def run(body, path):
        victim = Victim(url, bearer, http)
        credential = {"Authorization": f"Bearer {victim.handle}"} if bearer else {"Cookie": f"SESSION={victim.handle}"}
        headers = {"Content-Type": "application/json", **credential}
        response = http.request(
            "PUT" if path != "/login" else "POST", url + path, data=body, headers=headers, timeout=REQUEST_TIMEOUT
        )
        http.cookies.clear()
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        assert response.status_code in (200, 400, 413), f"{path} {body[:80]!r}: {response.text[:200]}"
        answer = response.json()
        if response.status_code != 200:
            assert set(answer) == {"error", "message"}, answer
            read = victim.read(victim.handle)
            assert read.status_code == 200 and {k: read.json()[k] for k in victim.expected} == victim.expected, (
                f"{path} {body[:80]!r} was refused ({answer['error']}) but changed the session: {read.text[:200]}"
            )
        elif path != "/login":
            read = victim.read(victim.handle_from(response) or victim.handle)  # cookie: a new one on every change
            assert read.status_code == 200, f"{body[:80]!r} was accepted and broke the session: {read.text[:200]}"
            assert json_equal(read.json()["data"]["x"], json.loads(body)), f"{body[:80]!r} did not read back"

    with plain_http() as http:
        run()
    MEASURED.append(
        f"raw bodies {node.strategy}: {sum(statuses.values())} requests, statuses {dict(sorted(statuses.items()))}"
    )
    assert statuses.get(200, 0) > 0 and statuses.get(400, 0) > 0
