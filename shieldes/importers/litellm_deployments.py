"""One LiteLLM model_list entry's provider (pure): its LiteLLM prefix and upstream model, the shieldes
kind, base URL and key it maps to, the cloud options of an azure/, bedrock/, gemini/ or vertex_ai/
entry, and a deployment's own rpm/tpm quota."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from shieldes.importers.spec import (
    DEFAULT_BASE_URLS,
    OPENAI_COMPATIBLE,
    ImportRejected,
    ImportSpec,
    SecretSpec,
    entra_auth,
    normalize_anthropic_base,
    normalize_openai_base,
)
from shieldes.providers.kinds import KINDS, base_url_for

# The environment variable LiteLLM reads when an entry names no api_key.
_DEFAULT_KEY_ENV = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "groq": "GROQ_API_KEY",
    "mistral": "MISTRAL_API_KEY",
    "openrouter": "OPENROUTER_API_KEY",
    "cerebras": "CEREBRAS_API_KEY",
    "deepseek": "DEEPSEEK_API_KEY",
    "together_ai": "TOGETHERAI_API_KEY",
    "fireworks_ai": "FIREWORKS_AI_API_KEY",
    "xai": "XAI_API_KEY",
    "perplexity": "PERPLEXITYAI_API_KEY",
    "deepinfra": "DEEPINFRA_API_KEY",
    "azure": "AZURE_API_KEY",
    "azure_ai": "AZURE_AI_API_KEY",
    "gemini": "GEMINI_API_KEY",
}


# LiteLLM's prefixes for an Ollama server, which LiteLLM calls through Ollama's own API at api_base
OLLAMA = ("ollama", "ollama_chat")

# (LiteLLM prefix, shieldes kind, base URL, key, weight, kind options, own): entries sharing one become one
# provider; `own` is the upstream model of an entry with rpm/tpm limits, so that it stays a deployment of its own
Group = tuple[str, str, str, SecretSpec, float, tuple[tuple[str, str], ...], str]
CLOUD = ("azure", "bedrock", "gemini", "vertex_ai")
# litellm_params LiteLLM's Bedrock calls get AWS credentials from: each node's botocore chain here
_AWS_CREDENTIALS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token", "aws_profile_name",
                    "aws_role_name", "aws_session_name", "aws_web_identity_token", "aws_sts_endpoint",
                    "aws_external_id")


def limits(entry: dict[str, Any], where: str) -> tuple[tuple[str, str], ...]:
    """A deployment's `rpm`/`tpm` (LiteLLM's router reads them from the entry, its litellm_params or its
    model_info) as the shieldes provider options of the same names: cluster-wide quotas of that deployment."""
    out = []
    for limit in ("rpm", "tpm"):
        for src, at in ((entry, where), (entry["litellm_params"], f"{where}.litellm_params"),
                        (entry.get("model_info"), f"{where}.model_info")):
            value = src.get(limit) if isinstance(src, dict) else None
            if value is None:
                continue
            if isinstance(value, str) and value.replace("_", "").isdigit():
                value = int(value.replace("_", ""))
            if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value) \
                    or not 0 < value <= 10**12:
                raise ImportRejected(f"{at}.{limit} must be a whole number of requests (tokens) per minute above "
                                     f"0, got {value!r}; fix it or remove it")
            out.append((limit, str(int(value))))
            break
    return tuple(out)


def _text(params: dict[str, Any], key: str, where: str, *spellings: str) -> str | None:
    """A setting shieldes stores as written, under its name or the other `spellings` LiteLLM reads
    (vertex_ai_project for vertex_project): a reference to LiteLLM's environment cannot be stored."""
    for name in (key, *spellings):
        value = params.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str) or value.startswith("os.environ/"):
            raise ImportRejected(
                f"{where}.litellm_params.{name} is {value!r}; write the value itself in the file (shieldes stores "
                "provider settings, not references to LiteLLM's environment), and import again")
        return value.strip()
    return None


def _defaulted(value: str | None, default: str, what: str, where: str, spec: ImportSpec) -> str:
    """`value`, else `default` with a note: LiteLLM would have read its own environment for it."""
    if value is not None:
        return value
    spec.notes.append(f"{where} gives no {what}: {default!r} is used (LiteLLM reads it from its environment "
                      f"then); set it with `shieldes provider update NAME` if it differs")
    return default


def cloud_provider(prefix: str, upstream: str, params: dict[str, Any], where: str,
           spec: ImportSpec) -> tuple[str, str, tuple[tuple[str, str], ...], str]:
    """(kind, base URL, options, upstream model) of an azure/, bedrock/, gemini/ or vertex_ai/ entry."""
    kind = "vertex" if prefix == "vertex_ai" else prefix
    options: dict[str, str] = {}
    if kind == "azure":
        base = _text(params, "api_base", where)
        if base is None:
            raise ImportRejected(f"{where} is an Azure deployment without litellm_params.api_base; add "
                                 "https://RESOURCE.openai.azure.com")
        options["api_version"] = _defaulted(_text(params, "api_version", where), "2024-10-21",
                                            "api_version (AZURE_API_VERSION)", where, spec)
        if params.get("tenant_id") or params.get("client_id"):
            entra_auth(options, spec, where)
        return kind, base.rstrip("/"), tuple(sorted(options.items())), upstream
    if kind == "bedrock":
        for route in ("converse/", "invoke/"):
            upstream = upstream.removeprefix(route)
        options["region"] = _defaulted(_text(params, "aws_region_name", where), "us-east-1",
                                       "aws_region_name (AWS_REGION_NAME, AWS_REGION)", where, spec)
        given = [k for k in _AWS_CREDENTIALS if params.get(k)]
        if given:
            note = (f"{where}: AWS credentials ({', '.join(given)}) are not imported; each node uses botocore's "
                    "standard chain (environment, profile, role)")
            if "aws_role_name" in given:
                note += (f": to assume {params['aws_role_name']!r} as LiteLLM did, give the nodes a profile with that "
                         "role_arn (AWS_PROFILE) or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE")
            spec.notes.append(note)
        # LiteLLM calls a Bedrock deployment at aws_bedrock_runtime_endpoint (a VPC endpoint, a proxy) when given
        endpoint = _text(params, "aws_bedrock_runtime_endpoint", where)
        if endpoint is not None and _text(params, "api_base", where) is None:
            ordered = tuple(sorted(options.items()))
            return kind, endpoint.rstrip("/"), ordered, upstream
    elif kind == "vertex":
        project = _text(params, "vertex_project", where, "vertex_ai_project")
        location = _text(params, "vertex_location", where, "vertex_ai_location")
        if project is None:
            raise ImportRejected(f"{where} is a Vertex AI model without litellm_params.vertex_project (LiteLLM "
                                 "then reads VERTEXAI_PROJECT); add the Google Cloud project id")
        options.update(project=project, location=_defaulted(location, "us-central1",
                                                            "vertex_location (VERTEXAI_LOCATION)", where, spec))
        creds = params.get("vertex_credentials")
        if isinstance(creds, str) and creds and not creds.startswith(("os.environ/", "{")):
            options["credentials_file"] = creds
        elif creds:
            spec.notes.append(f"{where}: vertex_credentials not imported (only a file path can be); the node's "
                              "Application Default Credentials are used unless you set --credentials-file")
    base = _text(params, "api_base", where)
    ordered = tuple(sorted(options.items()))
    return kind, (base or base_url_for(KINDS[kind], None, options)).rstrip("/"), ordered, upstream


def split_model(ref: str, provider: Any = None, where: str = "") -> tuple[str, str]:
    """(LiteLLM provider prefix, upstream model) of litellm_params.model. `provider`: the entry's
    custom_llm_provider, which LiteLLM takes over the model's prefix: the model is then sent as
    written, less that provider's own prefix (`anthropic.claude-...` with `bedrock` is a Bedrock id)."""
    if provider is not None:
        if not isinstance(provider, str) or not provider.strip():
            raise ImportRejected(f"{where}.litellm_params.custom_llm_provider must be a provider name like bedrock, "
                                 f"got {provider!r}")
        name = provider.strip().lower()
        return name, ref[len(name) + 1:] if ref.lower().startswith(name + "/") else ref
    prefix, sep, rest = ref.partition("/")
    if sep and rest:
        return prefix.lower(), rest
    # No prefix: LiteLLM infers the provider from the model name.
    return ("anthropic" if ref.startswith("claude") else "openai"), ref


def azure_ai_refusal(params: dict[str, Any], where: str) -> str | None:
    """Why an `azure_ai/` entry cannot be imported, or None. LiteLLM calls a serverless endpoint
    (https://NAME.REGION.models.ai.azure.com) as an OpenAI-compatible API at api_base with a bearer
    key, which is what shieldes' openai type does; a Foundry resource (*.services.ai.azure.com,
    *.openai.azure.com) it calls with an `api-key` header and an api-version query, which it does not."""
    base = params.get("api_base")
    if not isinstance(base, str) or not base.strip():
        raise ImportRejected(f"{where} is an Azure AI model without litellm_params.api_base; add its endpoint "
                             "(https://NAME.REGION.models.ai.azure.com)")
    host = urlsplit(base.strip()).hostname or ""
    if host.endswith((".services.ai.azure.com", ".openai.azure.com")):
        return ("an Azure AI Foundry resource endpoint, which LiteLLM calls with an api-key header at "
                "/models/chat/completions?api-version=..., is not supported by shieldes: for an Azure OpenAI "
                "model use an azure/DEPLOYMENT entry (api_base https://RESOURCE.openai.azure.com), for another "
                "model its serverless endpoint (https://NAME.REGION.models.ai.azure.com)")
    return None


def kind_of(prefix: str) -> tuple[str | None, str | None]:
    if prefix == "anthropic":
        return "anthropic", DEFAULT_BASE_URLS["anthropic"]
    if prefix in OLLAMA or prefix == "azure_ai":  # Ollama: LiteLLM speaks its own API, shieldes its OpenAI one
        return "openai", None
    if prefix in OPENAI_COMPATIBLE:
        return "openai", OPENAI_COMPATIBLE[prefix]
    if prefix == "text-completion-openai":
        return "openai", DEFAULT_BASE_URLS["openai"]
    return None, None


def entry_base_url(kind: str, given: Any, default: str | None, where: str, *, native: bool = False) -> str:
    if isinstance(given, str) and given.strip():
        if given.startswith("os.environ/"):
            raise ImportRejected(f"{where}.litellm_params.api_base reads {given}; write the URL in the file")
        # LiteLLM hands api_base to the openai SDK as its base_url, so it is used as written; but for
        # Ollama it is the server's root (LiteLLM calls its own API, /api/chat), whose OpenAI API is /v1.
        url = given.strip().rstrip("/")
        if native:
            return normalize_openai_base(url)
        return normalize_anthropic_base(url) if kind == "anthropic" else url
    if default is None:
        raise ImportRejected(f"{where} is a self-hosted model without litellm_params.api_base; "
                             "add the server's URL")
    return default


def entry_secret(value: Any, prefix: str, default_base: str | None, where: str, spec: ImportSpec) -> SecretSpec:
    if value is None or value == "":
        var = _DEFAULT_KEY_ENV.get(prefix)
        if var is None or default_base is None:
            return SecretSpec()
        note = f"{where} has no api_key; using env:{var} as LiteLLM does"
        if note not in spec.notes:
            spec.notes.append(note)
        return SecretSpec(env_var=var)
    if not isinstance(value, str):
        raise ImportRejected(f"{where}.litellm_params.api_key must be a string like os.environ/VAR")
    if value.startswith("os.environ/"):
        return SecretSpec(env_var=value.removeprefix("os.environ/"))
    return SecretSpec(plaintext=value)
