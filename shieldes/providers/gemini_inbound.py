"""Pure translation of Gemini API requests (generateContent, as Gemini CLI and the google-genai SDK
send them) into OpenAI chat requests, for the gateway's /v1beta/models/{model}:generateContent;
the answer is translated back by gemini_replies. No I/O."""

from __future__ import annotations

from typing import Any

import orjson

from shieldes.errors import InvalidRequest
from shieldes.providers.base import Body
from shieldes.providers.chat_parts import check_base64, reasoning_model, sampling_number
from shieldes.providers.gemini_schema import check_nesting, json_schema

# Top-level fields the translation reads; any other field is named in `dropped`
_READ = frozenset({"model", "contents", "systemInstruction", "tools", "toolConfig", "generationConfig"})
# generationConfig fields carried as the chat field of the same meaning
_SAMPLING = {"temperature": "temperature", "topP": "top_p", "seed": "seed",
             "presencePenalty": "presence_penalty", "frequencyPenalty": "frequency_penalty"}
# generationConfig fields read elsewhere (or harmless as they are); the rest is named as dropped
_GENERATION = frozenset({*_SAMPLING, "maxOutputTokens", "stopSequences", "candidateCount", "responseMimeType",
                         "responseSchema", "responseJsonSchema", "_responseJsonSchema", "thinkingConfig"})
_LEVELS = {"MINIMAL": "low", "LOW": "low", "MEDIUM": "medium", "HIGH": "high"}


# Fields whose values are the client's own JSON, kept as they are when field names are normalized
_FREE = frozenset({"args", "response", "parametersJsonSchema", "responseJsonSchema", "_responseJsonSchema",
                   "default", "example", "labels", "enum"})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest) if rest and head else name


def camel_keys(value: Any, free: bool = False) -> Any:
    """`value` with Google's field names in lowerCamelCase: Google's JSON parser takes a proto
    field's name in snake_case too, and the google-genai SDK sends some so (a function
    declaration's `parameters_json_schema`). The client's own JSON (function arguments and
    responses, JSON Schemas, a Schema's property names) is kept as it is."""
    if isinstance(value, list):
        return [camel_keys(v) for v in value]
    if not isinstance(value, dict):
        return value
    if free:  # a Schema's `properties`: the names are the client's, the values Schemas
        return {k: camel_keys(v) for k, v in value.items()}
    out = {}
    for key, sub in value.items():
        name = _camel(key) if isinstance(key, str) else key
        out[name] = sub if name in _FREE else camel_keys(sub, name == "properties")
    return out


def check_schemas(tools: Any, config: Any) -> None:
    """The schemas of a generateContent request (`tools`, `generationConfig`, as sent: field names in
    either case) nest at most gemini_schema.MAX_DEPTH levels, else a 400 naming the field: checked
    before any translation walks them, and on requests that pass through as they are."""
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            for kind, decls in (tool.items() if isinstance(tool, dict) else ()):
                if _camel(kind) == "functionDeclarations" and isinstance(decls, list):
                    for j, decl in enumerate(decls):
                        for name, schema in (decl.items() if isinstance(decl, dict) else ()):
                            if _camel(name) in _SCHEMAS:
                                check_nesting(schema, f"tools[{i}].functionDeclarations[{j}].{_camel(name)}")
    for name, schema in (config.items() if isinstance(config, dict) else ()):
        if _camel(name) in _SCHEMAS:
            check_nesting(schema, f"generationConfig.{_camel(name)}")


# The fields of a function declaration and a generationConfig that hold a schema
_SCHEMAS = frozenset({"parameters", "parametersJsonSchema", "response", "responseJsonSchema", "responseSchema",
                      "_responseJsonSchema"})


def _bad(message: str) -> InvalidRequest:
    return InvalidRequest(message)


def _obj(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _bad(f"`{where}` must be an object")
    return value


def thinking_effort(config: Any) -> str | None:
    """generationConfig.thinkingConfig as an OpenAI reasoning effort: `thinkingLevel` as it is,
    a `thinkingBudget` under 4k tokens `low`, under 16k `medium`, larger `high`, -1 (dynamic)
    `medium`; 0 (thinking off) and no setting are None."""
    if not isinstance(config, dict):
        return None
    level = config.get("thinkingLevel")
    if isinstance(level, str) and level.upper() in _LEVELS:
        return _LEVELS[level.upper()]
    budget = config.get("thinkingBudget")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget == 0:
        return None
    if budget < 0:
        return "medium"
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def include_thoughts(body: Any) -> bool:
    """Whether the client asked to see the model's thoughts (thinkingConfig.includeThoughts)."""
    gen = camel_keys(body).get("generationConfig") if isinstance(body, dict) else None
    config = gen.get("thinkingConfig") if isinstance(gen, dict) else None
    return isinstance(config, dict) and config.get("includeThoughts") is True


def _text_of(content: Any, where: str) -> str:
    """The text of a system instruction: a string, or a Content whose parts are text."""
    if isinstance(content, str):
        return content
    parts = _obj(content, where).get("parts")
    if not isinstance(parts, list):
        raise _bad(f"`{where}.parts` must be a list of text parts")
    texts = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict) or not isinstance(part.get("text"), str):
            raise _bad(f"`{where}.parts[{j}]` must be a text part ({{\"text\": ...}})")
        texts.append(part["text"])
    return "\n".join(texts)


def _media(blob: Any, where: str, inline: bool) -> Body:
    """An inlineData or fileData part as a chat content part: images, and PDFs inline."""
    blob = _obj(blob, where)
    mime = blob.get("mimeType")
    if not isinstance(mime, str):
        raise _bad(f"`{where}.mimeType` is required")
    if inline:
        data = blob.get("data")
        if not isinstance(data, str):
            raise _bad(f"`{where}.data` must be base64 text")
        check_base64(data, f"{where}.data")
        if mime.startswith("image/"):
            return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}
        if mime == "application/pdf":
            return {"type": "file", "file": {"filename": "document.pdf", "file_data": f"data:{mime};base64,{data}"}}
    else:
        uri = blob.get("fileUri")
        if mime.startswith("image/") and isinstance(uri, str) and uri.startswith(("https://", "http://")):
            return {"type": "image_url", "image_url": {"url": uri}}
    raise _bad(f"`{where}`: {mime} {'data' if inline else 'files'} cannot be sent to this model's deployment, "
               "which takes images (inline or by http(s) URL) and inline PDFs; send the content as text instead")


def _response_text(response: Any) -> str:
    """A functionResponse's `response` as a tool result: the text of an object holding only
    `output`, `content` or `result` text (as Gemini CLI sends it), else the object's JSON."""
    if isinstance(response, dict) and len(response) == 1:
        (name, value), = response.items()
        if name in ("output", "content", "result") and isinstance(value, str):
            return value
    return orjson.dumps(response if response is not None else {}).decode()


class _Calls:
    """The function calls of the model turns so far, for the functionResponse parts answering
    them: matched by `id` when the client echoes it, else by name, in order."""

    def __init__(self) -> None:
        self.open: list[tuple[str, str]] = []  # (id, name) of the last model turn's unanswered calls

    def made(self, turn: int, parts: list[Body]) -> list[Body]:
        calls = []
        self.open = []
        for k, part in enumerate(parts):
            fc = part["functionCall"]
            name = fc.get("name")
            if not isinstance(name, str) or not name:
                raise _bad(f"`contents[{turn}].parts`: a functionCall needs a `name`")
            call = str(fc.get("id") or f"call_{turn}_{k}")
            self.open.append((call, name))
            args = fc.get("args")
            calls.append({"id": call, "type": "function",
                          "function": {"name": name, "arguments": orjson.dumps(args or {}).decode()}})
        return calls

    def answered(self, fr: dict[str, Any], where: str) -> str:
        given, name = fr.get("id"), fr.get("name")
        for i, (call, called) in enumerate(self.open):
            if (given and call == given) or (not given and called == name):
                del self.open[i]
                return call
        raise _bad(f"`{where}` answers function {name!r}{f' (id {given!r})' if given else ''}, which the model "
                   "turn before it did not call; send each functionResponse right after the model turn "
                   "holding its functionCall")


def _user_turn(parts: list[Any], where: str, calls: _Calls, dropped: list[str]) -> list[Body]:
    """One user turn -> chat messages: the function responses as `tool` messages first."""
    out: list[Body] = []
    content: list[Body] = []
    for j, part in enumerate(parts):
        at = f"{where}.parts[{j}]"
        if not isinstance(part, dict):
            raise _bad(f"`{at}` must be an object")
        if part.get("thought"):
            continue
        if isinstance(part.get("text"), str):
            content.append({"type": "text", "text": part["text"]})
        elif "inlineData" in part or "fileData" in part:
            inline = "inlineData" in part
            content.append(_media(part["inlineData" if inline else "fileData"], at + (".inlineData" if inline
                                                                                      else ".fileData"), inline))
        elif isinstance(part.get("functionResponse"), dict):
            fr = part["functionResponse"]
            if fr.get("parts"):
                dropped.append(f"{at}.functionResponse.parts")
            out.append({"role": "tool", "tool_call_id": calls.answered(fr, at + ".functionResponse"),
                        "content": _response_text(fr.get("response"))})
        else:
            kinds = ", ".join(k for k in part if k not in ("thoughtSignature", "videoMetadata")) or "empty"
            raise _bad(f"`{at}` ({kinds}) cannot be sent to this model's deployment: user turns take text, "
                       "inlineData, fileData (images) and functionResponse parts")
    if content:
        texts = all(c["type"] == "text" for c in content)
        out.append({"role": "user", "content": "\n".join(c["text"] for c in content) if texts else content})
    return out


def _model_turn(parts: list[Any], where: str, turn: int, calls: _Calls) -> Body:
    texts: list[str] = []
    fcs: list[Body] = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise _bad(f"`{where}.parts[{j}]` must be an object")
        if part.get("thought"):
            continue  # thoughts of an earlier turn: not portable to another model
        if isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif isinstance(part.get("functionCall"), dict):
            fcs.append(part)
        elif "thoughtSignature" in part and len(part) == 1:
            continue
        else:
            kinds = ", ".join(part) or "empty"
            raise _bad(f"`{where}.parts[{j}]` ({kinds}) cannot be sent to this model's deployment: model turns "
                       "take text and functionCall parts")
    msg: Body = {"role": "assistant", "content": "".join(texts) if texts else None}
    made = calls.made(turn, fcs)
    if made:
        msg["tool_calls"] = made
    return msg


def _contents(contents: Any) -> list[Body]:
    if not isinstance(contents, list) or not contents:
        raise _bad("`contents` must be a non-empty list of Content objects ({\"role\": \"user\", \"parts\": [...]})")
    calls = _Calls()
    out: list[Body] = []
    ignored: list[str] = []  # functionResponse.parts: named by the caller through `dropped`
    for i, content in enumerate(contents):
        where = f"contents[{i}]"
        if not isinstance(content, dict) or not isinstance(content.get("parts"), list):
            raise _bad(f"`{where}` must be an object with a list of `parts`")
        role = content.get("role") or "user"
        if role in ("user", "function"):
            out.extend(_user_turn(content["parts"], where, calls, ignored))
        elif role == "model":
            out.append(_model_turn(content["parts"], where, i, calls))
        else:
            raise _bad(f'`{where}.role` must be "user" or "model", not {role!r}')
    if ignored:
        raise _bad(f"`{ignored[0]}`: multimodal function responses cannot be sent to this model's deployment; "
                   "put the content in the functionResponse's `response` as text")
    return out


def _declaration(decl: Any, where: str, dropped: list[str]) -> Body:
    decl = _obj(decl, where)
    if not isinstance(decl.get("name"), str) or not decl["name"]:
        raise _bad(f"`{where}.name` is required")
    if isinstance(decl.get("parametersJsonSchema"), dict):
        parameters = decl["parametersJsonSchema"]
    elif isinstance(decl.get("parameters"), dict):
        parameters = json_schema(decl["parameters"])
    else:
        parameters = {"type": "object", "properties": {}}
    fn: Body = {"name": decl["name"], "parameters": parameters}
    if isinstance(decl.get("description"), str) and decl["description"]:
        fn["description"] = decl["description"]
    for name in ("response", "responseJsonSchema", "behavior"):
        if name in decl:
            dropped.append(f"{where}.{name}")
    return {"type": "function", "function": fn}


def _tools(tools: Any, dropped: list[str]) -> list[Body]:
    if not isinstance(tools, list):
        raise _bad("`tools` must be a list of Tool objects")
    out = []
    for i, tool in enumerate(tools):
        for kind, value in _obj(tool, f"tools[{i}]").items():
            if kind != "functionDeclarations":
                dropped.append(f"tools[{i}].{kind}")  # Google's own tools (search, code execution, ...)
            elif not isinstance(value, list):
                raise _bad(f"`tools[{i}].functionDeclarations` must be a list")
            else:
                out += [_declaration(d, f"tools[{i}].functionDeclarations[{j}]", dropped)
                        for j, d in enumerate(value)]
    return out


def _tool_config(config: Any, tools: list[Body], out: Body, dropped: list[str]) -> list[Body]:
    """toolConfig.functionCallingConfig as tool_choice; `allowedFunctionNames` keeps only those
    tools (the others cannot be called). Returns the tools the model is offered."""
    config = _obj(config, "toolConfig")
    for name in config:
        if name != "functionCallingConfig":
            dropped.append(f"toolConfig.{name}")
    calling = _obj(config.get("functionCallingConfig"), "toolConfig.functionCallingConfig")
    mode = str(calling.get("mode") or "AUTO").upper()
    allowed = calling.get("allowedFunctionNames")
    if allowed is not None:
        if not isinstance(allowed, list) or not all(isinstance(n, str) for n in allowed):
            raise _bad("`toolConfig.functionCallingConfig.allowedFunctionNames` must be a list of function names")
        unknown = sorted(set(allowed) - {t["function"]["name"] for t in tools})
        if unknown:
            raise _bad(f"`toolConfig.functionCallingConfig.allowedFunctionNames` names {', '.join(unknown)}, "
                       "which no functionDeclaration declares")
        tools = [t for t in tools if t["function"]["name"] in allowed]
    if mode == "NONE":
        out["tool_choice"] = "none"
    elif mode == "ANY":
        if not tools:
            raise _bad("`toolConfig.functionCallingConfig.mode` ANY forces a function call but the request "
                       "declares no functions: send `tools[].functionDeclarations`, or use AUTO")
        one = tools[0]["function"]["name"] if len(tools) == 1 else None
        out["tool_choice"] = {"type": "function", "function": {"name": one}} if one else "required"
    elif mode == "VALIDATED":
        dropped.append("toolConfig.functionCallingConfig.mode")  # schema-checked calls: not portable
    elif mode not in ("AUTO", "MODE_UNSPECIFIED"):
        raise _bad("`toolConfig.functionCallingConfig.mode` must be AUTO, ANY, NONE or VALIDATED")
    return tools


def _output(gen: dict[str, Any], out: Body, dropped: list[str]) -> None:
    """responseMimeType application/json: JSON output, in the schema when one is given
    (responseJsonSchema as it is, responseSchema from Google's Schema)."""
    mime = gen.get("responseMimeType")
    schema = gen.get("responseJsonSchema") or gen.get("_responseJsonSchema")
    if not isinstance(schema, dict) and isinstance(gen.get("responseSchema"), dict):
        schema = json_schema(gen["responseSchema"])
    if mime in (None, "text/plain"):
        if isinstance(schema, dict):
            raise _bad("`generationConfig.responseSchema` needs `responseMimeType: \"application/json\"`")
        return
    if mime != "application/json":
        dropped.append("generationConfig.responseMimeType")
        return
    if isinstance(schema, dict):
        out["response_format"] = {"type": "json_schema",
                                  "json_schema": {"name": "output", "schema": schema, "strict": True}}
    else:
        out["response_format"] = {"type": "json_object"}


def _generation(gen: dict[str, Any], out: Body, model: str, thinks: bool, dropped: list[str]) -> None:
    reasoning = reasoning_model(model)
    for theirs, ours in _SAMPLING.items():
        value = gen.get(theirs)
        if value is not None:
            out[ours] = sampling_number(value, f"generationConfig.{theirs}")
    most = gen.get("maxOutputTokens")
    if most is not None:
        if not isinstance(most, int) or isinstance(most, bool) or most < 1:
            raise _bad("`generationConfig.maxOutputTokens` must be a positive integer")
        out["max_completion_tokens" if reasoning else "max_tokens"] = most
    stops = gen.get("stopSequences")
    if stops:
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise _bad("`generationConfig.stopSequences` must be a list of strings")
        out["stop"] = stops
    count = gen.get("candidateCount")
    if count not in (None, 1):
        raise _bad("`generationConfig.candidateCount` must be 1 here: the gateway answers one candidate per "
                   "request; send several requests for several answers")
    _output(gen, out, dropped)
    config = gen.get("thinkingConfig")
    effort = thinking_effort(config)
    if effort is not None and (reasoning or thinks):
        out["reasoning_effort"] = effort
    elif isinstance(config, dict) and ("thinkingBudget" in config or "thinkingLevel" in config):
        dropped.append("generationConfig.thinkingConfig")
    for name, value in gen.items():
        if name in _GENERATION or (name == "responseModalities" and value in (["TEXT"], ["text"])):
            continue
        dropped.append(f"generationConfig.{name}")


def translate_generate_request(body: Any, model: str, *, thinks: bool = False) -> tuple[Body, list[str]]:
    """A generateContent request as an OpenAI chat request for upstream `model`, and the names of
    what could not be carried over (for the x-shieldes-dropped header). `thinks`: the upstream
    translates reasoning_effort into its own thinking (Bedrock, Gemini), so thinkingConfig goes
    along as it does for OpenAI reasoning models; for other models it is dropped. topK, safety
    settings, Google's own tools (search, code execution) and other Google-only fields are
    dropped; what would change the answer's shape (candidateCount > 1, cachedContent) is refused."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    check_schemas(body.get("tools"), body.get("generationConfig", body.get("generation_config")))
    body = camel_keys(body)
    if body.get("cachedContent"):
        raise _bad("`cachedContent` refers to a cache stored at Google, which this deployment cannot read; "
                   "send the cached contents in `contents` instead")
    dropped = sorted(k for k in body if k not in _READ)
    messages = []
    if body.get("systemInstruction"):
        messages.append({"role": "system", "content": _text_of(body["systemInstruction"], "systemInstruction")})
    messages += _contents(body.get("contents"))
    out: Body = {"model": model, "messages": messages}
    tools = _tools(body["tools"], dropped) if body.get("tools") else []
    tools = _tool_config(body.get("toolConfig"), tools, out, dropped) if body.get("toolConfig") else tools
    if tools:
        out["tools"] = tools
    else:
        out.pop("tool_choice", None)  # NONE with nothing to call (ANY without functions is refused above)
    _generation(_obj(body.get("generationConfig"), "generationConfig"), out, model, thinks, dropped)
    return out, dropped
