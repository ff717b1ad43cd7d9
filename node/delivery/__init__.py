"""Delivering triggers: the shared types, HTTP and gRPC delivery, and the dispatch between them
and the watch streams."""

from node.delivery.trigger import DeliveryOutcome, Trigger

__all__ = ["DeliveryOutcome", "Trigger"]
