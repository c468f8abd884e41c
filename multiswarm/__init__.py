"""multiswarm: coordinate many concurrent AI-agent swarms across machines through Redis.

The public API: the :class:`Multiswarm` facade, the records and views it returns (msgspec
Structs) and the errors it raises. Components (``multiswarm.tasks``, ``multiswarm.registry``...)
stay importable from their modules.

Importing this imports none of them: each public name is loaded from its module on first access
(PEP 562), so a process that needs only part of the package (an agent process, a worker, a CLI
command) pays only for that part. Numba is imported only when a kernel is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multiswarm.lazy import lazy_getattr

if TYPE_CHECKING:
    from multiswarm.agents import TaskContext
    from multiswarm.api import Multiswarm
    from multiswarm.api_types import (
        AgentInfo,
        DeadLetter,
        DeadLetters,
        HealthReport,
        LeaderInfo,
        PartitionLeader,
        QuarantineEntry,
        RecoveryLogEntry,
        RecoveryPointInfo,
        Statistics,
        StatusReport,
        SwarmStatus,
        TaskCounters,
        TaskOptions,
        TaskReceipt,
        WorkerStatus,
    )
    from multiswarm.breakers import BreakerConfig, BreakerState
    from multiswarm.config import Settings
    from multiswarm.consensus import VoteResult
    from multiswarm.deployment import DeploymentConfig
    from multiswarm.envelopes import Delivered, Sent
    from multiswarm.errors import (
        AlreadyExists,
        BadRequest,
        CapacityExceeded,
        CircuitOpenError,
        ConfigError,
        CoordinationError,
        CorruptState,
        CrossPartitionError,
        HandlerError,
        HandlerNotRegistered,
        IllegalTransition,
        InvalidArgumentError,
        InvalidIdError,
        LowConfidence,
        MessageDecodeError,
        MessageRejected,
        MessageTooLargeError,
        MultiswarmError,
        NoRecoverySource,
        NotFound,
        NotInterrupted,
        RecoveryError,
        RedisUnavailable,
        RequestFailed,
        RequestTimeout,
        ResourceExhausted,
        ScriptError,
        StaleEpoch,
        StalePlan,
        TaskFailed,
        UnknownDependency,
        VersionConflict,
    )
    from multiswarm.handlers import handler
    from multiswarm.messages import Envelope, Swarm, Task, WorkerInfo
    from multiswarm.recovery_plan import RecoveryOutcome, RecoveryPlan
    from multiswarm.resources import PoolUsage
    from multiswarm.state_codec import StateRecord

__version__ = "0.1.0"

__all__ = [
    "AgentInfo",
    "AlreadyExists",
    "BadRequest",
    "BreakerConfig",
    "BreakerState",
    "CapacityExceeded",
    "CircuitOpenError",
    "ConfigError",
    "CoordinationError",
    "CorruptState",
    "CrossPartitionError",
    "DeadLetter",
    "DeadLetters",
    "Delivered",
    "DeploymentConfig",
    "Envelope",
    "HandlerError",
    "HandlerNotRegistered",
    "HealthReport",
    "IllegalTransition",
    "InvalidArgumentError",
    "InvalidIdError",
    "LeaderInfo",
    "LowConfidence",
    "MessageDecodeError",
    "MessageRejected",
    "MessageTooLargeError",
    "Multiswarm",
    "MultiswarmError",
    "NoRecoverySource",
    "NotFound",
    "NotInterrupted",
    "PartitionLeader",
    "PoolUsage",
    "QuarantineEntry",
    "RecoveryError",
    "RecoveryLogEntry",
    "RecoveryOutcome",
    "RecoveryPlan",
    "RecoveryPointInfo",
    "RedisUnavailable",
    "RequestFailed",
    "RequestTimeout",
    "ResourceExhausted",
    "ScriptError",
    "Sent",
    "Settings",
    "StaleEpoch",
    "StalePlan",
    "StateRecord",
    "Statistics",
    "StatusReport",
    "Swarm",
    "SwarmStatus",
    "Task",
    "TaskContext",
    "TaskCounters",
    "TaskFailed",
    "TaskOptions",
    "TaskReceipt",
    "UnknownDependency",
    "VersionConflict",
    "VoteResult",
    "WorkerInfo",
    "WorkerStatus",
    "handler",
]

#: Public name -> the module defining it, imported on first access.
_LAZY: dict[str, str] = {
    "TaskContext": "multiswarm.agents",
    "Multiswarm": "multiswarm.api",
    "AgentInfo": "multiswarm.api_types",
    "DeadLetter": "multiswarm.api_types",
    "DeadLetters": "multiswarm.api_types",
    "HealthReport": "multiswarm.api_types",
    "LeaderInfo": "multiswarm.api_types",
    "PartitionLeader": "multiswarm.api_types",
    "QuarantineEntry": "multiswarm.api_types",
    "RecoveryLogEntry": "multiswarm.api_types",
    "RecoveryPointInfo": "multiswarm.api_types",
    "Statistics": "multiswarm.api_types",
    "StatusReport": "multiswarm.api_types",
    "SwarmStatus": "multiswarm.api_types",
    "TaskCounters": "multiswarm.api_types",
    "TaskOptions": "multiswarm.api_types",
    "TaskReceipt": "multiswarm.api_types",
    "WorkerStatus": "multiswarm.api_types",
    "BreakerConfig": "multiswarm.breakers",
    "BreakerState": "multiswarm.breakers",
    "Settings": "multiswarm.config",
    "VoteResult": "multiswarm.consensus",
    "DeploymentConfig": "multiswarm.deployment",
    "Delivered": "multiswarm.envelopes",
    "Sent": "multiswarm.envelopes",
    "AlreadyExists": "multiswarm.errors",
    "BadRequest": "multiswarm.errors",
    "CapacityExceeded": "multiswarm.errors",
    "CircuitOpenError": "multiswarm.errors",
    "ConfigError": "multiswarm.errors",
    "CoordinationError": "multiswarm.errors",
    "CorruptState": "multiswarm.errors",
    "CrossPartitionError": "multiswarm.errors",
    "HandlerError": "multiswarm.errors",
    "HandlerNotRegistered": "multiswarm.errors",
    "IllegalTransition": "multiswarm.errors",
    "InvalidArgumentError": "multiswarm.errors",
    "InvalidIdError": "multiswarm.errors",
    "LowConfidence": "multiswarm.errors",
    "MessageDecodeError": "multiswarm.errors",
    "MessageRejected": "multiswarm.errors",
    "MessageTooLargeError": "multiswarm.errors",
    "MultiswarmError": "multiswarm.errors",
    "NoRecoverySource": "multiswarm.errors",
    "NotFound": "multiswarm.errors",
    "NotInterrupted": "multiswarm.errors",
    "RecoveryError": "multiswarm.errors",
    "RedisUnavailable": "multiswarm.errors",
    "RequestFailed": "multiswarm.errors",
    "RequestTimeout": "multiswarm.errors",
    "ResourceExhausted": "multiswarm.errors",
    "ScriptError": "multiswarm.errors",
    "StaleEpoch": "multiswarm.errors",
    "StalePlan": "multiswarm.errors",
    "TaskFailed": "multiswarm.errors",
    "UnknownDependency": "multiswarm.errors",
    "VersionConflict": "multiswarm.errors",
    "handler": "multiswarm.handlers",
    "Envelope": "multiswarm.messages",
    "Swarm": "multiswarm.messages",
    "Task": "multiswarm.messages",
    "WorkerInfo": "multiswarm.messages",
    "RecoveryOutcome": "multiswarm.recovery_plan",
    "RecoveryPlan": "multiswarm.recovery_plan",
    "PoolUsage": "multiswarm.resources",
    "StateRecord": "multiswarm.state_codec",
}


__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
