"""Can this machine get a deployment's cloud credentials the way a node does? Vertex AI signs in
with google-auth (a service-account key file, else Application Default Credentials) and Bedrock
with botocore's credential chain (environment, shared profile, container or instance role), unless
a Bedrock API key is configured. `shieldes doctor` reports this instead of "no provider key": those
deployments have none, and a node without the cloud's credentials fails every call."""

from __future__ import annotations

from shieldes.checks import Finding
from shieldes.projections.state import Deployment


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
        from google.oauth2 import service_account

        from shieldes.providers.vertex import CLOUD_SCOPE
    except ImportError:
        return Finding("credentials", dep.name, False, "google-auth is not installed here",
                       "pip install 'shieldes[vertex]' on every node")
    path = dep.options.get("credentials_file", "")
    fix = (f"give every node a service-account key: `shieldes provider update {dep.name} --credentials-file "
           "PATH` (the file readable on each node), or Application Default Credentials "
           "(GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, an attached service account)")
    try:
        if path:
            accounts: object = service_account.Credentials
            creds = accounts.from_service_account_file(path, scopes=[CLOUD_SCOPE])  # type: ignore[attr-defined]
            return Finding("credentials", dep.name, True,
                           f"service-account key {path} readable ({creds.service_account_email})")
        _creds, project = google.auth.default(scopes=[CLOUD_SCOPE])
    except Exception as exc:  # google.auth.exceptions.*, file and JSON errors
        where = f"service-account key {path}" if path else "Application Default Credentials"
        return Finding("credentials", dep.name, False,
                       f"no Google credentials: {where}: {str(exc).splitlines()[0][:200] or type(exc).__name__}", fix)
    return Finding("credentials", dep.name, True,
                   "Application Default Credentials found" + (f" (project {project})" if project else ""))


def _aws(dep: Deployment) -> Finding:
    try:
        import botocore.session
    except ImportError:
        return Finding("credentials", dep.name, False, "botocore is not installed here",
                       "pip install 'shieldes[bedrock]' on every node")
    try:
        creds = botocore.session.Session().get_credentials()
    except Exception as exc:  # a broken shared config file, a profile that does not exist
        creds, problem = None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    else:
        problem = "none in the environment, a shared profile, a container or an instance role"
    if creds is None:
        return Finding("credentials", dep.name, False, f"no AWS credentials: {problem}",
                       "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) on every node, attach a "
                       f"role, or use a Bedrock API key: `shieldes provider update {dep.name} --api-key-env VAR`")
    return Finding("credentials", dep.name, True, f"AWS credentials found ({creds.method})")
