"""Every /v1/... route also without its prefix, as clients configured with a bare base URL call
them, and under Azure OpenAI's prefixes, as Azure clients call them; and the probes under
LiteLLM's paths, as deployments moved from it call them. The aliases' metrics and logs carry the
label of the route they alias."""

from __future__ import annotations

import re

from aiohttp import web

from shieldes.gateway.middleware import ROUTE_LABELS

API_PREFIX = "/v1"
# Azure OpenAI's prefixes for the routes that are not per deployment: the openai SDK's AzureOpenAI
# client (`azure_endpoint`) sends /responses, /models, ... to /openai/..., and Azure's v1 API
# (`OpenAI(base_url=".../openai/v1")`) every route to /openai/v1/...
AZURE_PREFIXES = ("/openai", "/openai/v1")
_VARIABLE = re.compile(r"\(\?P<(\w+)>([^()]*)\)")
_DEFAULT_VARIABLE = "[^{}/]+"
# LiteLLM's liveness and readiness probe paths (a moved app's health checks, Kubernetes probes)
PROBE_ALIASES = {"/health/liveliness": "/health", "/health/liveness": "/health", "/health/readiness": "/ready"}


def add_unversioned_aliases(app: web.Application) -> None:
    """Every /v1/... route also without the prefix (/chat/completions, /messages, ...), as clients
    configured with a bare base URL call them, and under AZURE_PREFIXES (but the per-deployment
    routes, which have Azure's own paths), and PROBE_ALIASES. Run once after every route is added,
    so routes added later get every form too."""
    routes = [r for r in app.router.routes() if r.resource is not None and r.method != "HEAD"]
    taken = {(r.method, r.resource.canonical) for r in routes if r.resource is not None}
    labels: dict[str, str] = {}
    for route in routes:
        assert route.resource is not None
        path = route.resource.canonical
        if not path.startswith(API_PREFIX + "/"):
            continue
        bare = path[len(API_PREFIX):]
        prefixes = ("",) if bare.startswith("/deployments/") else ("", *AZURE_PREFIXES)
        for prefix in prefixes:
            if (route.method, prefix + bare) in taken:
                continue
            taken.add((route.method, prefix + bare))
            alias = app.router.add_route(route.method, prefix + alias_pattern(route.resource), route.handler)
            if alias.resource is not None:
                labels[alias.resource.canonical] = path
    probes = {r.resource.canonical: r.handler for r in routes if r.method == "GET" and r.resource is not None}
    for alias_path, path in PROBE_ALIASES.items():
        if path in probes and ("GET", alias_path) not in taken:
            app.router.add_get(alias_path, probes[path])
            labels[alias_path] = path
    app[ROUTE_LABELS] = labels


def alias_pattern(resource: web.AbstractResource) -> str:
    """The resource's path pattern without the /v1 prefix, custom variable patterns kept
    ({model:.+} matches names with slashes such as openai/gpt-4o)."""
    path = resource.canonical[len(API_PREFIX):]
    regex = resource.get_info().get("pattern")
    if isinstance(regex, re.Pattern):
        for name, pattern in _VARIABLE.findall(regex.pattern):
            if pattern != _DEFAULT_VARIABLE:
                path = path.replace("{" + name + "}", "{" + name + ":" + pattern + "}")
    return path
