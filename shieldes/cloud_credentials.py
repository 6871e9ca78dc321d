"""Can this machine get a deployment's cloud credentials the way a node does? Vertex AI signs in
with google-auth (a service-account key file, else Application Default Credentials) and Bedrock
with botocore's credential chain (environment, shared profile, container or instance role), unless
a Bedrock API key is configured; an `azure` deployment under `--auth entra` gets Entra ID tokens
from azure-identity. `shieldes doctor` reports this instead of "no provider key": those deployments
have none, and a node without the cloud's credentials cannot use them (provider_misconfigured).
Each check gets a credential as a node would (a token from the token endpoint, a role's keys),
calling no model, within CHECK_TIMEOUT where the library lets a timeout be set."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from shieldes.checks import Finding
from shieldes.projections.state import Deployment
from shieldes.providers.node_credentials import Bounded, one_line

CHECK_TIMEOUT = 10.0  # seconds: the longest a token endpoint is waited for


async def node_credential_finding(dep: Deployment) -> Finding | None:
    """cloud_credential_finding, off the event loop, and the Entra ID check of an `azure`
    deployment under `--auth entra`; None for a deployment whose provider key is all it needs."""
    if dep.kind == "azure" and dep.options.get("auth") == "entra":
        return await _entra(dep)
    if dep.kind in ("vertex", "bedrock"):
        return await asyncio.to_thread(cloud_credential_finding, dep)
    return None


async def _entra(dep: Deployment) -> Finding:
    from shieldes.providers.entra import CHECK, ENTRA_SCOPE, default_credential

    try:
        credential = await asyncio.to_thread(default_credential)
    except ImportError:
        return Finding("credentials", dep.name, False, "--auth entra needs azure-identity, which is not installed here",
                       "pip install 'shieldes[azure]' on every node")
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):
            token = await credential.get_token(ENTRA_SCOPE)
    except Exception as exc:  # ClientAuthenticationError (naming each source of the chain), a timeout
        why = f"timed out after {CHECK_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else one_line(exc, 1000)
        return Finding("credentials", dep.name, False, f"no Entra ID token: {why}",
                       CHECK + "; then run `shieldes doctor` again")
    finally:
        with contextlib.suppress(Exception):  # (closing its HTTP sessions says nothing of the token)
            await credential.close()
    left = max(0.0, float(token.expires_on) - time.time()) / 60
    return Finding("credentials", dep.name, True, f"Entra ID token obtained (valid {left:.0f} more minutes)")


def cloud_credential_finding(dep: Deployment) -> Finding | None:
    """The credentials finding of a vertex deployment, or of a bedrock one without an API key,
    from loading its credentials here (no network call but what the clouds' own discovery makes:
    google-auth and botocore may ask a metadata server); None for every other deployment."""
    if dep.kind == "vertex":
        return _google(dep)
    if dep.kind == "bedrock" and dep.secret_ref is None:
        return _aws(dep)
    return None


def _google(dep: Deployment) -> Finding:
    try:
        import google.auth
        from google.auth.transport.requests import Request
        from google.oauth2 import service_account

        from shieldes.providers.vertex import CLOUD_SCOPE
    except ImportError:
        return Finding("credentials", dep.name, False, "google-auth is not installed here",
                       "pip install 'shieldes[vertex]' on every node")
    path = dep.options.get("credentials_file", "")
    fix = (f"give every node a service-account key: `shieldes provider update {dep.name} --credentials-file "
           "PATH` (the file readable on each node, its account allowed on the project), or Application Default "
           "Credentials (GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, an attached "
           "service account)")
    where = f"service-account key {path}" if path else "Application Default Credentials"
    try:
        if path:
            accounts: object = service_account.Credentials
            creds: Any = accounts.from_service_account_file(path, scopes=[CLOUD_SCOPE])  # type: ignore[attr-defined]
            found = f"service-account key {path} ({creds.service_account_email})"
        else:
            creds, project = google.auth.default(scopes=[CLOUD_SCOPE])
            found = "Application Default Credentials" + (f" (project {project})" if project else "")
    except Exception as exc:  # google.auth.exceptions.*, file and JSON errors
        return Finding("credentials", dep.name, False, f"no Google credentials: {where}: {one_line(exc, 200)}", fix)
    try:
        creds.refresh(Bounded(Request(), CHECK_TIMEOUT))
    except Exception as exc:  # the token endpoint refusing the key or unreachable
        return Finding("credentials", dep.name, False,
                       f"{found} loaded, but no access token: {one_line(exc, 200)}", fix)
    return Finding("credentials", dep.name, True, f"{found}: access token obtained")


def _aws(dep: Deployment) -> Finding:
    try:
        import botocore.session
    except ImportError:
        return Finding("credentials", dep.name, False, "botocore is not installed here",
                       "pip install 'shieldes[bedrock]' on every node")
    try:
        creds = botocore.session.Session().get_credentials()
        if creds is not None:
            creds.get_frozen_credentials()  # (a role's keys fetched, as a node's first signature does)
    except Exception as exc:  # a broken shared config file, a profile that does not exist, a role refused
        creds, problem = None, one_line(exc, 200)
    else:
        problem = "none in the environment, a shared profile, a container or an instance role"
    if creds is None:
        return Finding("credentials", dep.name, False, f"no AWS credentials: {problem}",
                       "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) on every node, attach a "
                       f"role, or use a Bedrock API key: `shieldes provider update {dep.name} --api-key-env VAR`")
    return Finding("credentials", dep.name, True, f"AWS credentials found ({creds.method})")
