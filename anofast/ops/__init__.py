"""Public functional ops. Each validates its inputs, then dispatches to reference / cpp / triton."""
