"""Use cases shared by the two front doors (GUI and CLI): they join the engine to the store.

Like `gui` and `cli`, this layer may import both `studio.engine` and `studio.store`; the engine
and the store still never import each other.
"""
