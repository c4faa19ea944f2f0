"""jupyterhub-singleuser's own flags, which spawners add to any command line.

`--Class.trait=value` (or `--Class.trait value`) is taken out before click parses the rest: the
directory traits become the app's working directory, the others are logged once as ignored, so
none of them can stop the server from starting.
"""

from __future__ import annotations

import re

# `--Class.trait[=value]` as traitlets writes it. Class names are CamelCase, which keeps app
# options such as streamlit's `--server.port` out of this pattern.
_TRAIT_FLAG = re.compile(r"^--([A-Z]\w*)\.(\w+)(?:=(.*))?$", re.DOTALL)
# Traits that name the single-user server's root directory: the app's working directory here.
DIRECTORY_TRAITS = {"notebook_dir", "root_dir"}
# Words that are our own click flags despite their traitlets-like spelling (0.8.3's boolean
# flag); `--NotebookApp.allow_origin=VALUE`, jupyterhub-singleuser's trait, is ignored like others.
_OWN_TRAITS = {"--NotebookApp.allow_origin"}


def split_singleuser_traits(words: list[str]) -> tuple[list[str], dict[str, str]]:
    """Take `--Class.trait=value` (or `--Class.trait value`) flags out of `words`."""
    rest: list[str] = []
    traits: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        match = _TRAIT_FLAG.match(word)
        if match and word not in _OWN_TRAITS:
            name = f"{match.group(1)}.{match.group(2)}"
            value = match.group(3)
            if value is None and i + 1 < len(words) and not words[i + 1].startswith("-"):
                value = words[i + 1]
                i += 1
            traits[name] = value if value is not None else ""
        else:
            rest.append(word)
        i += 1
    return rest, traits
