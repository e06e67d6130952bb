"""Static checks of the Docker image files (no Docker engine needed): docker/Dockerfile, .dockerignore
and docker/README.md. The Dockerfile itself is linted by hadolint (docker/lint.sh)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DOCKER_README = ROOT / "docker" / "README.md"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and line continuations joined."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "Dockerfile ends inside a line continuation"
    return out


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


def _args(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def _ignore_patterns() -> list[str]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.strip("/"))
    return patterns


def _pattern_matches(pattern: str, path: str) -> bool:
    """Docker's .dockerignore matching: patterns are relative to the context root; `**` spans any
    number of directories."""
    regex = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            regex += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            regex += ".*"
            i += 2
        else:
            j = i
            while j < len(pattern) and not pattern.startswith("**", j):
                j += 1
            chunk = pattern[i:j]
            # fnmatch's '*' would cross '/', Docker's does not.
            regex += "".join(
                "[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) if c not in "[]" else c
                for c in chunk
            )
            i = j
    return re.fullmatch(regex, path) is not None


def _ignored(path: str) -> bool:
    """Whether `path` (or a parent directory of it) is excluded from the build context; `!` re-includes."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for pattern in _ignore_patterns():
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        if any(_pattern_matches(pat, c) for c in candidates):
            excluded = not negate
    return excluded


def test_ignore_matcher_follows_docker_semantics() -> None:
    assert _pattern_matches("data", "data")
    assert not _pattern_matches("data", "silhouette_lightning/data")
    assert _pattern_matches("**/__pycache__", "silhouette_lightning/__pycache__")
    assert _pattern_matches("*.egg-info", "silhouette_lightning.egg-info")
    assert not _pattern_matches("*.ckpt", "runs/x.ckpt")


def test_from_is_a_pinned_official_pytorch_cuda_image(instructions) -> None:
    froms = _args(instructions, "FROM")
    assert len(froms) == 1, froms
    image = froms[0].split()[0]
    name, _, tag = image.partition(":")
    assert name in {"pytorch/pytorch", "docker.io/pytorch/pytorch"}, image
    # A specific version, never `latest`: <torch version>-cuda<x.y>-cudnn<n>-runtime|devel.
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)-cuda\d+\.\d+-cudnn\d+-(runtime|devel)", tag)
    assert match, f"base image tag is not a pinned CUDA tag: {image!r}"
    major, minor, patch = (int(g) for g in match.groups()[:3])
    # Within pyproject's torch bounds (>=2.1, <=2.14.1).
    assert (2, 1, 0) <= (major, minor, patch) <= (2, 14, 1), tag


def test_install_keeps_the_base_image_torch(instructions) -> None:
    runs = _args(instructions, "RUN")
    install = [r for r in runs if re.search(r"pip install\b.*\s\.(\s|$)", r)]
    assert len(install) == 1, runs
    cmd = install[0]
    assert "--no-cache-dir" in cmd
    # Torch's version is recorded before the install, pinned as a constraint, and compared after.
    before = cmd.index("torch.__version__")
    assert before < cmd.index("pip install")
    assert "--constraint" in cmd or "-c " in cmd
    after = cmd[cmd.index("pip install") :]
    assert "torch.__version__" in after, "no check that torch is unchanged after pip install"
    assert "sys.exit" in after or "assert" in after or "exit 1" in after


def test_runs_as_non_root_user_with_silhouette_fit_entrypoint(instructions) -> None:
    keywords = [kw for kw, _ in instructions]
    users = [(i, args) for i, (kw, args) in enumerate(instructions) if kw == "USER"]
    assert users, "no USER instruction: the container would run as root"
    entry_index = keywords.index("ENTRYPOINT")
    last_user_index, last_user = [u for u in users if u[0] < entry_index][-1]
    assert last_user.split(":")[0] not in {"root", "0"}, last_user
    # The build args behind a ${UID} user must not default to root either.
    for name, value in re.findall(r"(\w+)=(\S+)", " ".join(_args(instructions, "ARG"))):
        if f"${{{name}}}" in last_user or f"${name}" in last_user:
            assert value not in {"0", "root"}, (name, value)
    assert keywords.count("ENTRYPOINT") == 1
    assert json.loads(_args(instructions, "ENTRYPOINT")[0]) == ["silhouette-fit"]
    assert json.loads(_args(instructions, "CMD")[-1]) == ["--help"]
    assert _args(instructions, "WORKDIR")[-1] == "/workspace"


def _copy_sources(instructions) -> list[str]:
    sources = []
    for args in _args(instructions, "COPY"):
        words = [w for w in shlex.split(args) if not w.startswith("--")]
        assert len(words) >= 2, args
        sources.extend(words[:-1])
    return sources


def test_copy_sources_exist_and_are_in_the_build_context(instructions) -> None:
    sources = _copy_sources(instructions)
    assert sources
    for source in sources:
        assert not Path(source).is_absolute() and ".." not in Path(source).parts, source
        path = ROOT / source
        assert path.exists(), f"COPY source {source!r} is not in the repository"
        assert not _ignored(source), f"COPY source {source!r} is excluded by .dockerignore"
        if path.is_dir():
            files = [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
            kept = [p for p in files if not _ignored(p.relative_to(ROOT).as_posix())]
            assert kept, f"everything under {source!r} is excluded by .dockerignore"
    # What `pip install .` needs, and the configs the README's run command uses.
    needed = {"pyproject.toml", "README.md", "silhouette_lightning", "configs"}
    assert needed <= {s.rstrip("/") for s in sources}
    # Root-anchored patterns such as `data` must not drop the package's own data/ subpackage.
    assert not _ignored("silhouette_lightning/data/__init__.py")


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    for path in (".venv", ".git", "runs", "data", ".pytest_cache", ".ruff_cache", "x/__pycache__"):
        assert _ignored(path), f"{path} is not excluded by .dockerignore"


def test_readme_documents_build_and_gpu_run() -> None:
    text = DOCKER_README.read_text()
    assert "docker build -f docker/Dockerfile" in text
    blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
    runs = [b.replace("\\\n", " ") for b in blocks if "docker run" in b]
    assert runs, "no `docker run` command in docker/README.md"
    assert any("--gpus all" in r and "--ipc=host" in r and "silhouette-lightning" in r for r in runs), runs
    assert "--shm-size" in text
