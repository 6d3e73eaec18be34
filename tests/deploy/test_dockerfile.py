"""The Dockerfile, read as Docker reads it (there is no Docker engine
here): its stages, the user it runs as, the binary it ships, and its
healthcheck run against the real binary on the image's configuration."""

import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest

from deploy_support import ROOT, Served, check_config, free_port

IMAGE_CONFIG = ROOT / "deploy/docker/costplane.toml"


def instructions(text):
    """(INSTRUCTION, arguments) pairs: comments dropped, continuations joined."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        word, _, rest = current.partition(" ")
        out.append((word.upper(), rest.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def stages():
    """[{name, base, instructions}] in order."""
    result = []
    for word, rest in instructions((ROOT / "Dockerfile").read_text()):
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            result.append({"name": name, "base": parts[0], "instructions": []})
        else:
            assert result, f"{word} before FROM"
            result[-1]["instructions"].append((word, rest))
    return result


def last(stage, word):
    found = [rest for w, rest in stage["instructions"] if w == word]
    assert found, f"stage {stage['name']} has no {word}"
    return found[-1]


def test_multi_stage_rust_build_and_slim_runtime():
    builder, runtime = stages()
    assert builder["name"] == "builder" and builder["base"].startswith("rust:")
    assert runtime["base"] == "debian:bookworm-slim"
    # The builder's Rust is at least the workspace's rust-version.
    want = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["rust-version"]
    have = re.match(r"rust:(\d+\.\d+)", builder["base"]).group(1)
    assert tuple(map(int, have.split("."))) >= tuple(map(int, want.split(".")))
    build = " ".join(rest for w, rest in builder["instructions"] if w == "RUN")
    assert "cargo build --release --locked -p costplane" in build
    # Nothing of the build reaches the runtime but the binary.
    copies_from = [rest for w, rest in runtime["instructions"] if w == "COPY" and "--from=" in rest]
    assert copies_from == ["--from=builder /out/costplane /usr/local/bin/costplane"]
    assert "install -D -m 0755 target/release/costplane /out/costplane" in build


def test_builder_rust_builds_every_locked_dependency():
    # The newest rust-version any locked dependency asks for. Not --offline:
    # metadata covers every target's crates (android_system_properties, ...),
    # which a fresh machine's cargo cache has never downloaded; --locked keeps
    # the lockfile as committed.
    meta = subprocess.run(["cargo", "metadata", "--format-version", "1", "--locked"],
                          cwd=ROOT, capture_output=True, text=True)
    assert meta.returncode == 0, meta.stderr
    versions = [tuple(map(int, p["rust_version"].split(".")[:2])) for p in json.loads(meta.stdout)["packages"] if p.get("rust_version")]
    have = tuple(map(int, re.match(r"rust:(\d+)\.(\d+)", stages()[0]["base"]).groups()))
    assert versions and have >= max(versions), (have, max(versions))


def test_binary_path_matches_the_cargo_package():
    manifest = tomllib.loads((ROOT / "crates/costplane/Cargo.toml").read_text())
    assert manifest["package"]["name"] == "costplane"
    assert [b["name"] for b in manifest["bin"]] == ["costplane"]
    runtime = stages()[-1]
    assert json.loads(last(runtime, "ENTRYPOINT")) == ["/usr/local/bin/costplane"]
    assert json.loads(last(runtime, "CMD")) == ["serve", "--config", "/etc/costplane/costplane.toml"]
    assert "deploy/docker/costplane.toml /etc/costplane/costplane.toml" in [
        rest for w, rest in runtime["instructions"] if w == "COPY"
    ]


def test_runs_as_a_non_root_numeric_user():
    runtime = stages()[-1]
    user = last(runtime, "USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, user
    setup = " ".join(rest for w, rest in runtime["instructions"] if w == "RUN")
    assert f"--uid {uid}" in setup and f"--gid {gid}" in setup
    # The data directory belongs to that user; it is the config's data_dir and a volume.
    assert f"install -d -o {uid} -g {gid}" in setup and "/var/lib/costplane" in setup
    assert tomllib.loads(IMAGE_CONFIG.read_text())["data_dir"] == "/var/lib/costplane"
    assert json.loads(last(runtime, "VOLUME")) == ["/var/lib/costplane"]


def test_exposes_the_otlp_and_api_ports():
    runtime = stages()[-1]
    assert last(runtime, "EXPOSE").split() == ["4317", "4318", "8080"]
    cfg = tomllib.loads(IMAGE_CONFIG.read_text())
    assert cfg["otlp"]["grpc_addr"] == "0.0.0.0:4317" and cfg["otlp"]["http_addr"] == "0.0.0.0:4318"
    assert cfg["http"]["addr"].endswith(":8080")


def test_dockerignore_keeps_what_the_build_needs():
    ignored = [l.strip() for l in (ROOT / ".dockerignore").read_text().splitlines() if l.strip() and not l.startswith("#")]
    assert "target/" in ignored and ".git/" in ignored
    for needed in ("crates", "Cargo.toml", "Cargo.lock", "deploy/docker"):
        assert not any(needed == i.rstrip("/") or needed.startswith(i.rstrip("/") + "/") for i in ignored), needed


def test_image_config_loads():
    out = check_config(IMAGE_CONFIG)
    assert out.returncode == 0, out.stderr


def healthcheck_command(port):
    runtime = stages()[-1]
    hc = last(runtime, "HEALTHCHECK")
    cmd = json.loads(hc[hc.index("CMD") + 3:].strip())
    assert cmd[:2] == ["bash", "-c"] and "/dev/tcp/127.0.0.1/8080" in cmd[2]
    return [*cmd[:2], cmd[2].replace("/dev/tcp/127.0.0.1/8080", f"/dev/tcp/127.0.0.1/{port}")]


def test_healthcheck_passes_on_a_serving_costplane_and_fails_without(tmp_path):
    served = Served(IMAGE_CONFIG, tmp_path)
    try:
        ok = subprocess.run(healthcheck_command(served.api_port), capture_output=True, text=True, timeout=10)
        assert ok.returncode == 0, ok.stderr
    finally:
        served.stop()
    down = subprocess.run(healthcheck_command(free_port()), capture_output=True, text=True, timeout=10)
    assert down.returncode != 0
