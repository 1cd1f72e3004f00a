"""What runs inside Ray: node types, the DAG -> task-graph compiler and the run supervisor.

This package never imports ``control_plane`` or gRPC server code; it reports back through the
interfaces the control plane gives it.
"""
