"""The ops: each a ``Function`` with its forward, backward and the math side by side."""
