"""Firing: the timing wheel, the trigger engine, batched acks and misfire policies."""

from node.engine.engine import EngineConfig, TriggerEngine

__all__ = ["EngineConfig", "TriggerEngine"]
