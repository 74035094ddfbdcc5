"""Themes: YAML files turned into Textual `Theme` objects.

The bundled themes are in the repository's `themes/` folder; users add their own in
`~/.config/kraftboard/themes/`. A theme file holds the fields of `textual.theme.Theme`
(name, primary, secondary, accent, warning, error, success, foreground, background,
surface, panel, boost, dark, variables).
"""
from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

from textual.color import Color, ColorParseError
from textual.command import Hit, Hits, Provider
from textual.theme import Theme

from broker.config import ConfigError, read_yaml_mapping, unknown_key_reason
from tui.config import config_dir

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "themes"
DEFAULT_THEME = "kraftboard-dark"
FIELDS = {field.name: field.type for field in dataclasses.fields(Theme)}
COLOR_FIELDS = [name for name, kind in FIELDS.items() if str(kind).startswith("str") and name != "name"]


def load_theme(path: Path) -> Theme:
    data = read_yaml_mapping(path)
    for key, value in data.items():
        if key not in FIELDS:
            raise ConfigError(f"{path}: {key}: {unknown_key_reason(key, FIELDS)}")
        if key in COLOR_FIELDS and value is not None:
            try:
                Color.parse(value)
            except (ColorParseError, TypeError):
                raise ConfigError(f"{path}: {key}: {value!r} is not a colour") from None
        if key == "dark" and not isinstance(value, bool):
            raise ConfigError(f"{path}: dark: expected true or false, found {value!r}")
        if key == "variables" and not isinstance(value, dict):
            raise ConfigError(f"{path}: variables: expected a mapping of variable to value")
    for key in ("name", "primary"):
        if not isinstance(data.get(key), str):
            raise ConfigError(f"{path}: {key}: required (a string)")
    return Theme(**data)


def load_themes(user_dir: Path | None = None) -> tuple[list[Theme], list[str]]:
    """Bundled themes, then the user's; returns the themes and the refusals to report."""
    themes, problems = [], []
    for folder in (BUNDLED_DIR, user_dir or config_dir() / "themes"):
        for path in sorted(folder.glob("*.y*ml")) if folder.is_dir() else []:
            try:
                themes.append(load_theme(path))
            except ConfigError as exc:
                problems.append(str(exc))
    return themes, problems


class ThemeCommands(Provider):
    """Every theme by name in the command palette: `ctrl+p`, type its name, Enter.

    Textual's own "Theme" command opens a second palette; this puts the themes one step
    closer. The app remembers the choice (see `KraftboardApp._remember_theme`).
    """

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name in sorted(self.app.available_themes):
            command = f"Theme: {name}"
            if (score := matcher.match(command)) > 0:
                switch = partial(setattr, self.app, "theme", name)
                yield Hit(score, matcher.highlight(command), switch, text=command,
                          help="switch to this theme (remembered)")
