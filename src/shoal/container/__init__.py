"""The container runtime: ``python -m shoal.container`` loads one function and pulls its inputs."""
