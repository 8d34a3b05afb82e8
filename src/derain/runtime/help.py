"""`--help` of every command, read from its config file: the header comment says what the command
does, each top-level key's comment what it sets, and the defaults list which config groups it
uses. One source: the YAML file documents itself, the help only lays it out.

Hydra prints it through the `${derain.help:NAME}` interpolation of `hydra.help.template`.
"""

from __future__ import annotations

import re

from derain.paths import config_dir

_KEY = re.compile(r"^([A-Za-z_]\w*):\s*(.*?)\s*(?:#\s?(.*))?$")
_GROUP = re.compile(r"^\s+-\s+([\w/]+):\s*(\S+)")
_INCLUDED = re.compile(r"^\s+-\s+([\w/]+)@_here_:\s*(\S+)")
_SKIPPED_KEYS = {"defaults", "hydra"}
_MODEL_KEYS = {"ckpt_path"}
"""Settings that name a model: their commands' help lists the bundled models."""


def command_help(config_name: str) -> str:
    """The help text of the command whose primary config is `conf/<config_name>.yaml`."""
    lines = (config_dir() / f"{config_name}.yaml").read_text().splitlines()
    about, examples = _header(lines)
    text = [*about, "", "== Settings (key=value; defaults shown) =="]
    settings = [
        setting
        for group, option in _included(lines)
        for setting in _settings((config_dir() / group / f"{option}.yaml").read_text().splitlines())
    ] + _settings(lines)
    width = max((len(f"{k}={v}") for k, v, _ in settings), default=0)
    text += [
        f"  {f'{key}={value}':<{width}}  {comment}".rstrip() for key, value, comment in settings
    ]
    groups = _groups(lines)
    if groups:
        text += ["", "== Config groups (group=option) =="]
        name_width = max(len(group) for group in groups)
        text += [
            f"  {group:<{name_width}}  {', '.join(options)}" for group, options in groups.items()
        ]
    if any(key in _MODEL_KEYS for key, _, _ in settings):
        text += ["", "== Bundled models (ckpt_path=NAME; null: default) ==", *_bundled_lines()]
    if examples:
        text += ["", "== Examples ==", *examples]
    text += [
        "",
        "Show the composed config without running: --cfg job    Hydra's options: --hydra-help",
    ]
    # Hydra reads the template with string.Template: a literal $ is written $$
    return "\n".join(text).replace("$", "$$") + "\n"


def _bundled_lines() -> list[str]:
    """One line per model bundled with the package: its name and where its card is."""
    from derain.inference.sources import CARD_FILE, DEFAULT_MODEL, bundled_models

    models = bundled_models()
    if not models:
        return ["  none in this installation: give a checkpoint or model folder"]
    width = max(len(name) for name in models)
    return [
        f"  {name:<{width}}  {'(the default) ' if name == DEFAULT_MODEL else ''}"
        f"model card: {folder / CARD_FILE}"
        for name, folder in models.items()
    ]


def _header(lines: list[str]) -> tuple[list[str], list[str]]:
    """The leading comment block: description lines, and the indented example command lines."""
    about, examples = [], []
    for line in lines:
        if not line.startswith("#"):
            break
        body = line[1:]
        if body.startswith("   "):
            examples.append("  " + body.strip())
        else:
            about.append(body.strip())
    return about, examples


def _settings(lines: list[str]) -> list[tuple[str, str, str]]:
    """(key, default value, comment) of every top-level key; a key without an inline comment
    takes the comment lines right above it."""
    settings, above = [], []
    body = lines[len(_header(lines)[0]) + len(_header(lines)[1]) :]
    for line in body:
        if line.startswith("#"):
            above.append(line.lstrip("# ").strip())
            continue
        match = _KEY.match(line)
        if match and match.group(1) not in _SKIPPED_KEYS:
            key, value, comment = match.groups()
            settings.append((key, value, comment or " ".join(above)))
        if line.strip() and not line.startswith(" "):
            above = []
        elif line.startswith(" ") and line.strip().startswith("#") and settings:
            # a comment continued on the next line, aligned under the first
            key, value, comment = settings[-1]
            settings[-1] = (key, value, f"{comment} {line.strip().lstrip('# ')}")
    return settings


def _defaults(lines: list[str]) -> list[str]:
    """The lines of the defaults list."""
    entries, in_defaults = [], False
    for line in lines:
        if line.startswith("defaults:"):
            in_defaults = True
        elif in_defaults and line and not line.startswith(" "):
            break
        elif in_defaults:
            entries.append(line)
    return entries


def _included(lines: list[str]) -> list[tuple[str, str]]:
    """(group, option) of the defaults entries merged into the command's own keys (`@_here_`)."""
    return [m.groups() for m in map(_INCLUDED.match, _defaults(lines)) if m]


def _groups(lines: list[str]) -> dict[str, list[str]]:
    """The config groups of the defaults list (Hydra's own aside) and the options of each."""
    groups: dict[str, list[str]] = {}
    for match in map(_GROUP.match, _defaults(lines)):
        if match and not match.group(1).startswith(("override", "hydra")):
            group = match.group(1)
            groups[group] = sorted(p.stem for p in (config_dir() / group).glob("*.yaml"))
    return groups
