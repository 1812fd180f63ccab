"""The control plane: HTTP routes, durable store, scheduler loop and blob store."""
