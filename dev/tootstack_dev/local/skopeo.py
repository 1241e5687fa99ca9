"""Run `skopeo copy --all` (the reference copier) between local registries, for tests and the benchmark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tootstack.errors import DependencyUnavailable

_POLICY = {"default": [{"type": "insecureAcceptAnything"}]}


def skopeo_copy_argv(src: str, dst: str, src_creds: str | None, dest_creds: str | None, policy: Path) -> list[str]:
    """argv for `skopeo copy --all` over plain HTTP, keeping digests (docker://host:port/repo:tag refs)."""
    if shutil.which("skopeo") is None:
        raise DependencyUnavailable("skopeo not found: run `make setup` (apt package skopeo)")
    argv = ["skopeo", "--policy", str(policy), "copy", "--all", "--preserve-digests", "--quiet",
            "--src-tls-verify=false", "--dest-tls-verify=false"]
    if src_creds:
        argv += ["--src-creds", src_creds]
    if dest_creds:
        argv += ["--dest-creds", dest_creds]
    return argv + [f"docker://{src}", f"docker://{dst}"]


def policy_file(directory: Path | None = None) -> Path:
    directory = directory or Path(tempfile.mkdtemp(prefix="tootstack-skopeo-"))
    path = directory / "policy.json"
    path.write_text(json.dumps(_POLICY))
    return path


def skopeo_env(home: Path) -> dict[str, str]:
    """An environment where skopeo keeps no auth file or cache outside `home`."""
    env = dict(os.environ)
    env.update({"HOME": str(home), "XDG_RUNTIME_DIR": str(home), "REGISTRY_AUTH_FILE": str(home / "auth.json")})
    return env


def skopeo_copy(src: str, dst: str, src_creds: str | None = None, dest_creds: str | None = None) -> None:
    with tempfile.TemporaryDirectory(prefix="tootstack-skopeo-") as tmp:
        home = Path(tmp)
        argv = skopeo_copy_argv(src, dst, src_creds, dest_creds, policy_file(home))
        proc = subprocess.run(argv, capture_output=True, text=True, env=skopeo_env(home), timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"skopeo copy failed: {proc.stderr.strip()[-500:]}")
