"""Nginx on loopback from the Debian package's binary: in front of app nodes (round robin), or serving the kit's own
site as pyinfra renders it (render_site)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

from .servers import ROOT, _stop, free_port, port_open, wait_until


class Nginx:
    """A local Nginx in front of app nodes (round robin), for the benchmark's 'through a load balancer' figures."""

    def __init__(self, backends: list[str], workers: int = 1, access_log: bool = False):
        self.port, self.backends, self.workers, self.logging = free_port(), backends, workers, access_log
        self.dir = Path(tempfile.mkdtemp(prefix="kit-nginx-"))
        self.proc: subprocess.Popen | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Nginx:
        servers = "\n".join(f"    server {backend};" for backend in self.backends)
        # Each request's status, the node(s) it went to and its X-Request-Id (the drain tests read it).
        access = f"access_log {self.dir}/access.log upstreams;" if self.logging else "access_log off;"
        (self.dir / "nginx.conf").write_text(f"""
worker_processes {self.workers};
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  log_format upstreams '$status upstream=$upstream_addr $http_x_request_id';
  {access}
  client_body_temp_path {self.dir}/body; proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fcgi; uwsgi_temp_path {self.dir}/uwsgi; scgi_temp_path {self.dir}/scgi;
  upstream app {{
{servers}
    keepalive 64;
    keepalive_timeout 4s;  # as the kit's site: shorter than a draining node's wait (sample_app/serve.py)
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_next_upstream error timeout;  # as the kit's site: an app's 503 is its store's, not the node's
      proxy_next_upstream_tries 0;
    }}
  }}
}}
""")
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = subprocess.Popen(
            [nginx, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: port_open(self.port), 10, "nginx")
        return self

    def access_log(self) -> str:
        path = self.dir / "access.log"
        return path.read_text() if path.exists() else ""

    def destroy(self) -> None:
        _stop(self.proc, signal.SIGQUIT)
        shutil.rmtree(self.dir, ignore_errors=True)


SITE_TEMPLATE = ROOT / "templates/etc/nginx/sites-available/session-kit.conf.j2"


def render_site(**values) -> str:
    """The kit's real Nginx site, rendered as pyinfra renders it (jinja2, StrictUndefined), with the kit's defaults
    for whatever `values` does not set."""
    import jinja2

    from session_kit.defaults import NGINX_DEFAULTS

    template = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True).from_string(
        SITE_TEMPLATE.read_text()
    )
    return template.render(**{**NGINX_DEFAULTS, **values})


class SiteNginx(Nginx):
    """Nginx serving a rendered site of the kit (render_site), as the Debian package's nginx.conf includes it.

    tls: the (certificate, key) files a site with lb_tls serves, copied where its ssl_certificate lines point (as
    deploys/nginx.py uploads them); tls_port: its HTTPS port (nginx_listen_tls), waited for as well as `port`."""

    def __init__(self, site: str, port: int, tls: tuple[Path, Path] | None = None, tls_port: int | None = None):
        super().__init__([])
        self.port, self.tls_port = port, tls_port
        if tls:
            shutil.copyfile(tls[0], self.dir / "tls.crt")
            shutil.copyfile(tls[1], self.dir / "tls.key")
            (self.dir / "tls.key").chmod(0o600)
        site = site.replace("/var/log/nginx/", f"{self.dir}/").replace("/etc/nginx/session-kit/", f"{self.dir}/")
        (self.dir / "site.conf").write_text(site)
        (self.dir / "nginx.conf").write_text(f"""
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {self.dir}/body; proxy_temp_path {self.dir}/proxy;
  fastcgi_temp_path {self.dir}/fcgi; uwsgi_temp_path {self.dir}/uwsgi; scgi_temp_path {self.dir}/scgi;
  include {self.dir}/site.conf;
}}
""")

    def command(self, *args: str) -> list[str]:
        return [
            shutil.which("nginx") or "/usr/sbin/nginx",
            "-p",
            str(self.dir),
            "-c",
            str(self.dir / "nginx.conf"),
            *args,
        ]

    def test(self) -> subprocess.CompletedProcess:
        """nginx -t on the site."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=30)

    def start(self) -> SiteNginx:
        self.proc = subprocess.Popen(
            self.command("-g", "daemon off;"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until(lambda: port_open(self.port) and (self.tls_port is None or port_open(self.tls_port)), 10, "nginx")
        return self

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"
