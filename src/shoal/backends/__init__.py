"""Backends provide capacity only: start, stop and list containers. They know nothing about inputs."""

from .base import Backend, ContainerSpec

__all__ = ["Backend", "ContainerSpec"]
