"""A real CNCF `docker-registry` (distribution 2.8) on loopback, standing in for Docker Hub and ECR.

    with Registry(auth="token") as hub, Registry(auth="basic") as ecr:
        hub.host_port        # "127.0.0.1:40123"
        hub.username, hub.password

auth="none": anonymous push and pull. auth="basic": an htpasswd (bcrypt) file with one user, as
ECR accepts `AWS:<token>` Basic credentials. auth="token": the Docker Hub scheme: the registry
answers 401 with a Bearer challenge pointing at a small token server run here in a thread, which
checks Basic credentials and issues ES256 JWTs (x5c header with a throwaway self-signed cert that
the registry trusts through `auth.token.rootcertbundle`) carrying the scopes asked for.

The registry's access log is kept, so `requests()` / `requests_since()` tell exactly which requests
it served (a benchmark counts source GETs this way, whatever client made them); the token server
counts its own requests in `token_requests`.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from tootstack.errors import DependencyUnavailable, InvalidInput
from tootstack_dev.local.network import free_port

BINARY = "docker-registry"
SERVICE = "tootstack-registry"
ISSUER = "tootstack-token-issuer"
_ACCESS_LINE = re.compile(r'"(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS) (\S+) HTTP/[\d.]+" (\d{3})')


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class _TokenHTTPServer(ThreadingHTTPServer):
    request_queue_size = 64   # a busy test machine opens many token requests at once
    daemon_threads = True


class TokenServer:
    """Docker-style token service: GET /token?service=..&scope=repository:NAME:pull,push with Basic auth."""

    def __init__(self, directory: Path, username: str, password: str, anonymous_pull: bool = False) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.username, self.password, self.anonymous_pull = username, password, anonymous_pull
        self.requests = 0
        self.scopes_requested: list[str] = []
        self._lock = threading.Lock()
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tootstack token issuer")])
        cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.cert_file = directory / "token-issuer.pem"
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # http.server API
                status, body = server.handle(self.path, self.headers.get("Authorization"))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="tootstack-token"')
                self.end_headers()
                self.wfile.write(payload)

        self._httpd = _TokenHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._httpd.server_address[1])
        self.realm = f"http://127.0.0.1:{self.port}/token"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="token-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def handle(self, path: str, authorization: str | None) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests += 1
        url = urlparse(path)
        if url.path != "/token":
            return 404, {"errors": [{"code": "NOT_FOUND"}]}
        query = parse_qs(url.query)
        account = None
        if authorization and authorization.lower().startswith("basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            except ValueError:
                return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "malformed credentials"}]}
            if not (secrets.compare_digest(user, self.username) and secrets.compare_digest(password, self.password)):
                return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "invalid credentials"}]}
            account = user
        elif not self.anonymous_pull:
            return 401, {"errors": [{"code": "UNAUTHORIZED", "message": "credentials required"}]}
        access = []
        for scope in query.get("scope", []):
            for item in scope.split(" "):
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                if not kind or not name:
                    continue
                granted = [a for a in actions.split(",") if a] if account else [a for a in actions.split(",") if a == "pull"]
                with self._lock:
                    self.scopes_requested.append(item)
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": ISSUER, "sub": account or "", "aud": query.get("service", [SERVICE])[0],
            "exp": now + 300, "nbf": now - 30, "iat": now, "jti": uuid.uuid4().hex, "access": access,
        }
        token = self._sign(claims)
        return 200, {"token": token, "access_token": token, "expires_in": 300,
                     "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()}

    def _sign(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        header = {"typ": "JWT", "alg": "ES256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}".encode()
        r, s = decode_dss_signature(self._key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        return f"{signing_input.decode()}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class Registry:
    """Context manager running `docker-registry serve` on a free 127.0.0.1 port with temp storage."""

    def __init__(self, auth: str = "none", username: str | None = None, password: str | None = None,
                 anonymous_pull: bool = False, binary: str = BINARY) -> None:
        if auth not in ("none", "basic", "token"):
            raise InvalidInput(f"Registry auth must be none, basic or token, not {auth!r}")
        self.auth = auth
        self.host = "127.0.0.1"
        self.port = 0
        self.username: str | None = None
        self.password: str | None = None
        if auth != "none":
            self.username = username or ("hubuser" if auth == "token" else "AWS")
            self.password = password or secrets.token_urlsafe(18)
        self.anonymous_pull = anonymous_pull
        self.token_server: TokenServer | None = None
        self._binary = binary
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # -- addresses -------------------------------------------------------------------------------
    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host_port}"

    @property
    def creds(self) -> str | None:
        """USER:PASS as `tootstack mirror --src-creds` and skopeo `--creds` take them."""
        return f"{self.username}:{self.password}" if self.username else None

    @property
    def token_requests(self) -> int:
        return self.token_server.requests if self.token_server else 0

    # -- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> "Registry":
        if shutil.which(self._binary) is None:
            raise DependencyUnavailable(f"{self._binary} not found: run `make setup` (apt package docker-registry)")
        self._dir = Path(tempfile.mkdtemp(prefix="tootstack-registry-"))
        try:
            auth_block = self._auth_config()
            last_error = ""
            for _ in range(5):  # the free port may be taken between probe and bind: try another
                self.port = free_port()
                config = self._dir / "config.yml"
                config.write_text(self._config(auth_block))
                self._log_path = self._dir / "registry.log"
                log = open(self._log_path, "wb")  # closed when the process is reaped
                self._process = subprocess.Popen(
                    [self._binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, cwd=self._dir,
                    start_new_session=True,
                )
                log.close()
                ok, last_error = self._wait_ready()
                if ok:
                    return self
                self._stop_process()
            raise DependencyUnavailable(f"docker-registry did not start: {last_error[-400:]}")
        except BaseException:
            self.__exit__(None, None, None)
            raise

    def __exit__(self, *exc: object) -> None:
        self._stop_process()
        if self.token_server is not None:
            self.token_server.stop()
            self.token_server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _stop_process(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._process = None

    def _auth_config(self) -> str:
        assert self._dir is not None
        if self.auth == "basic":
            htpasswd = self._dir / "htpasswd"
            htpasswd.write_text(_htpasswd_line(self.username or "", self.password or ""))
            htpasswd.chmod(0o600)
            return f"auth:\n  htpasswd:\n    realm: tootstack-basic\n    path: {htpasswd}\n"
        if self.auth == "token":
            self.token_server = TokenServer(self._dir, self.username or "", self.password or "", self.anonymous_pull)
            self.token_server.start()
            return (
                "auth:\n  token:\n"
                f"    realm: {self.token_server.realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
                f"    rootcertbundle: {self.token_server.cert_file}\n"
            )
        return ""

    def _config(self, auth_block: str) -> str:
        assert self._dir is not None
        return (
            "version: 0.1\n"
            "log:\n  level: error\n  formatter: text\n  accesslog:\n    disabled: false\n"
            "storage:\n"
            f"  filesystem:\n    rootdirectory: {self._dir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            "  cache:\n    blobdescriptor: inmemory\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            "http:\n"
            f"  addr: {self.host}:{self.port}\n"
            f"  secret: {secrets.token_hex(16)}\n"
            "  headers:\n    X-Content-Type-Options: [nosniff]\n"
            + auth_block
        )

    def _wait_ready(self, timeout: float = 15.0) -> tuple[bool, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                return False, self._log_text()
            try:
                status = httpx.get(f"{self.url}/v2/", timeout=1.0).status_code
                if status in (200, 401):
                    return True, ""
            except httpx.TransportError:
                pass
            time.sleep(0.03)
        return False, "timed out waiting for /v2/; " + self._log_text()

    def _log_text(self) -> str:
        try:
            return self._log_path.read_text(errors="replace") if self._log_path else ""
        except OSError:
            return ""

    # -- what it served ---------------------------------------------------------------------------
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path, status) of every request served so far, from the registry's access log."""
        return [(m.group(1), m.group(2), int(m.group(3))) for m in _ACCESS_LINE.finditer(self._log_text())]

    def mark(self) -> int:
        """A position in the access log: pass it to `requests_since` to count what came after."""
        return len(self.requests())

    def requests_since(self, mark: int) -> list[tuple[str, str, int]]:
        return self.requests()[mark:]

    # -- clients ---------------------------------------------------------------------------------
    def client(self, username: str | None = None, password: str | None = None, **kwargs: Any) -> httpx.Client:
        """An httpx client for this registry that answers its auth challenges (own credentials by default)."""
        from tootstack.mirror.auth import RegistryAuth

        auth = RegistryAuth(username or self.username, password if password is not None else self.password) \
            if self.auth != "none" else None
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.url, auth=auth, **kwargs)

    def push_blob(self, repository: str, data: bytes, client: httpx.Client | None = None) -> str:
        """Monolithic blob upload (small test data); returns its digest."""
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        own = client is None
        client = client or self.client()
        try:
            start = client.post(f"/v2/{repository}/blobs/uploads/")
            start.raise_for_status()
            location = httpx.URL(start.headers["Location"]).copy_merge_params({"digest": digest})
            done = client.put(location, content=data,
                              headers={"Content-Type": "application/octet-stream"})
            done.raise_for_status()
        finally:
            if own:
                client.close()
        return digest


def _htpasswd_line(username: str, password: str) -> str:
    """user:bcrypt-hash (cost 4: test speed; the registry checks bcrypt on every request)."""
    try:
        import bcrypt  # type: ignore[import-not-found]

        return f"{username}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()}\n"
    except ImportError:
        pass
    if shutil.which("htpasswd") is None:
        raise DependencyUnavailable("htpasswd not found: run `make setup` (apt package apache2-utils)")
    proc = subprocess.run(["htpasswd", "-Bbn", "-C", "4", username, password], capture_output=True, text=True)
    if proc.returncode != 0:
        raise DependencyUnavailable("htpasswd failed to hash the test password")
    return proc.stdout.strip() + "\n"
