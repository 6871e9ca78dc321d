from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Envelope(_message.Message):
    __slots__ = ("payload", "signature")
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    payload: bytes
    signature: bytes
    def __init__(self, payload: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class WindowCount(_message.Message):
    __slots__ = ("subject", "window", "start", "requests", "tokens", "allowance", "tokens_released", "label")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    ALLOWANCE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_RELEASED_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    subject: str
    window: str
    start: int
    requests: int
    tokens: int
    allowance: int
    tokens_released: int
    label: int
    def __init__(self, subject: _Optional[str] = ..., window: _Optional[str] = ..., start: _Optional[int] = ..., requests: _Optional[int] = ..., tokens: _Optional[int] = ..., allowance: _Optional[int] = ..., tokens_released: _Optional[int] = ..., label: _Optional[int] = ...) -> None: ...

class Seen(_message.Message):
    __slots__ = ("node_id", "boot_epoch", "seq")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    boot_epoch: int
    seq: int
    def __init__(self, node_id: _Optional[str] = ..., boot_epoch: _Optional[int] = ..., seq: _Optional[int] = ...) -> None: ...

class PendingUsage(_message.Message):
    __slots__ = ("flush_epoch", "flush_seq", "subject", "requests", "tokens", "cost_nusd", "day", "label")
    FLUSH_EPOCH_FIELD_NUMBER: _ClassVar[int]
    FLUSH_SEQ_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    DAY_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    flush_epoch: int
    flush_seq: int
    subject: str
    requests: int
    tokens: int
    cost_nusd: int
    day: int
    label: int
    def __init__(self, flush_epoch: _Optional[int] = ..., flush_seq: _Optional[int] = ..., subject: _Optional[str] = ..., requests: _Optional[int] = ..., tokens: _Optional[int] = ..., cost_nusd: _Optional[int] = ..., day: _Optional[int] = ..., label: _Optional[int] = ...) -> None: ...

class UnflushedDelta(_message.Message):
    __slots__ = ("flush_epoch", "flush_seq", "key_id", "team_id", "provider", "model", "hour", "requests", "prompt_tokens", "completion_tokens", "cost_nusd", "label", "images", "audio_seconds", "characters", "web_searches", "file_searches", "containers", "tools_nusd")
    FLUSH_EPOCH_FIELD_NUMBER: _ClassVar[int]
    FLUSH_SEQ_FIELD_NUMBER: _ClassVar[int]
    KEY_ID_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_NUSD_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    WEB_SEARCHES_FIELD_NUMBER: _ClassVar[int]
    FILE_SEARCHES_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_NUSD_FIELD_NUMBER: _ClassVar[int]
    flush_epoch: int
    flush_seq: int
    key_id: str
    team_id: str
    provider: str
    model: str
    hour: int
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_nusd: int
    label: int
    images: int
    audio_seconds: int
    characters: int
    web_searches: int
    file_searches: int
    containers: int
    tools_nusd: int
    def __init__(self, flush_epoch: _Optional[int] = ..., flush_seq: _Optional[int] = ..., key_id: _Optional[str] = ..., team_id: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., hour: _Optional[int] = ..., requests: _Optional[int] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_nusd: _Optional[int] = ..., label: _Optional[int] = ..., images: _Optional[int] = ..., audio_seconds: _Optional[int] = ..., characters: _Optional[int] = ..., web_searches: _Optional[int] = ..., file_searches: _Optional[int] = ..., containers: _Optional[int] = ..., tools_nusd: _Optional[int] = ...) -> None: ...

class Reservation(_message.Message):
    __slots__ = ("subject", "reserved_nusd", "released_nusd", "label")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    RESERVED_NUSD_FIELD_NUMBER: _ClassVar[int]
    RELEASED_NUSD_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    subject: str
    reserved_nusd: int
    released_nusd: int
    label: int
    def __init__(self, subject: _Optional[str] = ..., reserved_nusd: _Optional[int] = ..., released_nusd: _Optional[int] = ..., label: _Optional[int] = ...) -> None: ...

class Health(_message.Message):
    __slots__ = ("deployment", "latency_ms", "error_rate", "requests", "open")
    DEPLOYMENT_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_RATE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    deployment: str
    latency_ms: float
    error_rate: float
    requests: int
    open: bool
    def __init__(self, deployment: _Optional[str] = ..., latency_ms: _Optional[float] = ..., error_rate: _Optional[float] = ..., requests: _Optional[int] = ..., open: _Optional[bool] = ...) -> None: ...

class Counts(_message.Message):
    __slots__ = ("node_id", "boot_epoch", "windows", "pending", "unflushed", "reservations", "since", "version", "label", "windows_only", "exact", "news", "hops")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    UNFLUSHED_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_ONLY_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    NEWS_FIELD_NUMBER: _ClassVar[int]
    HOPS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    boot_epoch: int
    windows: _containers.RepeatedCompositeFieldContainer[WindowCount]
    pending: _containers.RepeatedCompositeFieldContainer[PendingUsage]
    unflushed: _containers.RepeatedCompositeFieldContainer[UnflushedDelta]
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    since: int
    version: int
    label: int
    windows_only: bool
    exact: bool
    news: bool
    hops: int
    def __init__(self, node_id: _Optional[str] = ..., boot_epoch: _Optional[int] = ..., windows: _Optional[_Iterable[_Union[WindowCount, _Mapping]]] = ..., pending: _Optional[_Iterable[_Union[PendingUsage, _Mapping]]] = ..., unflushed: _Optional[_Iterable[_Union[UnflushedDelta, _Mapping]]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., since: _Optional[int] = ..., version: _Optional[int] = ..., label: _Optional[int] = ..., windows_only: _Optional[bool] = ..., exact: _Optional[bool] = ..., news: _Optional[bool] = ..., hops: _Optional[int] = ...) -> None: ...

class Held(_message.Message):
    __slots__ = ("node_id", "boot_epoch", "version", "news")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    NEWS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    boot_epoch: int
    version: int
    news: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, node_id: _Optional[str] = ..., boot_epoch: _Optional[int] = ..., version: _Optional[int] = ..., news: _Optional[_Iterable[int]] = ...) -> None: ...

class State(_message.Message):
    __slots__ = ("node_id", "boot_epoch", "seq", "log_head", "sent_at_ms", "gossip_address", "windows", "pending", "reservations", "health", "seen", "relayed", "unflushed", "base_seq", "health_removed", "seen_removed", "ack", "digest", "pull_from", "gauges_only")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    BOOT_EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    LOG_HEAD_FIELD_NUMBER: _ClassVar[int]
    SENT_AT_MS_FIELD_NUMBER: _ClassVar[int]
    GOSSIP_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    WINDOWS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    RESERVATIONS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    SEEN_FIELD_NUMBER: _ClassVar[int]
    RELAYED_FIELD_NUMBER: _ClassVar[int]
    UNFLUSHED_FIELD_NUMBER: _ClassVar[int]
    BASE_SEQ_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REMOVED_FIELD_NUMBER: _ClassVar[int]
    SEEN_REMOVED_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    PULL_FROM_FIELD_NUMBER: _ClassVar[int]
    GAUGES_ONLY_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    boot_epoch: int
    seq: int
    log_head: int
    sent_at_ms: int
    gossip_address: str
    windows: _containers.RepeatedCompositeFieldContainer[WindowCount]
    pending: _containers.RepeatedCompositeFieldContainer[PendingUsage]
    reservations: _containers.RepeatedCompositeFieldContainer[Reservation]
    health: _containers.RepeatedCompositeFieldContainer[Health]
    seen: _containers.RepeatedCompositeFieldContainer[Seen]
    relayed: _containers.RepeatedCompositeFieldContainer[Counts]
    unflushed: _containers.RepeatedCompositeFieldContainer[UnflushedDelta]
    base_seq: int
    health_removed: _containers.RepeatedScalarFieldContainer[str]
    seen_removed: _containers.RepeatedScalarFieldContainer[str]
    ack: Seen
    digest: _containers.RepeatedCompositeFieldContainer[Held]
    pull_from: _containers.RepeatedScalarFieldContainer[str]
    gauges_only: bool
    def __init__(self, node_id: _Optional[str] = ..., boot_epoch: _Optional[int] = ..., seq: _Optional[int] = ..., log_head: _Optional[int] = ..., sent_at_ms: _Optional[int] = ..., gossip_address: _Optional[str] = ..., windows: _Optional[_Iterable[_Union[WindowCount, _Mapping]]] = ..., pending: _Optional[_Iterable[_Union[PendingUsage, _Mapping]]] = ..., reservations: _Optional[_Iterable[_Union[Reservation, _Mapping]]] = ..., health: _Optional[_Iterable[_Union[Health, _Mapping]]] = ..., seen: _Optional[_Iterable[_Union[Seen, _Mapping]]] = ..., relayed: _Optional[_Iterable[_Union[Counts, _Mapping]]] = ..., unflushed: _Optional[_Iterable[_Union[UnflushedDelta, _Mapping]]] = ..., base_seq: _Optional[int] = ..., health_removed: _Optional[_Iterable[str]] = ..., seen_removed: _Optional[_Iterable[str]] = ..., ack: _Optional[_Union[Seen, _Mapping]] = ..., digest: _Optional[_Iterable[_Union[Held, _Mapping]]] = ..., pull_from: _Optional[_Iterable[str]] = ..., gauges_only: _Optional[bool] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("accepted", "reason", "log_head", "deltas", "need_full", "fanout", "node_id", "pulled", "digests")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LOG_HEAD_FIELD_NUMBER: _ClassVar[int]
    DELTAS_FIELD_NUMBER: _ClassVar[int]
    NEED_FULL_FIELD_NUMBER: _ClassVar[int]
    FANOUT_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    PULLED_FIELD_NUMBER: _ClassVar[int]
    DIGESTS_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    log_head: int
    deltas: bool
    need_full: bool
    fanout: bool
    node_id: str
    pulled: Envelope
    digests: bool
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., log_head: _Optional[int] = ..., deltas: _Optional[bool] = ..., need_full: _Optional[bool] = ..., fanout: _Optional[bool] = ..., node_id: _Optional[str] = ..., pulled: _Optional[_Union[Envelope, _Mapping]] = ..., digests: _Optional[bool] = ...) -> None: ...
