"""The HTML gpuspawner renders, from jinja2 templates an admin can override.

The packaged templates are in ``gpuspawner/templates/``: ``spawn_form.html`` (the spawn
form) and ``admin.html`` (the admin dashboard). ``template_paths`` (a spawner setting, read
by the admin service too) lists directories searched first: copy a template there and
change it. Every ``{{ value }}`` is escaped with :func:`html.escape`; a template marks
trusted markup with ``|safe``.
"""

import functools
import html

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader
from markupsafe import Markup


def _escaped(value) -> Markup:
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value)))


@functools.lru_cache(maxsize=16)
def environment(template_paths: tuple[str, ...] = ()) -> Environment:
    """The templates: ``template_paths`` first, then the packaged ones."""
    loader = ChoiceLoader(
        [FileSystemLoader(list(template_paths)), PackageLoader("gpuspawner", "templates")]
    )
    return Environment(
        loader=loader, autoescape=False, finalize=_escaped, keep_trailing_newline=True
    )


def render(name: str, template_paths=(), **context) -> str:
    return environment(tuple(template_paths)).get_template(name).render(**context)
