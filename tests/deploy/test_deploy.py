"""deploy/ against the code: settings, CLI commands, routes, queue name, images, build inputs.

No Docker engine is needed: Debian's docker-compose validates and resolves the compose file
(`make compose` installs it), and everything else is read as YAML or text.
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from pydantic import BaseModel

from schemas.queue import QUEUE
from schemas.settings import Settings
from search_api.cli import cli
from search_api.web.app import create_app

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
README = DEPLOY / "README.md"
ENV_EXAMPLE = DEPLOY / ".env.example"
K8S = DEPLOY / "k8s"

SETTING = re.compile(r"\bLOOKALIKE_[A-Z0-9_]*[A-Z0-9]")
URL_PATH = re.compile(r"https?://[^/\s'\"]+(/[^\s'\")]*)")
CONTAINER_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}
APP_SERVICES = ("api", "worker")
SHELL_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "{"}


# --- helpers -----------------------------------------------------------------------------


def setting_names(model: type[BaseModel] = Settings, prefix: str = "LOOKALIKE_") -> set[str]:
    """Every environment variable Settings reads: leaves, and nested sections (as JSON)."""
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        variable = prefix + field_name.upper()
        names.add(variable)
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= setting_names(annotation, variable + "__")
    return names


def leaf_setting_names(model: type[BaseModel] = Settings, prefix: str = "LOOKALIKE_") -> set[str]:
    """The variables of individual settings (nested sections are expanded, not listed)."""
    names: set[str] = set()
    for field_name, field in model.model_fields.items():
        variable = prefix + field_name.upper()
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= leaf_setting_names(annotation, variable + "__")
        else:
            names.add(variable)
    return names


def deploy_text_files() -> list[Path]:
    """Files whose LOOKALIKE_* mentions must be real settings (.env.example once it exists)."""
    files = [COMPOSE_FILE, DOCKERFILE, README, *sorted(K8S.glob("*.yaml"))]
    if ENV_EXAMPLE.exists():
        files.append(ENV_EXAMPLE)
    return files


def unknown_settings(paths: Iterable[Path]) -> dict[str, set[str]]:
    """LOOKALIKE_* names mentioned in each file that Settings does not read."""
    known = setting_names()
    unknown: dict[str, set[str]] = {}
    for path in paths:
        missing = set(SETTING.findall(path.read_text())) - known
        if missing:
            unknown[path.name] = missing
    return unknown


def compose_command() -> str:
    """docker-compose's path; a failure (not a skip) when missing: `make compose` installs it."""
    found = shutil.which("docker-compose")
    if found is None:
        pytest.fail("docker-compose is not installed: run `make compose` (Debian package)")
    return found


def compose_config(env_file: Path, compose_file: Path = COMPOSE_FILE) -> dict[str, Any]:
    """`docker-compose config` of the file, resolved with only ``env_file``'s variables."""
    # The caller's LOOKALIKE_* variables would leak into the resolved file: leave them out.
    env = {name: value for name, value in os.environ.items() if not name.startswith("LOOKALIKE_")}
    env.pop("WORKER_REPLICAS", None)
    result = subprocess.run(
        [compose_command(), "-f", str(compose_file), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """Every YAML document under deploy/k8s, with its file."""
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is not None:
                documents.append((path, document))
    return documents


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    """The Kubernetes objects of one kind."""
    return [document for _, document in k8s_documents() if document.get("kind") == kind]


def k8s_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, container) of every Deployment, Job ... under deploy/k8s."""
    for _, document in k8s_documents():
        if document["kind"] in CONTAINER_KINDS:
            pod = document["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                yield document["metadata"]["name"], container


def documented_image() -> str:
    """The image deploy/README.md tells you to build."""
    found = re.findall(
        r"docker build -f deploy/Dockerfile(?: [^\n]*?)? -t (\S+)", README.read_text()
    )
    assert found, "deploy/README.md shows no `docker build -f deploy/Dockerfile -t IMAGE`"
    assert len(set(found)) == 1, f"deploy/README.md builds several images: {set(found)}"
    return str(found[0])


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) instruction's words."""
    words = json.loads(arguments)
    assert isinstance(words, list)
    return [str(word) for word in words]


def shell_calls(script: str, program: str = "lookalike") -> list[list[str]]:
    """Arguments of each simple command of a shell script that runs ``program``."""
    # `${VAR:+words}` / `${VAR:-words}`: check the words as if they were given.
    script = re.sub(r"\$\{\w+:[+-]([^}]*)\}", r"\1", script)
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    calls: list[list[str]] = []
    command: list[str] = []
    for token in [*lexer, ";"]:
        if set(token) <= set(lexer.punctuation_chars):  # ; && || | ( ): the command ends
            if command[:1] == [program]:
                calls.append(command[1:])
            command = []
        elif command or token not in SHELL_KEYWORDS:
            command.append(token)
    return calls


def cli_invocations() -> list[tuple[str, list[str]]]:
    """(where, arguments after `lookalike`) of every CLI call in Dockerfile, compose and k8s."""
    found: list[tuple[str, list[str]]] = []
    for keyword, arguments in dockerfile_instructions():
        if keyword == "CMD":
            found.append(("Dockerfile CMD", exec_form(arguments)))
        elif keyword == "RUN":
            found.extend(("Dockerfile RUN", words) for words in shell_calls(arguments))
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    image = documented_image()
    for name, service in raw["services"].items():
        if service.get("image") == image and "command" in service:
            found.append((f"compose {name}", [str(word) for word in service["command"]]))
    for workload, container in k8s_containers():
        if container["image"] == image:
            assert "command" not in container, (
                f"{workload}: keep the image's `lookalike` entrypoint"
            )
            found.append((f"k8s {workload}", [str(word) for word in container.get("args", [])]))
    return found


def resolve_cli(arguments: Sequence[str]) -> tuple[click.Command, list[str]]:
    """The click command that ``lookalike ARGUMENTS`` runs; fails on unknown commands/options."""
    command: click.Command = cli
    words = list(arguments)
    path = ["lookalike"]
    while isinstance(command, click.Group):
        assert words, f"`{' '.join(path)}` needs a subcommand"
        name = words.pop(0)
        sub = command.commands.get(name)
        assert sub is not None, f"`{' '.join(path)} {name}`: no such command"
        command, path = sub, [*path, name]
    options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    for word in words:
        if word.startswith("-"):
            option = word.split("=", 1)[0]
            assert option in options, f"`{' '.join(path)}` has no option {option}"
    return command, path


def option_value(arguments: Sequence[str], option: str, default: str) -> str:
    """The value of ``--option VALUE`` or ``--option=VALUE`` in a command line."""
    for index, word in enumerate(arguments):
        if word == option:
            return arguments[index + 1]
        if word.startswith(option + "="):
            return word.split("=", 1)[1]
    return default


def cpus(value: str | float) -> float:
    """A CPU quantity (compose `2.0`, Kubernetes `2` or `1500m`) as a number of CPUs."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def settings_from(environment: Mapping[str, Any], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings as a container with exactly this environment would read them."""
    for name in list(os.environ):
        if name.startswith("LOOKALIKE_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        if value is not None:
            monkeypatch.setenv(name, str(value))
    return Settings()


def assert_thread_rule(where: str, settings: Settings, processes: int, cpu_limit: float) -> None:
    """ONNX threads per session x processes <= the CPUs the container may use."""
    # The default (cores / processes) counts the machine's cores, not the container's limit.
    assert settings.intra_op_threads is not None, f"{where}: set LOOKALIKE_INTRA_OP_THREADS"
    threads = processes * settings.intra_op_threads
    assert threads <= cpu_limit, f"{where}: {threads} ONNX threads on {cpu_limit} CPUs"


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def empty_env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An env file that sets nothing: the compose file on its defaults."""
    path = tmp_path_factory.mktemp("compose") / "empty.env"
    path.write_text("")
    return path


@pytest.fixture(scope="module")
def config(empty_env_file: Path) -> dict[str, Any]:
    """deploy/compose.yaml as docker-compose resolves it (without a deploy/.env)."""
    return compose_config(empty_env_file)


@pytest.fixture(scope="module")
def services(config: dict[str, Any]) -> dict[str, Any]:
    """The resolved services."""
    resolved = config["services"]
    assert isinstance(resolved, dict)
    return resolved


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    """URL rules of the app (creating it opens neither the store nor Redis)."""
    data_dir = tmp_path_factory.mktemp("app")
    app = create_app(Settings(data_dir=data_dir))
    return {rule.rule for rule in app.url_map.iter_rules()}


# --- compose -----------------------------------------------------------------------------


def test_compose_file_validates_with_the_expected_services(services: dict[str, Any]) -> None:
    assert {"qdrant", "redis", "api", "worker", "flower"} <= set(services)
    assert services["flower"].get("profiles"), "Flower is optional: behind a profile"
    assert services["worker"]["deploy"]["replicas"] >= 1


def test_compose_healthchecks_and_startup_order(services: dict[str, Any]) -> None:
    for name in ("qdrant", "redis", "api"):
        test = services[name].get("healthcheck", {}).get("test", [])
        assert test, f"{name} has no healthcheck"
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: healthcheck disabled"
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    assert "curl" not in " ".join(services["qdrant"]["healthcheck"]["test"])  # not in the image
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        for server in ("qdrant", "redis"):
            assert depends_on[server] == {"condition": "service_healthy"}, (name, server)


def test_compose_redis_keeps_every_queued_task(services: dict[str, Any]) -> None:
    command = " ".join(str(word) for word in services["redis"]["command"])
    assert "--appendonly yes" in command
    assert re.search(r"--appendfsync (always|everysec)\b", command)
    assert "--maxmemory-policy noeviction" in command


def compose_mounts(service: Mapping[str, Any]) -> dict[str, tuple[str, bool]]:
    """A resolved service's mounts: target -> (volume, read-only)."""
    mounts: dict[str, tuple[str, bool]] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):  # "source:target[:mode]"
            source, target, *mode = volume.split(":")
            mounts[target] = (source, mode == ["ro"])
        else:
            mounts[volume["target"]] = (volume["source"], bool(volume.get("read_only")))
    return mounts


def volume_of(directory: str, mounts: Mapping[str, tuple[str, bool]]) -> tuple[str, bool]:
    """The mount a directory lives on."""
    for target, mount in mounts.items():
        if Path(directory).is_relative_to(target):
            return mount
    raise AssertionError(f"{directory} is on no volume")


def test_compose_shares_blobs_and_thumbnails_and_mounts_models_read_only(
    services: dict[str, Any],
) -> None:
    shared: dict[str, set[str]] = {}
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        mounts = compose_mounts(services[name])
        for variable in ("LOOKALIKE_SOURCES__BLOB_DIR", "LOOKALIKE_THUMBNAIL_DIR"):
            volume, read_only = volume_of(environment[variable], mounts)
            assert not read_only, f"{name}: {variable} must be writable"
            shared.setdefault(variable, set()).add(volume)
        _, read_only = volume_of(environment["LOOKALIKE_MODELS_DIR"], mounts)
        assert read_only, f"{name}: mount the models read-only"
    for variable, volumes in shared.items():
        assert len(volumes) == 1, f"{variable}: API and workers use different volumes {volumes}"


def test_compose_passes_every_setting_through(services: dict[str, Any]) -> None:
    """A setting uncommented in deploy/.env must reach the API and the workers."""
    for name in APP_SERVICES:
        missing = leaf_setting_names() - set(services[name]["environment"])
        assert not missing, f"add to x-settings in deploy/compose.yaml: {sorted(missing)}"


def test_compose_env_file_values_reach_the_containers(tmp_path: Path) -> None:
    keys = '[{"name": "backend", "key": "0123456789abcdef", "roles": ["search"]}]'
    env_file = tmp_path / "deploy.env"
    env_file.write_text(
        f"LOOKALIKE_API__KEYS={keys}\nLOOKALIKE_QDRANT_URL=http://qdrant.example:6333\n"
        "# LOOKALIKE_TTA_FLIP=true\nWORKER_REPLICAS=5\n"
    )
    resolved = compose_config(env_file)["services"]
    for name in APP_SERVICES:
        environment = resolved[name]["environment"]
        assert json.loads(environment["LOOKALIKE_API__KEYS"]) == json.loads(keys)
        assert environment["LOOKALIKE_QDRANT_URL"] == "http://qdrant.example:6333"
        assert environment["LOOKALIKE_TTA_FLIP"] is None  # commented out: stays unset
    assert resolved["worker"]["deploy"]["replicas"] == 5


def test_compose_env_example_resolves(empty_env_file: Path) -> None:
    """deploy/.env.example copied to deploy/.env as it is changes nothing."""
    assert compose_config(ENV_EXAMPLE)["services"] == compose_config(empty_env_file)["services"]


def test_compose_env_example_uncommented_validates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every example value uncommented goes through docker-compose's parser and validates."""
    assigned = re.compile(r"^#\s*(LOOKALIKE_[A-Z0-9_]+=.+)$")
    lines = [m[1] for m in map(assigned.match, ENV_EXAMPLE.read_text().splitlines()) if m]
    assert lines, "deploy/.env.example shows no example values"
    env_file = tmp_path / "uncommented.env"
    env_file.write_text("\n".join(lines) + "\n")
    for name, service in compose_config(env_file)["services"].items():
        if name in APP_SERVICES:
            settings_from(service["environment"], monkeypatch)


def test_compose_settings_validate_and_respect_the_thread_rule(
    services: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in APP_SERVICES:
        service = services[name]
        settings = settings_from(service["environment"], monkeypatch)
        assert settings.qdrant_url, f"{name}: not on the Qdrant server"
        assert settings.redis_url, f"{name}: not on the Redis server"
        command = [str(word) for word in service["command"]]
        if command[0] == "api":
            processes = int(option_value(command, "--workers", "1"))
        else:
            processes = int(option_value(command, "--concurrency", str(settings.worker_processes)))
        limit = cpus(service["deploy"]["resources"]["limits"]["cpus"])
        assert_thread_rule(f"compose {name}", settings, processes, limit)


# --- Kubernetes --------------------------------------------------------------------------


def test_k8s_manifests_parse_and_are_named() -> None:
    documents = k8s_documents()
    assert documents
    for path, document in documents:
        for key in ("apiVersion", "kind"):
            assert document.get(key), f"{path.name}: no {key}"
        assert document.get("metadata", {}).get("name"), f"{path.name}: no metadata.name"


def test_k8s_kustomization_lists_existing_files_and_no_placeholder_secrets() -> None:
    (kustomization,) = k8s_kind("Kustomization")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
        assert "example" not in resource, f"{resource}: examples are applied by hand"
    listed = {K8S / resource for resource in kustomization["resources"]}
    for path, document in k8s_documents():
        if document["kind"] == "Secret":
            assert path not in listed, f"{path.name}: placeholder secrets must not be applied"


def test_k8s_probes_and_resources() -> None:
    (api,) = [d for d in k8s_kind("Deployment") if d["metadata"]["name"] == "lookalike-api"]
    (container,) = api["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for workload, each in k8s_containers():
        if workload != "lookalike-models-fetch":
            assert each["resources"]["limits"]["cpu"], f"{workload}: no CPU limit"
            assert each["resources"]["limits"]["memory"], f"{workload}: no memory limit"


def test_k8s_settings_validate_and_respect_the_thread_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    maps = {d["metadata"]["name"]: d.get("data", {}) for d in k8s_kind("ConfigMap")}
    maps |= {d["metadata"]["name"]: d.get("stringData", {}) for d in k8s_kind("Secret")}
    for workload, container in k8s_containers():
        environment: dict[str, Any] = {}
        for source in container.get("envFrom", []):
            reference = source.get("configMapRef") or source.get("secretRef")
            assert reference["name"] in maps, f"{workload}: no {reference['name']} in deploy/k8s"
            environment |= maps[reference["name"]]
        environment |= {each["name"]: each.get("value") for each in container.get("env", [])}
        settings = settings_from(environment, monkeypatch)
        args = [str(word) for word in container.get("args", [])]
        if args[:1] not in (["api"], ["worker"]):
            continue
        assert settings.qdrant_url, f"{workload}: not on a Qdrant server"
        assert settings.redis_url, f"{workload}: not on a Redis server"
        if args[0] == "api":
            processes = int(option_value(args, "--workers", "1"))
            assert settings.admin.secret_key is not None, "API pods must share the admin key"
            assert settings.api.keys, "API pods must not run an open API"
        else:
            processes = int(option_value(args, "--concurrency", str(settings.worker_processes)))
        limit = cpus(container["resources"]["limits"]["cpu"])
        assert_thread_rule(f"k8s {workload}", settings, processes, limit)


def test_k8s_volumes_share_data_and_mount_models_read_only() -> None:
    (config_map,) = k8s_kind("ConfigMap")
    settings = config_map["data"]
    claims = {d["metadata"]["name"]: d for d in k8s_kind("PersistentVolumeClaim")}
    for deployment in k8s_kind("Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        (container,) = pod["containers"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for variable in ("LOOKALIKE_SOURCES__BLOB_DIR", "LOOKALIKE_THUMBNAIL_DIR"):
            (mount,) = [m for p, m in mounts.items() if Path(settings[variable]).is_relative_to(p)]
            claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
            assert claim == "lookalike-data", (deployment["metadata"]["name"], variable)
            assert "ReadWriteMany" in claims[claim]["spec"]["accessModes"]
        assert mounts[settings["LOOKALIKE_MODELS_DIR"]].get("readOnly") is True


def test_keda_scales_workers_on_the_celery_queue() -> None:
    (scaled,) = k8s_kind("ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == QUEUE
    target = scaled["spec"]["scaleTargetRef"]["name"]
    (worker,) = [d for d in k8s_kind("Deployment") if d["metadata"]["name"] == target]
    (container,) = worker["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "worker"


# --- images ------------------------------------------------------------------------------


def test_app_image_is_the_one_the_docs_build(services: dict[str, Any]) -> None:
    image = documented_image()
    assert f"-t {image}" in DOCKERFILE.read_text(), "the Dockerfile's usage builds another tag"
    for name in APP_SERVICES:
        assert services[name]["image"] == image, name
    built = {name for name, service in services.items() if "build" in service}
    assert built <= {name for name, s in services.items() if s["image"] == image}
    for workload, container in k8s_containers():
        assert container["image"] == image, workload
    (kustomization,) = k8s_kind("Kustomization")
    name, _, tag = image.partition(":")
    assert [(i["name"], i["newTag"]) for i in kustomization["images"]] == [(name, tag)]


def test_third_party_images_are_pinned(services: dict[str, Any]) -> None:
    image = documented_image()
    others = [s["image"] for s in services.values() if s["image"] != image]
    arguments = dict(
        args.split("=", 1) for keyword, args in dockerfile_instructions() if keyword == "ARG"
    )
    for keyword, args in dockerfile_instructions():
        if keyword == "FROM":
            base = args.split()[0]
            others.append(re.sub(r"\$\{(\w+)\}", lambda m: arguments[m[1]], base))
    assert others
    for reference in others:
        tag = reference.rpartition("/")[2].partition(":")[2]
        assert tag, f"{reference}: no version tag"
        assert tag != "latest", f"{reference}: not a version"
        assert re.search(r"\d", tag), f"{reference}: not a version"


def test_qdrant_server_matches_the_client_generation(services: dict[str, Any]) -> None:
    tag = services["qdrant"]["image"].partition(":")[2]
    server = re.match(r"v?(\d+)\.(\d+)", tag)
    client = re.match(r"(\d+)\.(\d+)", importlib.metadata.version("qdrant-client"))
    assert server, tag
    assert client
    assert server[1] == client[1], f"Qdrant server {tag} vs client {client[0]}"
    # qdrant-client warns when the minor versions are more than one apart.
    assert abs(int(server[2]) - int(client[2])) <= 1, f"Qdrant server {tag} vs client {client[0]}"


# --- settings, CLI and routes ------------------------------------------------------------


def test_every_mentioned_setting_exists() -> None:
    assert not unknown_settings(deploy_text_files())


def test_unknown_settings_are_caught(tmp_path: Path) -> None:
    """The check above can fail: a misspelt setting in a copy of compose.yaml is reported."""
    copy = tmp_path / "compose.yaml"
    copy.write_text(COMPOSE_FILE.read_text().replace("LOOKALIKE_REDIS_URL", "LOOKALIKE_REDIS_URI"))
    assert unknown_settings([copy]) == {"compose.yaml": {"LOOKALIKE_REDIS_URI"}}


def test_cli_invocations_exist() -> None:
    invocations = cli_invocations()
    commands = {tuple(resolve_cli(arguments)[1]) for _, arguments in invocations}
    assert {("lookalike", "api"), ("lookalike", "worker")} <= commands
    assert ("lookalike", "models", "fetch") in commands


def test_cli_resolver_rejects_unknown_commands_and_options() -> None:
    with pytest.raises(AssertionError, match="no such command"):
        resolve_cli(["workers"])
    with pytest.raises(AssertionError, match="no option --concurency"):
        resolve_cli(["worker", "--concurency", "2"])


def test_probe_paths_are_routes(services: dict[str, Any], routes: set[str]) -> None:
    paths: list[tuple[str, str]] = []
    for name in APP_SERVICES:
        for word in services[name].get("healthcheck", {}).get("test", []):
            paths.extend((f"compose {name}", path) for path in URL_PATH.findall(str(word)))
    for keyword, arguments in dockerfile_instructions():
        if keyword == "HEALTHCHECK":
            paths.extend(("Dockerfile", path) for path in URL_PATH.findall(arguments))
    for workload, container in k8s_containers():
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            if probe in container:
                paths.append((f"k8s {workload} {probe}", container[probe]["httpGet"]["path"]))
    assert {path for _, path in paths} >= {"/healthz", "/readyz"}
    for where, path in paths:
        assert path in routes, f"{where}: {path} is not a route of the app"


# --- Dockerfile --------------------------------------------------------------------------


def test_dockerfile_copies_only_existing_unignored_paths() -> None:
    ignored = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [args for keyword, args in dockerfile_instructions() if keyword in ("COPY", "ADD")]
    assert copies
    for arguments in copies:
        words = [word for word in shlex.split(arguments) if not word.startswith("--")]
        if "--from=" in arguments:
            continue
        for source in words[:-1]:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"
            for pattern in ignored:
                assert not fnmatch.fnmatch(source, pattern.removeprefix("**/")), (
                    f"COPY {source}: excluded from the build context by {pattern}"
                )


def test_dockerfile_serves_without_torch_as_a_non_root_user() -> None:
    instructions = dockerfile_instructions()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not any(dep.startswith("torch") for dep in project["dependencies"])
    installs = [args for keyword, args in instructions if keyword == "RUN" and "pip " in args]
    assert any("-c constraints.txt" in args for args in installs), "install with constraints"
    for arguments in installs:
        assert "[" not in arguments, f"no extras in the serving image: {arguments}"
    last_stage = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    users = [args for keyword, args in instructions[last_stage:] if keyword == "USER"]
    assert users, "the runtime must not run as root"
    assert users[-1].split(":")[0] not in ("root", "0"), "the runtime must not run as root"
    (entrypoint,) = [args for keyword, args in instructions if keyword == "ENTRYPOINT"]
    assert exec_form(entrypoint) == ["lookalike"]


def model_bake_script() -> str:
    """The Dockerfile's RUN that bakes a model in."""
    (script,) = [
        args for keyword, args in dockerfile_instructions() if keyword == "RUN" and "MODEL_" in args
    ]
    return script


@pytest.mark.parametrize(
    ("build_args", "fails", "expected_call"),
    [
        ({}, False, None),
        ({"MODEL_ID": "dinov2-vits14"}, True, None),
        (
            {"MODEL_ID": "dinov2-vits14", "MODEL_SHA256": "ab" * 32},
            False,
            ["models", "fetch", "dinov2-vits14", "--sha256", "ab" * 32],
        ),
        (
            {"MODEL_ID": "m", "MODEL_URL": "https://h/m.onnx", "MODEL_SHA256": "cd" * 32},
            False,
            ["models", "fetch", "m", "--url", "https://h/m.onnx", "--sha256", "cd" * 32],
        ),
    ],
)
def test_dockerfile_bakes_a_model_only_with_its_checksum(
    tmp_path: Path, build_args: dict[str, str], fails: bool, expected_call: list[str] | None
) -> None:
    """The RUN step runs under sh with a stand-in `lookalike` that records its arguments."""
    calls = tmp_path / "calls.json"
    stub = tmp_path / "bin" / "lookalike"
    stub.parent.mkdir()
    stub.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"open({str(calls)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    stub.chmod(0o755)
    env = {"PATH": f"{stub.parent}:{os.environ['PATH']}", "MODEL_ID": "", "MODEL_URL": ""}
    env |= {"MODEL_SHA256": ""} | build_args
    result = subprocess.run(
        ["/bin/sh", "-c", model_bake_script()], env=env, capture_output=True, text=True, check=False
    )
    assert (result.returncode != 0) == fails, result.stderr
    if fails:
        assert "MODEL_SHA256" in result.stderr
    recorded = json.loads(calls.read_text()) if calls.exists() else None
    assert recorded == expected_call
    if recorded is not None:
        resolve_cli(recorded)
