"""Pure-torch references: the specification of every op, and the fallback backend."""
