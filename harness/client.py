"""An HTTP client that carries one session the way a browser or a mobile app would: the SESSION cookie, or a bearer
token. Used by the app tests, the benchmark, the report's load and the post-deploy verification alike."""

from __future__ import annotations

from http.cookies import SimpleCookie

import requests

COOKIE = "SESSION"


class SessionClient:
    def __init__(self, bearer: bool = False, timeout: float = 10, verify: str | bool = True):
        """verify: requests' `verify` for HTTPS: the CA file to trust (a balancer's self-signed certificate,
        Deployment.tls_verify), or True (the system's CAs)."""
        self.bearer, self.timeout = bearer, timeout
        self.handle: str | None = None
        self.http = requests.Session()
        self.http.trust_env = False  # never a proxy from the environment: traffic stays on the lab's own hosts
        self.http.verify = verify

    def headers(self) -> dict[str, str]:
        if self.handle is None:
            return {}
        if self.bearer:
            return {"Authorization": f"Bearer {self.handle}"}
        return {"Cookie": f"{COOKIE}={self.handle}"}

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        response = self.http.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        self.http.cookies.clear()  # the handle is ours to carry, not the jar's
        self._remember(response)
        return response

    def _remember(self, response: requests.Response) -> None:
        for header in response.raw.headers.getlist("Set-Cookie"):
            cookie = SimpleCookie(header).get(COOKIE)
            if cookie is not None:
                self.handle = None if cookie["max-age"] == "0" or not cookie.value else cookie.value
        if self.bearer and response.ok:
            try:
                token = response.json().get("token")
            except ValueError:
                token = None
            if token:
                self.handle = token

    def login(self, base: str, user: str = "alice") -> requests.Response:
        return self.request("POST", base + "/login", json={"username": user})

    def get(self, url: str, **kwargs) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs) -> requests.Response:
        return self.request("POST", url, **kwargs)
