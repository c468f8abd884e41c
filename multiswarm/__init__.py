"""multiswarm: coordinate many concurrent AI-agent swarms across machines through Redis.

The public API: the :class:`Multiswarm` facade, the records and views it returns (msgspec
Structs) and the errors it raises. Components (``multiswarm.tasks``, ``multiswarm.registry``...)
stay importable from their modules. Importing this does not import Numba (kernels load on first
use).
"""

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
