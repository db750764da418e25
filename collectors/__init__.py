"""Collectors: the thin layer that touches clocks, the kernel and sockets and yields samples."""
