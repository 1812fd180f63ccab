"""The dashboard: pages served by the control plane from the store's records (see ``routes.py``)."""
