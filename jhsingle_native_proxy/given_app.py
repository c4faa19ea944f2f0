"""What the command line said about the app, kept in `Settings.given_app`.

With `--repo`, the repository may describe its app itself (repository_app.py): after each
checkout, that description is laid under the command line again. For that, the settings keep
the command line's own words apart from what a preset or a server description added to them.
No imports from the package: settings.py imports this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class GivenApp:
    """The command line's app: `--app`, the words after `--`, and the options it gave."""

    # --app TYPE as given ("" for none, "auto" to infer it).
    app: str = ""
    # The words after `--` (a command, or words added to a preset's command).
    words: tuple[str, ...] = ()
    # Names of the options given on the command line among those a repository may also set
    # (presentation_path, ready_timeout, ...): these win over the repository's values.
    explicit: frozenset[str] = frozenset()
    # --env as given: laid over the repository's `env`.
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # True when the command line left the app to the repository: `--repo` with no command and
    # no `--app`, or `--app auto`, which can look at files only after the checkout.
    deferred: bool = False

    @property
    def decided(self) -> bool:
        """The command line chose the app (a command, a preset, a server description)."""
        return not self.deferred
