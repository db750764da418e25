"""The reference lab: real chronyd servers under libfaketime plus a fault-injection server."""
