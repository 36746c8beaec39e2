"""Every URL pattern of the site, with values substituted into its path converters.

Used by the sweeps that call every page (no server error on extreme values; every refusal
audited): they walk Django's resolver instead of a hand-kept list, so a new page is swept too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver
from django.urls.converters import IntConverter, SlugConverter, StringConverter
from django.urls.resolvers import RoutePattern

#: Values no page may answer with a server error: ints past 64 bits, the calendar's first and last
#: days.
HUGE_INT = "99999999999999999999"
EXTREME_DATES = ("0001-01-01", "9999-12-31")


@dataclass(frozen=True)
class Route:
    name: str  # namespace:name
    route: str  # "requests/<int:pk>/edit/"
    converters: dict  # parameter -> converter

    def fill(self, values: dict[str, str]) -> str:
        def replace(match: re.Match) -> str:
            return values[match.group("parameter")]

        return "/" + re.sub(r"<(?:(?P<converter>[^>:]+):)?(?P<parameter>[^>]+)>", replace, self.route)


def routes(skip_prefixes: tuple[str, ...] = ("admin/", "api/", "static/")) -> list[Route]:
    """The site's route patterns (the admin and the API are swept by their own tests)."""
    found: list[Route] = []

    def walk(patterns, prefix: str, namespace: str, converters: dict):
        for entry in patterns:
            if not isinstance(entry.pattern, RoutePattern):
                continue
            route = prefix + str(entry.pattern._route)
            merged = {**converters, **entry.pattern.converters}
            if isinstance(entry, URLResolver):
                ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                walk(entry.url_patterns, route, ns, merged)
            elif isinstance(entry, URLPattern):
                if route.startswith(skip_prefixes):
                    continue
                found.append(Route(f"{namespace}{entry.name or ''}", route, merged))

    walk(get_resolver().url_patterns, "", "", {})
    return found


def ordinary_value(converter) -> str:
    if isinstance(converter, IntConverter):
        return "1"
    if isinstance(converter, SlugConverter):
        return "submit"
    if isinstance(converter, StringConverter):
        return "x"
    if _is_date(converter):
        return "2026-12-01"
    return "1"


def _is_date(converter) -> bool:
    return not isinstance(converter, (IntConverter, StringConverter)) and bool(
        re.fullmatch(converter.regex, "2026-12-01")
    )


def extreme_values(converter) -> list[str]:
    """The values of this converter's kind that the sweep found to break pages."""
    if isinstance(converter, IntConverter):
        return [HUGE_INT, "0"]
    if _is_date(converter):
        return list(EXTREME_DATES)
    return []


def extreme_urls(route: Route) -> list[str]:
    """One URL per (parameter, extreme value), the other parameters ordinary."""
    ordinary = {name: ordinary_value(c) for name, c in route.converters.items()}
    urls = []
    for name, converter in route.converters.items():
        for value in extreme_values(converter):
            urls.append(route.fill({**ordinary, name: value}))
    return urls
