"""multiswarm: coordinate many concurrent AI-agent swarms across machines through Redis.

The public API; importing it does not import Numba (kernels load on first use).
"""

from multiswarm.agents import TaskContext
from multiswarm.api import Multiswarm
from multiswarm.breakers import BreakerConfig, BreakerRegistry, CircuitBreaker
from multiswarm.config import Settings, from_env
from multiswarm.consensus import Consensus
from multiswarm.coordinator import STRATEGIES, LeaderElection, SwarmCoordinator
from multiswarm.envelopes import Delivered
from multiswarm.errors import (
    AlreadyExists,
    BadRequest,
    CapacityExceeded,
    CircuitOpenError,
    ConfigError,
    CoordinationError,
    HandlerError,
    IllegalTransition,
    InvalidArgumentError,
    InvalidIdError,
    MessageDecodeError,
    MessageRejected,
    MessageTooLargeError,
    MultiswarmError,
    NotFound,
    RedisUnavailable,
    RequestFailed,
    RequestTimeout,
    ResourceExhausted,
    ScriptError,
    StaleEpoch,
    TaskFailed,
    UnknownDependency,
    VersionConflict,
)
from multiswarm.messages import Envelope, Swarm, Task
from multiswarm.messenger import Sent, SwarmMessenger
from multiswarm.recovery import SwarmRecovery
from multiswarm.registry import SwarmRegistry, SwarmSpec, swarm_spec
from multiswarm.resources import ResourcePools
from multiswarm.state import SwarmStateManager
from multiswarm.tasks import TaskStore, task_spec
from multiswarm.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "STRATEGIES",
    "AlreadyExists",
    "BadRequest",
    "BreakerConfig",
    "BreakerRegistry",
    "CapacityExceeded",
    "CircuitBreaker",
    "CircuitOpenError",
    "ConfigError",
    "Consensus",
    "CoordinationError",
    "Delivered",
    "Envelope",
    "HandlerError",
    "IllegalTransition",
    "InvalidArgumentError",
    "InvalidIdError",
    "LeaderElection",
    "MessageDecodeError",
    "MessageRejected",
    "MessageTooLargeError",
    "Multiswarm",
    "MultiswarmError",
    "NotFound",
    "RedisUnavailable",
    "RequestFailed",
    "RequestTimeout",
    "ResourceExhausted",
    "ResourcePools",
    "ScriptError",
    "Sent",
    "Settings",
    "StaleEpoch",
    "Swarm",
    "SwarmCoordinator",
    "SwarmMessenger",
    "SwarmRecovery",
    "SwarmRegistry",
    "SwarmSpec",
    "SwarmStateManager",
    "Task",
    "TaskContext",
    "TaskFailed",
    "TaskStore",
    "UnknownDependency",
    "VersionConflict",
    "Worker",
    "from_env",
    "swarm_spec",
    "task_spec",
]
