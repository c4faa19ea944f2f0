"""After the checkout, before the app's start: what the repository says, then its packages.

One seam for both kinds of supervisor (the plain one after its checkout, and a published
revision's after its folder is made), so a push's new dependencies are installed while the
live revision serves, and a first start shows the installer on the loading page.

The two steps have modules of their own: `repository_app.py` reads the repository's own
description of its app (our `jhsnp.toml`, a Hugging Face Space's front matter, Streamlit's
`streamlit_app.py`) under the command line; `app_packages.py` makes sure what it declares is
installed, in a cached environment of its own when the app's Python lacks it.
"""

from __future__ import annotations

from collections.abc import Callable

from .prepare import NotPrepared, ProgressLog
from .settings import Settings


class AppPreparation:
    """One preparation of the app's settings and environment; `stop()` ends an install."""

    def __init__(self, settings: Settings, progress: ProgressLog, set_phase: Callable[[str], None]):
        self.settings = settings
        self.progress = progress
        self.set_phase = set_phase
        self._stop: Callable[[], None] | None = None

    def stop(self) -> None:
        """End what runs now (an installer and its children); the next start tries again."""
        if self._stop is not None:
            self._stop()

    async def run(self, environ: dict[str, str]) -> tuple[Settings, dict[str, str]]:
        """The settings the app starts with and its environment; NotPrepared says why not.

        `environ` is the app's environment as the checkout leaves it (credentials removed, a
        conda environment activated).
        """
        settings = self.settings
        # 1. What the repository says about its app, under the command line (repository_app.py).
        if settings.repo:
            from .repository_app import describe, resolve

            self.set_phase("Reading the repository's description of its app")
            try:
                settings = resolve(settings)
            except NotPrepared as e:
                self.set_phase("The repository's description of its app is not usable")
                self.progress.add(str(e))
                raise
            self.progress.add(f"App: {describe(settings)}")
        # 2. Its packages, installed when the app's Python lacks them (app_packages.py): only
        # with a repository or --install-requirements (a plain start loads none of it).
        if not settings.packages.wanted(settings.repo):
            return settings, environ
        from .app_packages import PackageInstall

        packages = PackageInstall(settings, self.progress, self.set_phase)
        self._stop = packages.stop
        try:
            settings, environ = await packages.run(environ)
        finally:
            self._stop = None
        return settings, environ
