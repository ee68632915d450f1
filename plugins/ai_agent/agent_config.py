"""An agent's `agent.yaml`: what it is, what it ships and how it runs, checked with errors that
name the file and line.

The format (only `name` is required; a key left empty means its default):

    name: router                      # a DNS label: lowercase letters, digits and `-`
    description: Routes requests to the right specialist.
    models:                           # files under the agent's weights directory
      - router.npy
      - name: embeddings/table.npy
        sha256: 3f0a...               # 64 lowercase hex digits; pins the file's content
    env:                              # numbers and booleans become strings: true -> "true"
      LOG_LEVEL: info
      WORKERS: 4
    ports: [8080]
    healthcheck:
      command: ["python3", "-c", "import urllib.request as u; u.urlopen('http://localhost:8080/')"]
      interval_seconds: 30
      timeout_seconds: 5
      retries: 3
      start_period_seconds: 0
    resources: {cpu: 500m, memory: 512Mi, gpus: 0}

Values are built from YAML nodes rather than `yaml.safe_load`, so that every error can point at
the line it is about, and so that duplicate keys (which PyYAML silently merges) are caught.
"""

from __future__ import annotations

import difflib
import pathlib
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple, TypeVar, Union

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# A Markdown list, which `softwrap` (Pants help) also keeps one item a line.
SCHEMA_HELP = """\
* name (required): the agent's name, a DNS label (lowercase letters, digits, `-`; at most 63).
* description: a one-line summary, put in the image's description label.
* models: files under the weights directory to ship, each a relative path (`router.npy`) or \
{name: <path>, sha256: <64 lowercase hex digits>} to pin its content.
* env: environment variables, a mapping NAME: value; numbers and booleans become strings.
* ports: TCP ports the agent listens on (integers 1..65535, no duplicates).
* healthcheck: command (required; exec form, a list of strings), interval_seconds (30), \
timeout_seconds (5), retries (3), start_period_seconds (0).
* resources: cpu (`500m`, `2`), memory (`512Mi`, `2Gi`, bytes), gpus (0); recorded as labels."""

_TOP_KEYS = ("name", "description", "models", "env", "ports", "healthcheck", "resources")
_MODEL_KEYS = ("name", "sha256")
# An agent.yaml is a description: a bigger one is data in the wrong place (it is shipped in the
# config layer and read by every build step of the agent).
MAX_SIZE = 256 * 1024
_HEALTHCHECK_KEYS = (
    "command",
    "interval_seconds",
    "timeout_seconds",
    "retries",
    "start_period_seconds",
)
_RESOURCE_KEYS = ("cpu", "memory", "gpus")

_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CPU_RE = re.compile(r"^\d+(\.\d+)?m?$")
_MEMORY_RE = re.compile(r"^\d+(\.\d+)?(Ki|Mi|Gi|Ti|K|M|G|T)?$")

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (_TAG + t for t in ("str", "int", "float", "bool", "null"))
_NS_PER_SECOND = 1_000_000_000

_T = TypeVar("_T")


class AgentConfigError(ValueError):
    """A problem in an agent.yaml, e.g. 'agents/router/agent.yaml:7: `ports[1]` must be ...'."""


@dataclass(frozen=True)
class ModelFile:
    name: str  # relative to the weights directory, e.g. "router/weights.npy"
    sha256: Optional[str] = None
    line: int = 0  # of the entry, so callers can point at it too


@dataclass(frozen=True)
class Healthcheck:
    command: Tuple[str, ...]  # exec form: no shell unless the command starts one
    interval_seconds: int = 30
    timeout_seconds: int = 5
    retries: int = 3
    start_period_seconds: int = 0

    def to_oci(self) -> dict:
        """The image config's `Healthcheck` object (Docker's extension; durations in ns)."""
        return {
            "Test": ["CMD", *self.command],
            "Interval": self.interval_seconds * _NS_PER_SECOND,
            "Timeout": self.timeout_seconds * _NS_PER_SECOND,
            "Retries": self.retries,
            "StartPeriod": self.start_period_seconds * _NS_PER_SECOND,
        }


@dataclass(frozen=True)
class Resources:
    cpu: Optional[str] = None  # Kubernetes-style quantity: "2", "0.5", "500m"
    memory: Optional[str] = None  # "512Mi", "2Gi", "1G" or bytes
    gpus: int = 0


@dataclass(frozen=True)
class AgentConfig:
    name: str
    description: str = ""
    models: Tuple[ModelFile, ...] = ()
    env: Tuple[Tuple[str, str], ...] = ()  # sorted by name
    ports: Tuple[int, ...] = ()  # sorted
    healthcheck: Optional[Healthcheck] = None
    resources: Resources = Resources()

    def labels(self) -> Dict[str, str]:
        """Image labels describing the agent, so registries and schedulers can read them."""
        labels = {"org.opencontainers.image.title": self.name}
        if self.description:
            labels["org.opencontainers.image.description"] = self.description
        if self.resources.cpu is not None:
            labels["ai-agent.resources.cpu"] = self.resources.cpu
        if self.resources.memory is not None:
            labels["ai-agent.resources.memory"] = self.resources.memory
        if self.resources.gpus > 0:
            labels["ai-agent.resources.gpus"] = str(self.resources.gpus)
        return labels


def load_agent_config(
    path: Union[pathlib.Path, str], display_path: Optional[str] = None
) -> AgentConfig:
    """Reads and parses `path`; errors name `display_path` (e.g. the build-root-relative path)."""
    shown = display_path if display_path is not None else str(path)
    return decode_agent_config(pathlib.Path(path).read_bytes(), shown)


def decode_agent_config(data: bytes, path: str) -> AgentConfig:
    """Parses the bytes of an agent.yaml (as a build reads them from a digest)."""
    if len(data) > MAX_SIZE:
        raise AgentConfigError(
            f"{path}: is {len(data)} bytes; an agent.yaml describes the agent and is at most"
            f" {MAX_SIZE // 1024} KiB: ship data as `resource`s, weights as `weights`"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AgentConfigError(f"{path}: is not UTF-8 text ({e.reason})") from e
    return parse_agent_config(text, path)


def parse_agent_config(text: str, path: str) -> AgentConfig:
    """Parses the text of an agent.yaml; `path` is only used in error messages."""
    try:
        documents = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        problem = getattr(e, "problem", None) or str(e)
        raise AgentConfigError(f"{where}: not valid YAML: {problem}") from e
    if len(documents) > 1:
        raise _Reader(path).error(documents[1], "holds more than one YAML document (`---`)")
    if not documents or (isinstance(documents[0], ScalarNode) and documents[0].tag == _NULL):
        raise AgentConfigError(f"{path}: is empty; it needs at least `name`")
    return _Reader(path).agent(documents[0])


class _Reader:
    """Turns nodes into values, raising errors that carry the file and the node's line."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, node: Node, message: str) -> AgentConfigError:
        return AgentConfigError(f"{self.path}:{node.start_mark.line + 1}: {message}")

    def agent(self, node: Node) -> AgentConfig:
        if not isinstance(node, MappingNode):
            allowed = ", ".join(_TOP_KEYS)
            raise self.error(node, f"must be a mapping of keys ({allowed}), got {_show(node)}")
        keys = self.mapping(node, "", _TOP_KEYS, required=("name",))
        name = self.string(keys["name"], "name")
        if not _NAME_RE.match(name):
            raise self.error(
                keys["name"],
                "`name` must be a DNS label: lowercase letters, digits and `-`, starting and "
                f"ending with a letter or digit, at most 63 characters; got {name!r}",
            )

        def optional(key: str, read: Callable[[Node], _T], default: _T) -> _T:
            return read(keys[key]) if key in keys else default

        return AgentConfig(
            name=name,
            description=optional("description", lambda n: self.string(n, "description"), ""),
            models=optional("models", self.models, ()),
            env=optional("env", self.env, ()),
            ports=optional("ports", self.ports, ()),
            healthcheck=optional("healthcheck", self.healthcheck, None),
            resources=optional("resources", self.resources, Resources()),
        )

    def models(self, node: Node) -> Tuple[ModelFile, ...]:
        models: Dict[str, ModelFile] = {}
        for i, item in enumerate(self.sequence(node, "models")):
            key, sha256 = f"models[{i}]", None
            name_node = item
            if isinstance(item, MappingNode):
                entry = self.mapping(item, key, _MODEL_KEYS, required=("name",))
                name_node, key = entry["name"], f"{key}.name"
                if "sha256" in entry:
                    pin = entry["sha256"]
                    if isinstance(pin, ScalarNode) and pin.tag in (_INT, _FLOAT):
                        raise self.error(
                            pin,
                            f"`models[{i}].sha256` was read by YAML as a number: put it in quotes,"
                            f" `sha256: '{pin.value}'`",
                        )
                    sha256 = self.string(pin, f"models[{i}].sha256")
                    if not _SHA256_RE.match(sha256):
                        raise self.error(
                            entry["sha256"],
                            f"`models[{i}].sha256` must be 64 lowercase hex digits, got {sha256!r}",
                        )
            expected = "a string" if name_node is not item else "a path or a mapping {name, sha256}"
            name = self.string(name_node, key, expected)
            if any(part in ("", ".", "..") for part in name.split("/")):
                raise self.error(
                    name_node,
                    f"`{key}` must be a relative path under the weights directory (no leading "
                    f"`/`, no `..` or empty parts), got {name!r}",
                )
            if name in models:
                raise self.error(item, f"`{key}` {name!r} is listed twice")
            models[name] = ModelFile(name, sha256, item.start_mark.line + 1)
        return tuple(models.values())

    def env(self, node: Node) -> Tuple[Tuple[str, str], ...]:
        env: List[Tuple[str, str]] = []
        for name, value in self.mapping(node, "env", None).items():
            if not _ENV_KEY_RE.match(name):
                raise self.error(value, f"`env` name {name!r} must match [A-Za-z_][A-Za-z0-9_]*")
            if not isinstance(value, ScalarNode) or value.tag not in (_STR, _INT, _FLOAT, _BOOL):
                raise self.error(
                    value, f"`env.{name}` must be a string, number or boolean, got {_show(value)}"
                )
            if value.tag == _BOOL:
                rendered = "true" if _construct(value) else "false"
            else:  # as written: `1.10` stays "1.10", `010` stays "010"
                rendered = value.value
            env.append((name, rendered))
        return tuple(sorted(env))

    def ports(self, node: Node) -> Tuple[int, ...]:
        ports: Dict[int, Node] = {}
        for i, item in enumerate(self.sequence(node, "ports")):
            port = self.integer(item, f"ports[{i}]", 1, 65535)
            if port in ports:
                first = ports[port].start_mark.line + 1
                raise self.error(
                    item, f"`ports[{i}]` {port} is listed twice (first on line {first})"
                )
            ports[port] = item
        return tuple(sorted(ports))

    def healthcheck(self, node: Node) -> Healthcheck:
        keys = self.mapping(node, "healthcheck", _HEALTHCHECK_KEYS, required=("command",))
        items = self.sequence(keys["command"], "healthcheck.command", "a list of strings")
        if not items:
            raise self.error(keys["command"], "`healthcheck.command` must not be empty")
        command = tuple(self.string(n, f"healthcheck.command[{i}]") for i, n in enumerate(items))
        numbers = {
            k: self.integer(keys[k], f"healthcheck.{k}", 0 if k == "start_period_seconds" else 1)
            for k in _HEALTHCHECK_KEYS[1:]
            if k in keys
        }
        return Healthcheck(command, **numbers)

    def resources(self, node: Node) -> Resources:
        keys = self.mapping(node, "resources", _RESOURCE_KEYS)
        return Resources(
            cpu=self.quantity(keys.get("cpu"), "cpu", _CPU_RE, "`500m` or `2`"),
            memory=self.quantity(keys.get("memory"), "memory", _MEMORY_RE, "`512Mi` or `2Gi`"),
            gpus=self.integer(keys["gpus"], "resources.gpus", 0) if "gpus" in keys else 0,
        )

    def quantity(
        self, node: Optional[Node], key: str, pattern: re.Pattern[str], example: str
    ) -> Optional[str]:
        """`cpu: 2` and `memory: 1000000` are YAML numbers, so numbers are taken as written."""
        if node is None:
            return None
        if isinstance(node, ScalarNode) and node.tag in (_INT, _FLOAT):
            text = str(node.value)
        else:
            text = self.string(node, f"resources.{key}")
        if not pattern.match(text):
            raise self.error(
                node, f"`resources.{key}` must be a quantity like {example}, got {text!r}"
            )
        return text

    def mapping(
        self,
        node: Node,
        where: str,
        allowed: Optional[Tuple[str, ...]],
        required: Tuple[str, ...] = (),
    ) -> Dict[str, Node]:
        """The value node of each key given a non-null value; `allowed=None` allows any key."""
        if not isinstance(node, MappingNode):
            raise self.error(node, f"`{where}` must be a mapping, got {_show(node)}")
        values: Dict[str, Node] = {}
        seen: Dict[str, int] = {}
        for key_node, value in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != _STR:
                raise self.error(key_node, f"keys must be strings, got {_show(key_node)}")
            key, line = key_node.value, key_node.start_mark.line + 1
            shown = f"{where}.{key}" if where else key
            if key in seen:
                raise self.error(key_node, f"duplicate key `{shown}` (first on line {seen[key]})")
            seen[key] = line
            if allowed is not None and key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f" (did you mean `{close[0]}`?)" if close else ""
                raise self.error(
                    key_node,
                    f"unknown key `{shown}`{hint}; allowed: {', '.join(sorted(allowed))}",
                )
            # A key left empty means its default; in `env` (allowed=None) it is an error later.
            is_null = isinstance(value, ScalarNode) and value.tag == _NULL
            if not is_null or allowed is None or key in required:
                values[key] = value
        for key in required:
            if key not in values:
                inside = f" in `{where}`" if where else ""
                raise self.error(node, f"missing required key `{key}`{inside}")
        return values

    def sequence(self, node: Node, where: str, expected: str = "a list") -> List[Node]:
        if not isinstance(node, SequenceNode):
            raise self.error(node, f"`{where}` must be {expected}, got {_show(node)}")
        return list(node.value)

    def string(self, node: Node, where: str, expected: str = "a string") -> str:
        if not isinstance(node, ScalarNode) or node.tag != _STR:
            raise self.error(node, f"`{where}` must be {expected}, got {_show(node)}")
        return str(node.value)

    def integer(self, node: Node, where: str, minimum: int, maximum: Optional[int] = None) -> int:
        """An int within bounds; booleans are not integers here, whatever Python thinks."""
        value = _construct(node) if isinstance(node, ScalarNode) and node.tag == _INT else None
        if (
            not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            bounds = f"{minimum}..{maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(node, f"`{where}` must be an integer {bounds}, got {_show(node)}")
        return value


def _construct(node: ScalarNode) -> object:
    """The Python value of a scalar, resolved the way `yaml.safe_load` would."""
    return yaml.constructor.SafeConstructor().construct_object(node)


def _show(node: Node) -> str:
    """A value as the user wrote it, for error messages."""
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, MappingNode):
        return "a mapping"
    if node.tag == _NULL:
        return "null"
    return repr(node.value) if node.tag == _STR else str(node.value)
